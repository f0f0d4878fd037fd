"""`ironsight_job_gpus{ironsight_job, node}`, as the collector's /metrics shows it at each moment:
the GPUs each job holds on each node from the node's last look at or before then, for nodes whose
GPUs reported within the last JOBS_FRESH_S (collector/detect/live.py's jobs_now, on a grid).

On a STEP_MS grid, in one DuckDB statement: each grid point is joined as-of to each node's last
look (gpu_jobs) and to its newest GPU sample, then the GPUs of that look are counted per job. Where
a job stops holding GPUs on a node a staleness marker ends its series, as a scrape would.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow.compute as pc

from ironsight.collector.detect.live import JOBS_FRESH_S
from ironsight.collector.promql.findings import STALE
from ironsight.collector.promql.values import Matcher, Raw, matches

NAME = "ironsight_job_gpus"
STEP_MS = 10_000
JOB = "ironsight_job"

_SQL = f"""
WITH grid AS (SELECT unnest(range(?, ? + 1, {STEP_MS})) AS g),
     looks AS (SELECT DISTINCT node, epoch_ms(time) AS lt FROM gpu_jobs WHERE list_contains(?, node)),
     seen AS (  -- the grid points a node's GPUs reported before: each sample's next point
         SELECT DISTINCT node, (epoch_ms(time) + {STEP_MS} - 1) // {STEP_MS} * {STEP_MS} AS slot FROM gpu
         WHERE time >= make_timestamp((? - {JOBS_FRESH_S * 1000}) * 1000)
           AND time <= make_timestamp(? * 1000) AND list_contains(?, node)),
     held AS (
         SELECT gn.g, l.node, l.lt FROM (SELECT g, node FROM grid, (SELECT DISTINCT node FROM looks)) gn
         ASOF JOIN looks l ON l.node = gn.node AND gn.g >= l.lt),
     fresh AS (
         SELECT held.*, s.slot FROM held ASOF JOIN seen s ON s.node = held.node AND held.g >= s.slot)
SELECT f.g, j.job, f.node, count(DISTINCT j.gpu)::DOUBLE AS gpus
FROM fresh f JOIN gpu_jobs j ON j.node = f.node AND epoch_ms(j.time) = f.lt
WHERE j.job IS NOT NULL AND f.g - f.slot < {JOBS_FRESH_S * 1000}
GROUP BY ALL ORDER BY j.job, f.node, f.g
"""


def job_gpus(con: Any, matchers: Sequence[Matcher], nodes: list[str], mint_ms: int, maxt_ms: int,
             extra: dict[str, str]) -> Raw:  # fmt: skip
    if not matches({"__name__": NAME}, [m for m in matchers if m.name == "__name__"]) or not nodes:
        return Raw.empty()
    (oldest,) = con.execute(
        "SELECT epoch_ms(min(time)) FROM gpu_jobs WHERE list_contains(?, node)", [nodes]
    ).fetchall()[0]
    if oldest is None:
        return Raw.empty()
    first = -(-max(mint_ms, int(oldest)) // STEP_MS) * STEP_MS  # no grid before the first look
    end = min(maxt_ms, int(time.time() * 1000))
    if first > end:
        return Raw.empty()
    got = con.sql(_SQL, params=[first, end, nodes, first, end, nodes]).to_arrow_table()
    if not got.num_rows:
        return Raw.empty()
    job, node = got.column("job").combine_chunks(), got.column("node").combine_chunks()
    changed = pc.or_(pc.not_equal(job[1:], job[:-1]), pc.not_equal(node[1:], node[:-1]))
    cut = np.r_[0, np.flatnonzero(changed.to_numpy(zero_copy_only=False)) + 1]
    bounds = np.r_[cut, got.num_rows]
    t = np.asarray(got.column("g").to_numpy(), dtype=np.int64)
    v = np.asarray(got.column("gpus").to_numpy(), dtype=np.float64)
    labels, keep = [], []
    for k, (j, n) in enumerate(zip(job.take(cut).to_pylist(), node.take(cut).to_pylist(), strict=True)):
        ls = {**extra, "__name__": NAME, JOB: j, "node": n}
        if matches(ls, matchers):
            labels.append(ls)
            keep.append(np.arange(bounds[k], bounds[k + 1]))
    if not labels:
        return Raw.empty()
    return _with_markers(labels, [t[k] for k in keep], [v[k] for k in keep], end)


def _with_markers(labels: list[dict[str, str]], ts: list[np.ndarray], vs: list[np.ndarray], end: int) -> Raw:
    """A staleness marker a step after each run of grid points: the series left /metrics there."""
    out_t, out_v = [], []
    for t, v in zip(ts, vs, strict=True):
        last = np.r_[t[1:] != t[:-1] + STEP_MS, True]  # the last point of each run
        marks = t[last] + STEP_MS
        marks = marks[marks <= end]
        order = np.argsort(np.r_[t, marks], kind="stable")
        out_t.append(np.r_[t, marks][order])
        out_v.append(np.r_[v, np.full(len(marks), STALE)][order])
    return Raw.of(labels, out_t, out_v, stale=True)
