"""The straggler detector's grid, read whole offline and kept between live steps: a kept grid
is the grid read whole, with late samples inside the re-read span and nodes that come and go."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np

from ironsight.collector.detect.activity import REFRESH_S, Cache, NodeSeries, node_series
from ironsight.collector.store import Store
from ironsight.core.columnar import TableBuilder
from ironsight.v1 import telemetry_pb2 as pb

T0 = int(time.time()) // 60 * 60 - 3600
HISTORY_S = 120


def write(db: Path, node: str, seconds: range, seq: int) -> None:
    """One GPU of `node` at 60 % + its second's index / 1000, each second in `seconds` after T0."""
    b = TableBuilder("gpu")
    for i in seconds:
        b.add((T0 + i) * 10**9, "0", {"util_gpu_percent": 60.0 + i / 1000, "memory_used_bytes": 40 << 30})
    batch = pb.Batch(node_id=node, boot_id="b", seq=seq, interval_s=1.0)
    batch.tables.append(b.to_proto())
    store = Store(db)
    store.ingest([batch])
    store.close()


def at(second: int) -> datetime:
    return datetime(1970, 1, 1) + timedelta(seconds=T0 + second)


def read(db: Path, end: int, cache: Cache | None = None) -> NodeSeries:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return node_series(con, at(end - 10), at(end), HISTORY_S, 0, 10, cache)
    finally:
        con.close()


def same(a: NodeSeries, b: NodeSeries) -> None:
    assert a.nodes == b.nodes and a.first == b.first
    for x, y in ((a.util, b.util), (a.activity, b.activity), (a.counts, b.counts)):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.model, b.model)


def test_a_kept_grid_is_the_grid_read_whole(tmp_path: Path) -> None:
    db = tmp_path / "a.duckdb"
    write(db, "n0", range(0, 300), 1)
    write(db, "n1", range(0, 300), 1)
    cache = Cache()
    for end in range(200, 300, 10):
        same(read(db, end, cache), read(db, end))
    assert cache.series is not None and cache.series.util[0, -1] == 60.0 + 290 / 1000


def test_late_samples_inside_the_reread_span_and_new_nodes_are_seen(tmp_path: Path) -> None:
    db = tmp_path / "b.duckdb"
    write(db, "n0", range(0, 200), 1)
    write(db, "n1", range(0, 190), 1)  # n1's last ten seconds arrive after the step at 200
    cache = Cache()
    first = read(db, 200, cache)
    assert np.isnan(first.util[1, -11:]).all()  # not there yet
    write(db, "n1", range(190, 210), 2)
    write(db, "n0", range(200, 210), 2)
    write(db, "n2", range(175, 210), 1)  # a node that joins
    kept = read(db, 210, cache)
    same(kept, read(db, 210))
    assert kept.nodes == ["n0", "n1", "n2"] and kept.util[1, T0 + 195 - kept.first] == 60.0 + 195 / 1000


def test_a_node_gone_drops_out_and_a_gap_reads_whole(tmp_path: Path) -> None:
    db = tmp_path / "c.duckdb"
    write(db, "n0", range(0, 600), 1)
    write(db, "n1", range(0, 100), 1)  # gone after 100 s
    cache = Cache()
    for end in range(150, 250, 10):
        same(read(db, end, cache), read(db, end))
    assert read(db, 250, cache).nodes == ["n0"]  # its last sample is older than the span
    # Steps missed for longer than the re-read span (a stalled collector): read whole again.
    later = 250 + REFRESH_S + 60
    same(read(db, later, cache), read(db, later))
    assert cache.hi == T0 + later
