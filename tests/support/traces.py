"""Simulated traces loaded into a store, and how findings are matched to labels."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from ironsight.collector.detect.findings import detect
from ironsight.core.trace import TraceWriter
from ironsight.offline.replay import to_db
from ironsight.offline.simulate import simulate
from ironsight.v1 import telemetry_pb2 as pb

T0 = datetime(2026, 11, 1)


WHOLE = (T0 - timedelta(days=1), T0 + timedelta(days=1))


def simulated(
    tmp_path: Path, scenario: str, seed: int, nodes: int = 2, gpus: int = 2, duration_s: float = 1200
) -> tuple[pb.TraceHeader, duckdb.DuckDBPyConnection]:
    trace, db = tmp_path / f"{scenario}.trace", tmp_path / f"{scenario}.duckdb"
    header, batches = simulate(scenario, nodes=nodes, gpus=gpus, duration_s=duration_s, seed=seed)
    with TraceWriter(trace, header) as w:
        for b in batches:
            w.write(b)
    to_db([trace], db)
    return header, duckdb.connect(str(db))


def overlaps(finding: dict[str, object], label: pb.TraceLabel) -> bool:
    start = finding["start_time"]
    end = finding["end_time"] or T0 + timedelta(days=1)
    lstart = datetime(1970, 1, 1) + timedelta(microseconds=label.start_ns // 1000)
    lend = datetime(1970, 1, 1) + timedelta(microseconds=label.end_ns // 1000)
    return start < lend and end > lstart


def trace_until_now(
    tmp_path: Path, scenario: str, seconds_before_now: int, duration_s: int, job: str = ""
) -> Path:
    """A simulated trace that started seconds_before_now ago, cut at now (the rest has not happened)."""
    now_ns = time.time_ns()
    start_ns = (now_ns - seconds_before_now * 10**9) // 10**9 * 10**9
    header, batches = simulate(
        scenario, nodes=2, gpus=2, duration_s=duration_s, seed=77, start_ns=start_ns, job=job
    )
    path = tmp_path / f"{scenario}.trace"
    with TraceWriter(path, header) as w:
        for b in batches:
            if max(max(t.time_ns, default=0) for t in b.tables) <= now_ns:
                w.write(b)
    return path


def detect_recent(con: duckdb.DuckDBPyConnection) -> list[dict[str, object]]:
    """Every finding in the last three hours of a store made by hand (its rows stamped just now)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    return detect(con, now - timedelta(hours=3), now).to_pylist()


def own(
    con: duckdb.DuckDBPyConnection,
    jobs: Mapping[str, str | None],
    gpus: Iterable[str] = ("0",),
    table: str = "gpu",
    source: str = "slurm",
) -> None:
    """Each node's GPUs in a job (None: listed, with no job), as its agent says: a look at the
    start of the table's data and every minute after, to its end."""
    first, last = con.execute(f"SELECT min(time), max(time) FROM {table}").fetchall()[0]
    rows = []
    at = first
    while at <= last:
        rows += [(node, at, gpu, job, source) for node, job in jobs.items() for gpu in gpus]
        at += timedelta(seconds=60)
    con.executemany("INSERT INTO gpu_jobs VALUES (?, ?, ?, ?, ?, NULL)", rows)
