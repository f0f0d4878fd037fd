"""The API's own behaviour, in process: a timeout ends the query (the DuckDB statement included), and
answers splice the rendered JSON unchanged."""

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
