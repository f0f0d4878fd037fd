"""Remote write: every stored sample lands in a real Prometheus (over TLS with basic auth), with its
value and timestamp; retries only on 5xx / 429; a bounded queue that counts what it drops."""

from __future__ import annotations

import http.server
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import cramjam
import duckdb
import pytest

from ironsight.collector.remote_write.series import Series, SeriesBuilder
from ironsight.collector.remote_write.writer import Config, ConfigError, RemoteWriter
from ironsight.core.columnar import to_arrow
from ironsight.core.schema import TABLES
from ironsight.core.trace import read_header
from ironsight.prompb import remote_pb2 as prompb

from support.batches import one_batch
from support.processes import BIN, CollectorProcess, free_port, run_cli, wait_for
from support.prom import Prometheus, samples
from support.tlsfiles import make_tls
from support.traces import trace_until_now

PASSWORD = "s3cret-for-the-test"


def stored_series(db: Path, trace: Path, labels: dict[str, str]) -> Series:
    """What the collector should have forwarded: its whole store, rendered as series."""
    header, _ = read_header(trace)
    builder = SeriesBuilder(labels)
    for node in header.nodes:
        builder.learn(node.node_id, node)
    con = duckdb.connect(str(db), read_only=True)
    out: Series = {}
    for name in TABLES:
        table = con.sql(f"SELECT * FROM {name} ORDER BY time").to_arrow_table()
        if table.num_rows:
            builder.add([(name, table)], out)
    con.close()
    return out


@pytest.mark.slow
def test_every_stored_sample_lands_in_prometheus(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web = (
        f"tls_server_config:\n  cert_file: {tls.cert}\n  key_file: {tls.key}\n"
        f"basic_auth_users:\n  writer: '{hashed}'\n"
    )
    prom = Prometheus(tmp_path, {}, web_config=web, ca=tls.ca, auth=("writer", PASSWORD))
    (tmp_path / "password").write_text(PASSWORD + "\n")
    trace = trace_until_now(tmp_path, "thermal", 150, 600)  # 2 nodes x 2 GPUs, the last 150 s
    db = tmp_path / "c.duckdb"
    c = CollectorProcess(db, tmp_path / "collector.log", http=True, extra=[
        "--no-detect", "--remote-write-url", f"{prom.url}/api/v1/write", "--remote-write-ca-file", str(tls.ca),
        "--remote-write-username", "writer", "--remote-write-password-file", str(tmp_path / "password"),
        "--remote-write-label", "cluster=test",
    ]).start()  # fmt: skip
    try:
        run_cli("replay", str(trace), "--collector", c.target, "--max")
        deadline = time.monotonic() + 60
        while True:
            got = samples(c.metrics("ironsight_remote_write_samples_sent_total"))
            idle = got[("ironsight_remote_write_queue_values", frozenset())] == 0
            sent = got[("ironsight_remote_write_samples_sent_total", frozenset())]
            if (idle and sent > 0 and time.monotonic() > deadline - 55) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert got[("ironsight_remote_write_samples_failed_total", frozenset())] == 0
        assert got[("ironsight_remote_write_values_dropped_total", frozenset())] == 0
        assert 0 < got[("ironsight_remote_write_cpu_seconds_total", frozenset())] < 30
    finally:
        assert c.stop() == 0
    try:
        expected = stored_series(db, trace, {"cluster": "test"})
        assert sent == sum(len(v) for v in expected.values()) > 50_000  # ~260 series x 150 s x 2 nodes
        landed: Series = {}
        for node in ("sim-000", "sim-001"):
            for r in prom.query(f'{{job="ironsight", instance="{node}"}}[15m]'):
                labels = tuple(sorted(r["metric"].items()))
                landed[labels] = [(round(float(t) * 1000), float(v)) for t, v in r["values"]]
        assert landed.keys() == expected.keys()
        for labels, values in expected.items():
            assert landed[labels] == sorted(values), dict(labels)
        # And against the raw rows, independent of the rendering: GPU temperature and CPU user seconds.
        con = duckdb.connect(str(db), read_only=True)
        rows = con.execute(
            "SELECT epoch_ms(time), temperature_celsius FROM gpu WHERE node = 'sim-001' AND device = '1' ORDER BY time"
        ).fetchall()
        temp = prom.query('DCGM_FI_DEV_GPU_TEMP{instance="sim-001", gpu="1", cluster="test"}[15m]')
        assert [(round(float(t) * 1000), float(v)) for t, v in temp[0]["values"]] == rows
        rows = con.execute(
            "SELECT epoch_ms(time), user_seconds FROM cpu WHERE node = 'sim-000' AND device = '0' ORDER BY time"
        ).fetchall()
        user = prom.query('node_cpu_seconds_total{instance="sim-000", cpu="0", mode="user"}[15m]')
        assert [(round(float(t) * 1000), float(v)) for t, v in user[0]["values"]] == rows
        con.close()
    finally:
        prom.stop()


class Receiver:
    """A remote-write endpoint on loopback that answers from a script (then 200) and decodes what it got."""

    def __init__(self, script: list[int], tls: Any = None) -> None:
        self.script = list(script)
        self.requests: list[tuple[dict[str, str], prompb.WriteRequest]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = prompb.WriteRequest.FromString(bytes(cramjam.snappy.decompress_raw(body)))
                outer.requests.append((dict(self.headers), request))
                status = outer.script.pop(0) if outer.script else 200
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        scheme = "http"
        if tls is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(tls.cert), str(tls.key))
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_port}/api/v1/write"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    r = Receiver(request.param)
    yield r
    r.stop()


