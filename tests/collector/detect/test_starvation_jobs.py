"""Starvation judged within each job: an inference service's low steady GPUs are not starved
beside a training job's busy ones, and GPUs no job is known to own are judged among themselves."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from ironsight.collector.detect.findings import detect
from ironsight.collector.store import Store
from ironsight.core.columnar import TableBuilder
from ironsight.v1 import telemetry_pb2 as pb

from support.traces import own as owners

pytestmark = pytest.mark.slow


def store(tmp_path: Path, util: dict[str, float]) -> duckdb.DuckDBPyConnection:
    """Three minutes at 1 s of 4 GPUs per node, each node's GPUs at util[node] %, holding memory."""
    s = Store(tmp_path / "s.duckdb")
    t0 = (int(time.time()) // 60 - 10) * 60 * 10**9
    for seq, (node, u) in enumerate(util.items(), start=1):
        b = TableBuilder("gpu")
        for i in range(180):
            for gpu in "0123":
                b.add(t0 + i * 10**9, gpu, {"util_gpu_percent": u, "memory_used_bytes": 40 << 30})
        batch = pb.Batch(node_id=node, boot_id="b", seq=seq, interval_s=1.0)
        batch.tables.append(b.to_proto())
        s.ingest([batch])
    s.close()
    return duckdb.connect(str(tmp_path / "s.duckdb"))


def starved(con: duckdb.DuckDBPyConnection) -> set[str]:
    now = datetime.now(UTC).replace(tzinfo=None)
    found = detect(con, now - timedelta(hours=1), now).to_pylist()
    return {f["node"] for f in found if f["kind"] == "data_starvation"}


def own(con: duckdb.DuckDBPyConnection, jobs: dict[str, str | None]) -> None:
    owners(con, jobs, gpus="0123", source="kubernetes")


def test_each_gpu_against_its_own_job(tmp_path: Path) -> None:
    con = store(tmp_path, {"train-1": 96.0, "train-2": 95.0, "infer": 35.0})
    assert starved(con) == {"infer"}  # one job: the service looks starved beside training
    own(con, {"train-1": "llm", "train-2": "llm", "infer": "serving"})
    assert starved(con) == set()
    # A starved GPU in the training job is still found, against its own job's median.
    con.close()
    con = store(tmp_path / "b", {"train-1": 96.0, "train-2": 95.0, "train-3": 30.0, "infer": 35.0})
    own(con, {"train-1": "llm", "train-2": "llm", "train-3": "llm", "infer": "serving"})
    now = datetime.now(UTC).replace(tzinfo=None)
    found = [
        f for f in detect(con, now - timedelta(hours=1), now).to_pylist() if f["kind"] == "data_starvation"
    ]
    assert {f["node"] for f in found} == {"train-3"} and {f["job"] for f in found} == {"llm"}
    peak = json.loads(str(found[0]["evidence"]))["peak"]
    assert peak["job"] == "llm" and peak["job_gpu_util_median_pct"] == 95.0 and peak["job_gpus"] == 12


def test_gpus_no_job_is_known_to_own_are_judged_among_themselves(tmp_path: Path) -> None:
    # c, d and e run something their agents could not place (a training started from a login shell).
    con = store(tmp_path, {"a": 30.0, "b": 31.0, "c": 95.0, "d": 20.0, "e": 96.0})
    own(con, {"a": "etl", "b": "etl", "c": None, "d": None, "e": None})
    assert starved(con) == {"d"}  # against c and e; the etl job's low but steady GPUs are not starved
