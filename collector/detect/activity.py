"""Each node's GPU activity on a 1 s grid, the straggler detector's input, and what a live
detector keeps of it between steps.

Offline, the grid is read whole. Live, each step is 10 s after the last, yet the
grid spans four minutes (two minutes of verdicts held, each over windows of up to
two minutes): re-reading it every step was a third of a step's cost at 1,000
nodes. A Cache keeps the grid and re-reads only its last REFRESH_S seconds, where
data still in flight lands; a sample that arrives later than that is seen by
`ironsight detect`, not by the live step (its verdicts are already out).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from ironsight.collector.detect.sql import ts

REFRESH_S = 30

# A GPU's activity (0-1): SM activity where it has GPM, else power against its limit; NVML
# utilization only where neither is stored (NCCL's waits count as busy in it).
ACTIVITY = "coalesce(gpm_sm_active_ratio, power_watts / nullif(power_limit_watts, 0), util_gpu_percent / 100)"


@dataclass
class NodeSeries:
    """Each node's mean GPU activity and utilization on a 1 s grid (NaN where no sample), and its model."""

    nodes: list[str]
    first: int  # the grid's first second (Unix)
    activity: np.ndarray
    util: np.ndarray
    counts: np.ndarray  # samples per grid second
    model: np.ndarray  # per node: an index of its GPU model
    keys: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # per node: memory, top SM clock


EMPTY = NodeSeries([], 0, np.zeros((0, 0)), np.zeros((0, 0)), np.zeros((0, 0)), np.zeros(0, int))


@dataclass
class Cache:
    """A live detector's grid between steps, and the periods it read per step end (node names, arrays)."""

    series: NodeSeries | None = None
    lo: int = 0  # the grid read's bounds (Unix seconds)
    hi: int = 0
    newest: int = 0  # the newest second with data
    periods: dict[int, tuple[list[str], tuple[np.ndarray, ...]]] = field(default_factory=dict)


def epoch_s(value: datetime) -> int:
    """Unix seconds of a stored (naive UTC) time, rounded down: the grid's and the step grid's."""
    return int((value - datetime(1970, 1, 1)).total_seconds() // 1)


def _read(con: Any, since: datetime, until: datetime, min_memory: int) -> pa.Table:
    """Per node and second in [since, until]: mean activity, utilization and samples, and the
    node's memory size and top clock."""
    # Per sampling instant first (the node's mean over its GPUs), then per second: the
    # instants a second are a plain count, not a DISTINCT over every GPU's row.
    table: pa.Table = con.sql(
        f"""SELECT node, epoch(time_bucket(INTERVAL 1 SECOND, time))::BIGINT AS sec, avg(act) AS act,
                avg(util) AS util, count(*) AS n, max(mem) AS mem, max(clock) AS clock
            FROM (SELECT node, time, avg({ACTIVITY}) AS act, avg(util_gpu_percent) AS util,
                      max(memory_total_bytes) AS mem, max(sm_clock_max_hertz) AS clock
                  FROM gpu
                  WHERE time >= {ts(since)} AND time <= {ts(until)}
                      AND memory_used_bytes > {min_memory} AND util_gpu_percent IS NOT NULL
                  GROUP BY node, time)
            GROUP BY ALL"""
    ).to_arrow_table()
    return table


def node_series(
    con: Any,
    start: datetime,
    end: datetime,
    history_s: int,
    min_memory: int,
    pad_s: int,
    cache: Cache | None = None,
) -> NodeSeries:
    """Each node's series over (start - history_s, end], through the cache where it holds the
    earlier part; the grid runs pad_s past the newest data (or to end)."""
    # Whole seconds only, (lo, hi]: a kept grid's first second is then the one a whole read has.
    lo, hi = epoch_s(start - timedelta(seconds=history_s)), epoch_s(end)
    old = cache.series if cache is not None else None
    reuse = (
        cache is not None
        and old is not None
        and old.nodes
        and cache.lo <= lo
        and 0 <= hi - cache.hi <= REFRESH_S
    )
    read_from = max(lo, cache.hi - REFRESH_S) if reuse and cache is not None else lo
    rows = _read(
        con, datetime(1970, 1, 1) + timedelta(seconds=read_from if reuse else lo + 1), end, min_memory
    )
    node_col = rows["node"].combine_chunks().dictionary_encode()
    fresh = node_col.dictionary.to_pylist()
    sec = rows["sec"].to_numpy()
    if not reuse or old is None or cache is None:
        if rows.num_rows == 0:
            return EMPTY
        nodes, first, newest = fresh, max(lo + 1, int(sec.min())), int(sec.max())
        mine: list[int] = []
    else:
        known = set(old.nodes)
        nodes = old.nodes + [n for n in fresh if n not in known]
        first = max(lo + 1, old.first)
        newest = max(cache.newest, int(sec.max())) if len(sec) else cache.newest
        mine = list(range(len(old.nodes)))
    last = min(hi, newest + pad_s)
    width = max(last - first, 0) + 1
    where = {n: i for i, n in enumerate(nodes)}
    idx = np.array([where[n] for n in fresh], dtype=int)[node_col.indices.to_numpy()] if fresh else sec
    grids = [
        np.full((len(nodes), width), np.nan),
        np.full((len(nodes), width), np.nan),
        np.zeros((len(nodes), width)),
    ]
    keys = np.zeros((len(nodes), 2))
    if mine and old is not None:
        # The cached seconds before the re-read, as they were.
        upto = min(read_from, old.first + old.activity.shape[1]) - first
        if upto > 0:
            for grid, before in zip(grids, (old.activity, old.util, old.counts), strict=True):
                grid[mine, :upto] = before[:, first - old.first : first - old.first + upto]
        keys[mine] = old.keys
    keep = (sec >= first) & (sec <= last)
    for grid, col in zip(grids, ("act", "util", "n"), strict=True):
        grid[idx[keep], sec[keep] - first] = rows[col].to_numpy(zero_copy_only=False)[keep]
    # The GPU model, as far as peers go: memory size and top SM clock.
    for k, col in enumerate(("mem", "clock")):
        np.maximum.at(keys[:, k], idx, np.nan_to_num(rows[col].to_numpy(zero_copy_only=False).astype(float)))
    # A node gone from the whole span is no one's peer.
    present = grids[2].sum(axis=1) > 0
    if not present.all():
        nodes = [n for n, p in zip(nodes, present, strict=True) if p]
        grids, keys = [g[present] for g in grids], keys[present]
    model = np.unique(keys, axis=0, return_inverse=True)[1].reshape(-1) if len(nodes) else np.zeros(0, int)
    series = NodeSeries(nodes, first, grids[0], grids[1], grids[2], model, keys)
    if cache is not None:
        cache.series, cache.lo, cache.hi, cache.newest = series, lo, hi, newest
    return series if nodes else EMPTY
