"""Batches made by hand for ingest tests, and a spool that records what it was given."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from ironsight.agent.spool import Spool
from ironsight.core.columnar import TableBuilder
from ironsight.v1 import telemetry_pb2 as pb


def one_batch(seq: int, node: str = "dup-node", packed: bool = True) -> pb.Batch:
    b = TableBuilder("load")
    b.add(time.time_ns(), "", {"load1": 1.25})
    batch = pb.Batch(node_id=node, boot_id="boot-1", seq=seq, interval_s=1.0)
    batch.tables.append(b.to_proto(packed))
    return batch


GPUS = 8


TICKS = 10  # a batch: 10 ticks of 8 GPUs, as an agent at 0.1 s sends each second


class RecordingSpool(Spool):
    """A spool that remembers which batches the collector acknowledged."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, max_bytes=1 << 30)
        self.acked: set[int] = set()

    def ack(self, seq: int) -> bool:
        self.acked.add(seq)
        return super().ack(seq)


def gpu_batch(seq: int, t0_ns: int) -> pb.Batch:
    b = TableBuilder("gpu")
    for k in range(TICKS):
        for g in range(GPUS):
            b.add(t0_ns + k * 1_000_000, str(g), {"util_gpu_percent": float(seq % 100), "power_watts": 300.0 + g,
                                                  "temperature_celsius": 60.0, "energy_joules": float(seq)})  # fmt: skip
    batch = pb.Batch(node_id="heavy", boot_id="boot-heavy", seq=seq, interval_s=0.001)
    batch.tables.append(b.to_proto())
    return batch


def check_store(db: Path, acked: set[int]) -> set[int]:
    """Opens the file as a fresh process would; returns the stored seqs after checking them."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        stored = [s for (s,) in con.execute("SELECT seq FROM batches WHERE node = 'heavy'").fetchall()]
        dup_rows = con.execute(
            "SELECT count(*) - count(DISTINCT (device, time)) FROM gpu WHERE node = 'heavy'"
        ).fetchall()[0][0]
        rows = con.execute("SELECT count(*) FROM gpu WHERE node = 'heavy'").fetchall()[0][0]
    finally:
        con.close()
    assert len(stored) == len(set(stored)), "a batch stored twice"
    assert dup_rows == 0, "a sample stored twice"
    assert rows == len(stored) * TICKS * GPUS, "rows without their batch, or a batch without its rows"
    missing = acked - set(stored)
    assert not missing, f"{len(missing)} acknowledged batches missing, e.g. {sorted(missing)[:5]}"
    return set(stored)


# Looks at a node's GPU owners, an hour ago on whole seconds (collector/test_jobs*.py).
T0 = (time.time_ns() // 10**9 - 3600) * 10**9  # an hour ago, on a whole second


def look(
    node: str, seq: int, at_s: int, jobs: dict[str, list[str]], gpus: tuple[str, ...] = ("0", "1")
) -> pb.Batch:
    """A batch from `node` whose look at `at_s` seconds after T0 finds jobs[gpu] on each GPU."""
    b = TableBuilder("load")
    b.add(T0 + at_s * 10**9, "", {"load1": 1.0})
    out = pb.Batch(node_id=node, boot_id="b", seq=seq, interval_s=1.0)
    out.tables.append(b.to_proto())
    o = out.ownership
    o.time_ns, o.gpus[:] = T0 + at_s * 10**9, list(gpus)
    for gpu, names in jobs.items():
        for job in names:
            o.jobs.add(gpu=gpu, job=job, source="slurm", attrs={"user": "ana"})
            o.processes.add(gpu=gpu, pid=100 + seq, name="python", job=job, used_memory_bytes=-1,
                            sm_util_percent=float("nan"))  # fmt: skip
    return out


def at(seconds: int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(T0 / 1e9 + seconds, UTC).replace(tzinfo=None)