def group(seq: int, node: str = "n1") -> list[tuple[str, Any]]:
    batch = one_batch(seq, node)
    return [(t.name, to_arrow(node, t)) for t in batch.tables]


@pytest.mark.slow
@pytest.mark.parametrize("receiver", [[503, 429, 500, 200]], indirect=True)
def test_5xx_and_429_are_retried_until_accepted(receiver: Receiver) -> None:
    w = RemoteWriter(Config(receiver.url, min_backoff_s=0.01))
    w.start()
    w.submit(group(1), [])
    wait_for(lambda: w.stats.samples_sent > 0)
    w.stop()
    assert w.stats.retries == 3 and w.stats.requests == 4 and w.stats.samples_sent == 1
    bodies = [r.SerializeToString() for _, r in receiver.requests]
    assert len(bodies) == 4 and len(set(bodies)) == 1  # the same request each time
    headers, request = receiver.requests[-1]
    assert headers["Content-Encoding"] == "snappy" and headers["Content-Type"] == "application/x-protobuf"
    assert headers["X-Prometheus-Remote-Write-Version"] == "0.1.0"
    (ts,) = request.timeseries
    labels = [(lb.name, lb.value) for lb in ts.labels]
    assert labels == sorted(labels) and ("__name__", "node_load1") in labels and ("instance", "n1") in labels
    assert [s.value for s in ts.samples] == [1.25] and abs(ts.samples[0].timestamp / 1000 - time.time()) < 60


@pytest.mark.slow
@pytest.mark.parametrize("receiver", [[400, 401, 404]], indirect=True)
def test_other_4xx_are_not_retried(receiver: Receiver) -> None:
    w = RemoteWriter(Config(receiver.url, min_backoff_s=0.01))
    w.start()
    for seq in (1, 2, 3):
        w.submit(group(seq), [])
        wait_for(lambda seq=seq: w.stats.samples_failed == seq)
    w.stop()
    assert w.stats.requests == 3 and w.stats.retries == 0 and w.stats.samples_sent == 0


@pytest.mark.slow
@pytest.mark.parametrize("receiver", [[503] * 1000], indirect=True)
def test_a_full_queue_drops_the_oldest_and_counts_them(receiver: Receiver) -> None:
    w = RemoteWriter(Config(receiver.url, min_backoff_s=0.05, max_backoff_s=0.05, queue_values=1000))
    w.start()
    w.submit(group(0), [])
    wait_for(lambda: w.stats.retries >= 1)  # the sender is stuck on the first request
    for seq in range(1, 1501):
        w.submit(group(seq), [])  # one value each
    assert w.stats.values_dropped == 500 and w.stats.queued_values == 1000
    assert w.stats.sending_values == 1 and w.stats.unsent_values == 1001  # the first, still being retried
    w.stop(0.2)
    assert w.stats.samples_sent == 0


@pytest.mark.slow
def test_bearer_token_over_tls(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    r = Receiver([], tls=tls)
    (tmp_path / "token").write_text("tok-123\n")
    w = RemoteWriter(Config(r.url, bearer_token_file=tmp_path / "token", ca_file=tls.ca))
    try:
        w.start()
        w.submit(group(1), [])
        wait_for(lambda: w.stats.samples_sent == 1)
        assert r.requests[0][0]["Authorization"] == "Bearer tok-123"
    finally:
        w.stop()
        r.stop()


def test_an_untrusted_certificate_is_retried_not_sent(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    r = Receiver([], tls=tls)
    w = RemoteWriter(Config(r.url, min_backoff_s=0.01, max_backoff_s=0.05))  # system CAs only
    try:
        w.start()
        w.submit(group(1), [])
        wait_for(lambda: w.stats.retries >= 2)
        assert r.requests == [] and w.stats.samples_sent == 0
    finally:
        w.stop(0)
        r.stop()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--remote-write-url", "ftp://x/y"], "want http(s)://HOST[:PORT]/PATH"),
        (["--remote-write-username", "u"], "need --remote-write-url"),
        (["--remote-write-url", "http://h/w", "--remote-write-label", "9x=1"], "Prometheus label name"),
        (["--remote-write-url", "http://h/w", "--remote-write-username", "u"], "needs both"),
        (
            ["--remote-write-url", "https://h/w", "--remote-write-ca-file", "/nonexistent"],
            "not a readable file",
        ),
    ],
)
def test_bad_remote_write_flags_fail_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    proc = subprocess.run(
        [str(BIN / "ironsight-collector"), "--db", str(tmp_path / "x.duckdb"), *args],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 2 and message in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("ironsight-collector: error:")
    assert not (tmp_path / "x.duckdb").exists()  # refused before anything was opened


def test_config_refuses_token_and_basic_auth_together(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="not both"):
        Config(
            "http://h/w", bearer_token_file=tmp_path / "f", username="u", password_file=tmp_path / "f"
        ).check()
