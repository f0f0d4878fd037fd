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
