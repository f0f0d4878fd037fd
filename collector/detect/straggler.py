"""Stragglers: a node whose training iterations are persistently slower than its peers'.

Only a collector that sees every node can find one. Each node's iteration
period is read off its GPUs' mean utilization: a synchronous step is compute
then all-reduce, so the series repeats with the step's period. Per window the
period is the first strong peak of the autocorrelation (all nodes and steps
at once, one FFT per window along the last axis). A node is slow when its
period is well above the median of its peers' (and, with enough peers, a
robust z-score says it is an outlier, not the spread of a noisy job).

Windows where a node has no clear period (idle, a checkpoint pause, sampling
too coarse to resolve the step: a period must span at least 2.5 samples) are
not judged: aliasing would make a slow node look fast. All nodes in a store
count as one job.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.lib.stride_tricks import sliding_window_view

from ironsight.collector.detect.sql import ts
from ironsight.collector.detect.thresholds import Thresholds

COLUMNS = pa.schema(
    [
        ("node", pa.string()),
        ("device", pa.string()),
        ("step_end", pa.timestamp("us")),
        ("kind", pa.string()),
        ("severity", pa.string()),
        ("cause", pa.string()),
        ("score", pa.float64()),
        ("active", pa.bool_()),
        ("onset", pa.timestamp("us")),
        ("evidence", pa.string()),
    ]
)
MAX_WINDOWS = 1 << 20  # windows judged per chunk: bounds memory on long offline ranges


@dataclass
class Periods:
    """Per node (rows) and step (columns): period in seconds (NaN: none clear), its strength, samples."""

    period: np.ndarray
    strength: np.ndarray
    samples: np.ndarray


def node_series(
    con: Any, start: datetime, end: datetime, t: Thresholds
) -> tuple[list[str], int, np.ndarray, np.ndarray]:
    """Each node's mean GPU utilization on a 1 s grid over (start - window, end].

    Returns nodes, the grid's first second (Unix), the series (NaN where no
    sample), and the sample count per grid second.
    """
    rows = con.sql(
        f"""SELECT node, epoch(time_bucket(INTERVAL 1 SECOND, time))::BIGINT AS sec,
                avg(util_gpu_percent) AS util, count(DISTINCT time) AS n
            FROM gpu
            WHERE time > {ts(start - timedelta(seconds=t.straggler_window_s))} AND time <= {ts(end)}
                AND memory_used_bytes > {t.active_memory_bytes} AND util_gpu_percent IS NOT NULL
            GROUP BY ALL"""
    ).to_arrow_table()
    if rows.num_rows == 0:
        return [], 0, np.zeros((0, 0)), np.zeros((0, 0))
    node_col = rows["node"].combine_chunks().dictionary_encode()
    nodes = node_col.dictionary.to_pylist()
    idx = node_col.indices.to_numpy()
    sec = rows["sec"].to_numpy()
    # Only the span that has data: an offline range is often far wider.
    first = max(int(_epoch(start)) - t.straggler_window_s, int(sec.min()))
    last = min(int(_epoch(end)), int(sec.max()) + t.step_s)
    width = max(last - first, 0) + 1
    keep = (sec >= first) & (sec <= last)
    series = np.full((len(nodes), width), np.nan)
    counts = np.zeros((len(nodes), width))
    series[idx[keep], sec[keep] - first] = rows["util"].to_numpy()[keep]
    counts[idx[keep], sec[keep] - first] = rows["n"].to_numpy()[keep]
    return nodes, first, series, counts


def _epoch(value: datetime) -> float:
    # Stored times are naive UTC.
    return (value - datetime(1970, 1, 1)).total_seconds()


def _interpolate(x: np.ndarray) -> np.ndarray:
    """Fills NaN along the last axis linearly between samples (sparser sampling than the grid)."""
    n = x.shape[-1]
    valid = ~np.isnan(x)
    idx = np.arange(n)
    prev = np.where(valid, idx, -1)
    np.maximum.accumulate(prev, axis=-1, out=prev)
    nxt = np.where(valid, idx, n)
    nxt = np.flip(np.minimum.accumulate(np.flip(nxt, -1), axis=-1), -1)
    lo, hi = np.clip(prev, 0, n - 1), np.clip(nxt, 0, n - 1)
    xl, xh = np.take_along_axis(x, lo, -1), np.take_along_axis(x, hi, -1)
    xl = np.where(prev < 0, xh, xl)  # before the first sample: hold it; after the last: likewise
    xh = np.where(nxt >= n, xl, xh)
    span = np.maximum(hi - lo, 1)
    filled: np.ndarray = xl + (xh - xl) * np.clip(idx - lo, 0, None) / span
    return filled


def periods(windows: np.ndarray, counts: np.ndarray, t: Thresholds) -> Periods:
    """Iteration period of each window (..., W): the first autocorrelation peak as strong as the best.

    windows: utilization on a 1 s grid, NaN where nothing was sampled; counts: samples per second.
    """
    w = windows.shape[-1]
    seen = ~np.isnan(windows)
    samples = counts.sum(axis=-1)
    # Judged only when the node sampled from the window's first seconds to its end.
    judged = seen[..., : max(1, w // 8)].any(axis=-1) & seen[..., -max(1, w // 8) :].any(axis=-1)
    # Steady: a checkpoint pause or a phase change inside the window shifts its level
    # and makes spurious periods; such windows are not judged.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # windows with nothing sampled: not judged
        halves = np.nanmean(windows[..., : w // 2], axis=-1), np.nanmean(windows[..., w // 2 :], axis=-1)
        judged &= np.abs(halves[0] - halves[1]) <= t.straggler_level_shift * np.nanmean(windows, axis=-1)
        x = _interpolate(windows)
        x = np.nan_to_num(x - np.nanmean(x, axis=-1, keepdims=True))
    n = 1 << (2 * w - 1).bit_length()
    spectrum = np.fft.rfft(x, n, axis=-1)
    max_lag = w // 3
    ac = np.fft.irfft(spectrum * np.conj(spectrum), n, axis=-1)[..., : max_lag + 2]
    energy = ac[..., :1]
    flat = energy[..., 0] < 1e-6 * w  # a constant series has no period
    lags = np.arange(ac.shape[-1])
    ac = ac / np.maximum(energy, 1e-12) * (w / (w - lags))  # unbiased: fewer pairs at long lags
    inner = ac[..., 1:-1]
    k = lags[1:-1]
    peak = (inner >= ac[..., :-2]) & (inner > ac[..., 2:]) & (k >= 2) & (inner >= t.straggler_min_strength)
    best = np.where(peak, inner, -np.inf).max(axis=-1, keepdims=True)
    # The fundamental, not a multiple of it: the first peak nearly as strong as the best.
    candidate = peak & (inner >= 0.7 * best)
    first = np.argmax(candidate, axis=-1) + 1
    has = candidate.any(axis=-1) & judged & ~flat

    def at(offset: int) -> np.ndarray:
        return np.take_along_axis(ac, np.clip(first + offset, 0, ac.shape[-1] - 1)[..., None], -1)[..., 0]

    a, b, c = at(-1), at(0), at(1)
    den = a - 2 * b + c
    shift = np.divide(0.5 * (a - c), den, out=np.zeros_like(den), where=np.abs(den) > 1e-12)
    period = first + np.clip(shift, -0.5, 0.5)
    # Nyquist with margin: a period must span 2.5 samples, or a slow node can alias fast.
    interval = w / np.maximum(samples, 1)
    has &= period >= 2.5 * interval
    return Periods(np.where(has, period, np.nan), np.where(has, b, np.nan), samples)


def judge(p: Periods, t: Thresholds) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per node and step: slow?, peers' median period, slower fraction, robust z (NaN: too few peers).

    The baseline is the median over every node with a period (a straggler
    cannot drag it up); with only two, each node's baseline is the other's.
    """
    period = p.period
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # steps where no node has a period
        count = (~np.isnan(period)).sum(axis=0)
        median_all = np.nanmedian(period, axis=0)
        mad = np.nanmedian(np.abs(period - median_all), axis=0)
        other = np.nansum(period, axis=0) - period
        median = np.where(count == 2, other, median_all)
        median = np.where((count >= 2) & ~np.isnan(period), median, np.nan)
        slower = period / median - 1
        z = (period - median) / np.maximum(1.4826 * mad, 0.02 * median)
    z = np.where(count - 1 >= t.straggler_z_min_peers, z, np.nan)
    slow = (slower >= t.straggler_slower_fraction) & ~(z < t.straggler_z)
    return np.nan_to_num(slow, nan=0).astype(bool), median, slower, z


