"""The collector's /metrics: ingest outcomes by reason, lag and last seen per node, store size."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from ironsight.v1 import telemetry_pb2_grpc as pb_grpc

from support.batches import one_batch
from support.processes import CollectorProcess
from support.prom import samples

pytestmark = pytest.mark.slow


def test_ingest_outcomes_lag_and_size(tmp_path: Path) -> None:
    c = CollectorProcess(tmp_path / "m.duckdb", tmp_path / "collector.log", http=True).start()
    try:
        with c.channel() as ch:
            stub = pb_grpc.IngestStub(ch)
            list(stub.Stream(iter([one_batch(1, "n1"), one_batch(2, "n1"), one_batch(1, "n1")]), timeout=20))
            nan = one_batch(3, "n1", packed=False)
            nan.tables[0].columns[0].f64[0] = float("nan")
            old = one_batch(4, "n1")
            old.tables[0].time_ns[0] = 10**18  # 2001
            for bad in (nan, old):
                with pytest.raises(grpc.RpcError):
                    list(stub.Stream(iter([bad]), timeout=20))
        got = samples(c.metrics("ironsight_collector_batches_total"))

        def batches(outcome: str, reason: str = "") -> float:
            return got[
                ("ironsight_collector_batches_total", frozenset({("outcome", outcome), ("reason", reason)}))
            ]

        assert batches("stored") == 2 and batches("duplicate") == 1
        assert batches("rejected", "values") == 1 and batches("rejected", "time") == 1
        assert batches("rejected", "malformed") == 0
        lag = got[("ironsight_collector_node_lag_seconds", frozenset({("node", "n1")}))]
        assert 0 <= lag < 20
        seen = got[("ironsight_collector_node_last_seen_seconds", frozenset({("node", "n1")}))]
        assert abs(seen - time.time()) < 20
        assert got[("ironsight_collector_store_bytes", frozenset())] > 10_000
    finally:
        assert c.stop() == 0


@pytest.mark.parametrize("flag", ["--http-listen", "--remote-write-listen"])
def test_a_taken_http_port_is_one_line_and_an_orderly_stop(tmp_path: Path, flag: str) -> None:
    """Found running the collector on a GPU machine with another still on the port: a traceback, then
    gRPC's C++ core aborting the process. Now one line, exit 1, and the file closed as at a SIGTERM."""
    import socket
    import subprocess

    from support.processes import BIN, free_port

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        done = subprocess.run(
            [str(BIN / "ironsight-collector"), "--db", str(tmp_path / "c.duckdb"), "--insecure",
             "--listen", f"127.0.0.1:{free_port()}", flag, f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        taken.close()
    errors = [line for line in done.stderr.splitlines() if "ironsight-collector:" in line]
    assert done.returncode == 1, done.stderr
    assert errors == [f"ironsight-collector: cannot listen for {'HTTP' if flag == '--http-listen' else 'remote write'}"
                      f" on 127.0.0.1:{port}: [Errno 98] Address already in use"]  # fmt: skip
    assert "Traceback" not in done.stderr and "terminate called" not in done.stderr
    assert "stopped after" in done.stderr  # the orderly stop's last line
    assert not (tmp_path / "c.duckdb.wal").exists()  # checkpointed and closed
