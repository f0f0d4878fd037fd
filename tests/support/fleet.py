"""A small fleet caught mid-incident, for `ironsight top`: one node overheating, one starved by its
storage, the rest healthy, with the findings the live detector has open at that moment."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import duckdb

from ironsight.collector.detect.activity import Cache
from ironsight.collector.detect.live import step
from ironsight.core.trace import TraceWriter
from ironsight.offline.replay import to_db
from ironsight.offline.simulate import simulate
from ironsight.v1 import telemetry_pb2 as pb

CUT_S = 600  # both incidents run from about 5.5 minutes in to past 11 minutes
START_NS = 1_793_491_200_000_000_000  # 2026-11-01T00:00:00Z
PARTS = (("thermal", "hot", "4242"), ("starved-storage", "io", "77"))  # thermal: hot-1 GPU 1; starved: io-1


def _renamed(batches: Iterator[pb.Batch], prefix: str) -> Iterator[pb.Batch]:
    for b in batches:
        if min(int(t.time_ns[0]) for t in b.tables if len(t.time_ns)) >= START_NS + CUT_S * 10**9:
            return
        name = f"{prefix}-{int(b.node_id.rsplit('-', 1)[1])}"
        b.node_id = name
        if b.HasField("node"):
            b.node.node_id = b.node.hostname = name
        for i, j in enumerate(b.ownership.jobs):  # each GPU's training process, as NVML lists it
            b.ownership.processes.add(
                gpu=j.gpu,
                pid=4000 + 10 * i,
                name="python3",
                job=j.job,
                used_memory_bytes=61 * 2**30,
                sm_util_percent=97.0,
            )
        yield b


def fleet_store(tmp_path: Path) -> Path:
    """The store: hot-0..2 (job 4242, hot-1's GPU 1 overheating) and io-0..2 (job 77, io-1 starved)."""
    traces = []
    for scenario, prefix, job in PARTS:
        header, batches = simulate(scenario, nodes=3, gpus=2, duration_s=900, seed=7, job=job)
        path = tmp_path / f"{prefix}.trace"
        with TraceWriter(path, header) as w:
            for b in _renamed(batches, prefix):
                w.write(b)
        traces.append(path)
    db = tmp_path / "fleet.duckdb"
    to_db(traces, db)
    con = duckdb.connect(str(db))
    try:
        first, last = con.execute("SELECT min(time), max(time) FROM gpu").fetchall()[0]
        end, cache = first + timedelta(seconds=10), Cache()
        while end <= last:  # as the collector's live detector would have stepped through it
            step(con, end, cache=cache)
            end += timedelta(seconds=10)
    finally:
        con.close()
    return db