def flagged(con: Any, start: datetime, end: datetime, t: Thresholds) -> pa.Table:
    """Straggler steps in (start, end], in the detectors' common shape.

    A slow node's steps are active rows. A window where it cannot be judged (a
    checkpoint pause, say) keeps its last verdict for up to straggler_hold_s
    as an inactive row, so a pause the whole job takes does not split one
    straggler into several findings.
    """
    w, s, hold = t.straggler_window_s, t.step_s, t.straggler_hold_s
    lookback = start - timedelta(seconds=hold)
    nodes, first, series, counts = node_series(con, lookback, end, t)
    if not nodes:
        return COLUMNS.empty_table()
    # Step ends on the step grid, as time_bucket places them.
    last = min(int(_epoch(end)), first + series.shape[1] - 1)
    step_ends = np.arange((int(_epoch(lookback)) // s + 1) * s, last + 1, s)
    step_ends = step_ends[step_ends - w >= first]
    shape = (len(nodes), len(step_ends))
    period, strength, samples = np.full(shape, np.nan), np.full(shape, np.nan), np.zeros(shape)
    per_chunk = max(1, MAX_WINDOWS // len(nodes))
    for lo in range(0, len(step_ends), per_chunk):
        cols = slice(lo, lo + per_chunk)
        starts = step_ends[cols] - w - first  # window [end - w, end) on the grid
        windows = sliding_window_view(series, w, axis=1)[:, starts]
        cnt = sliding_window_view(counts, w, axis=1)[:, starts]
        p = periods(windows, cnt, t)
        # Where the window is unclear (a change of pace inside it), its newest
        # two thirds may already be clear: an onset is judged a step sooner.
        recent = w - 2 * w // 3
        q = periods(windows[..., recent:], cnt[..., recent:], t)
        unclear = np.isnan(p.period)
        period[:, cols] = np.where(unclear, q.period, p.period)
        strength[:, cols] = np.where(unclear, q.strength, p.strength)
        samples[:, cols] = np.where(unclear, q.samples, p.samples)
    p = Periods(period, strength, samples)
    slow, median, slower, z = judge(p, t)
    # The last verdict (slow or not) carries across unjudged steps, at most hold seconds.
    judged = ~np.isnan(median) & ~np.isnan(period)
    last = np.where(judged, np.arange(shape[1]), -1)
    np.maximum.accumulate(last, axis=1, out=last)
    carried = np.take_along_axis(slow, np.maximum(last, 0), axis=1) & (last >= 0)
    held = ~judged & carried & ((np.arange(shape[1]) - last) * s <= hold)
    mine = step_ends > _epoch(start)
    ni, si = np.nonzero((slow | held) & mine)
    if len(ni) == 0:
        return COLUMNS.empty_table()
    return _rows([nodes[i] for i in ni], step_ends[si], p, median, slower, z, slow[ni, si], ni, si, t)


def _rows(
    nodes: list[str],
    ends: np.ndarray,
    p: Periods,
    median: np.ndarray,
    slower: np.ndarray,
    z: np.ndarray,
    active: np.ndarray,
    ni: np.ndarray,
    si: np.ndarray,
    t: Thresholds,
) -> pa.Table:
    sl = np.where(active, slower[ni, si], 0.0)
    evidence = [
        json.dumps(
            {"judged": False, "why": "no clear iteration period in this window (pause or phase change)"}
        )
        if not a
        else json.dumps(
            {
                "iteration_period_s": round(float(p.period[i, j]), 3),
                "peers_median_period_s": round(float(median[i, j]), 3),
                "slower_fraction": round(float(slower[i, j]), 3),
                "robust_z": None if np.isnan(z[i, j]) else round(float(z[i, j]), 2),
                "periodicity": round(float(p.strength[i, j]), 3),
                "samples_in_window": int(p.samples[i, j]),
            }
        )
        for i, j, a in zip(ni, si, active, strict=True)
    ]
    count = len(nodes)
    return pa.table(
        {
            "node": nodes,
            "device": [""] * count,
            "step_end": pa.array(ends.astype("datetime64[s]").astype("datetime64[us]"), pa.timestamp("us")),
            "kind": ["straggler"] * count,
            "severity": np.where(sl >= t.straggler_critical_fraction, "critical", "warning").tolist(),
            "cause": ["slow_iterations"] * count,
            "score": np.where(
                active, np.nan_to_num(p.strength[ni, si]), 0.0
            ),  # the peak: the clearest window
            "active": active,
            "onset": pa.nulls(count, pa.timestamp("us")),
            "evidence": evidence,
        },
        schema=COLUMNS,
    )
