"""The API's own behaviour, in process: a timeout ends the query (the DuckDB statement included), and
answers splice the rendered JSON unchanged, gzipped for a client that asks."""

from __future__ import annotations

import json
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from ironsight.collector.promql.api import Api
from ironsight.collector.promql.values import QueryError
from ironsight.collector.store import Store


def call(api: Api, path: str, **params: object) -> tuple[str, dict[str, Any]]:
    got: list[str] = []
    env = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "QUERY_STRING": urllib.parse.urlencode(params)}
    body = b"".join(api(env, lambda status, headers: got.append(status)))
    return got[0], json.loads(body)


def test_a_timeout_interrupts_the_duckdb_statement(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    api = Api(store.reader)
    began = time.monotonic()
    with pytest.raises(QueryError) as exc:
        api._with_source(
            lambda s: s.con.execute("SELECT sum(i * i) FROM range(10000000000) t(i)").fetchall(), 0.3
        )
    assert exc.value.kind == "timeout"
    assert time.monotonic() - began < 5  # the statement alone runs for many seconds
    status, body = call(api, "/api/v1/query", query="vector(1)", time=100, timeout="0s")
    assert status.startswith("503") and body["errorType"] == "timeout"
    status, body = call(api, "/api/v1/query_range", query="vector(1) * 2", start=0, end=20, step=10)
    assert status.startswith("200")
    assert body == {"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {}, "values": [[0, "2"], [10, "2"], [20, "2"]]}]}}  # fmt: skip
    store.close()


def test_an_answer_is_gzipped_for_a_client_that_asks_as_grafana_does(tmp_path: Path) -> None:
    """Grafana's Prometheus data source (Go's HTTP client) sends Accept-Encoding: gzip, and Prometheus
    compresses its answers then: a dashboard's 26 MB of JSON go as 1.8 MB."""
    import gzip

    store = Store(tmp_path / "s.duckdb")
    api = Api(store.reader)
    query = {"query": "vector(1) * 2", "start": 0, "end": 3000, "step": 10}
    env = {"PATH_INFO": "/api/v1/query_range", "REQUEST_METHOD": "GET",
           "QUERY_STRING": urllib.parse.urlencode(query)}  # fmt: skip
    answers = {}
    for accept in ("", "gzip, deflate", "gzip;q=0"):
        headers: list[dict[str, str]] = []
        body = b"".join(
            api({**env, "HTTP_ACCEPT_ENCODING": accept}, lambda s, h, to=headers: to.append(dict(h)))
        )
        answers[accept] = (headers[0], body)
    plain_headers, plain = answers[""]
    assert "Content-Encoding" not in plain_headers and plain_headers["Vary"] == "Accept-Encoding"
    assert len(json.loads(plain)["data"]["result"][0]["values"]) == 301
    zipped_headers, zipped = answers["gzip, deflate"]
    assert zipped_headers["Content-Encoding"] == "gzip"
    assert int(zipped_headers["Content-Length"]) == len(zipped) < len(plain) // 3
    assert gzip.decompress(zipped) == plain
    assert answers["gzip;q=0"][1] == plain  # refused by name: sent as it is
    # A small answer goes as it is whatever the client takes: compressing it would only cost.
    small: list[dict[str, str]] = []
    body = b"".join(api({**env, "QUERY_STRING": "query=vector(1)&time=100", "PATH_INFO": "/api/v1/query",
                         "HTTP_ACCEPT_ENCODING": "gzip"}, lambda s, h: small.append(dict(h))))  # fmt: skip
    assert "Content-Encoding" not in small[0] and json.loads(body)["data"]["result"][0]["value"] == [100, "1"]
    store.close()


def test_series_and_labels_without_a_range_cover_everything(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    con = store.reader()
    con.execute("INSERT INTO nodes (node, hostname, first_seen, last_seen) VALUES "
                "('n1', 'h1', TIMESTAMP '2026-11-01', TIMESTAMP '2026-11-01')")  # fmt: skip
    con.execute(
        "INSERT INTO load_hot (node, device, time, load1) VALUES ('n1', '', TIMESTAMP '2026-11-01', 0.5)"
    )
    con.execute(
        "INSERT INTO gpu_jobs (node, time, gpu, job, source) VALUES ('n1', '2026-11-01', '0', 'j', 'slurm')"
    )
    api = Api(store.reader)
    status, body = call(api, "/api/v1/series", **{"match[]": "node_load1"})
    assert status.startswith("200"), body
    assert body["data"] == [{"__name__": "node_load1", "instance": "n1", "job": "ironsight"}]
    status, body = call(api, "/api/v1/label/__name__/values")
    assert status.startswith("200") and "node_load1" in body["data"], body
    status, body = call(api, "/api/v1/series")
    assert status.startswith("400") and body["errorType"] == "bad_data"
    store.close()
