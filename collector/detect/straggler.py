"""Stragglers: a node whose training iterations are persistently slower than its peers'.

Only a collector that sees every node can find one, in two ways:

- **Iteration period** (loosely coupled jobs): each node's period is read off
  its GPUs' activity (SM activity where the GPU has GPM, else power against
  its limit; NVML utilization only where neither is stored, since NCCL's
  kernels keep it near 100 % through the all-reduce). Per window the period is
  the first strong peak of the autocorrelation (one FFT per window along the
  last axis, all nodes and steps at once), over windows of 16, 24, 32, 40, 60
  and 120 s: the shortest that holds two periods, so 2-60 s steps are all resolved. A
  node is slow when its period is well above its peers' median and not a
  multiple of it (a harmonic), while most of its peers have a clear period
  too (an evaluation pass's sub-second steps alias into spurious ones).
- **Busy time in lock-step** (synchronous data-parallel jobs, where every
  node meets every other at each all-reduce and so shares one period): the
  slow node computes while its peers wait at the barrier, NVML calls them all
  busy, but the peers' SM activity (or power) drops while they wait. A node
  whose activity stays well above its peers' while they all run in step
  (their activity moving together) is the one they wait for.

Peers are nodes with the same GPU model (memory size and top clock). Windows
where a node has no clear period (idle, a checkpoint pause, sampling too
coarse: a period must span 2.5 samples) are not judged. Peers share the node's
job at that step (node_jobs); nodes no job is known to own are peers of each other.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.lib.stride_tricks import sliding_window_view

from ironsight.collector.detect.activity import Cache, NodeSeries, epoch_s, node_series
from ironsight.collector.detect.sql import node_jobs as sql_node_jobs
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
CELLS = "straggler_cells"  # (node, step end) pairs whose job is looked up, registered for a query
MAX_WINDOWS = 1 << 20  # windows judged per chunk: bounds memory on long offline ranges


@dataclass
class Periods:
    """Per node (rows) and step (columns): period in seconds (NaN: none clear), its strength, samples."""

    period: np.ndarray
    strength: np.ndarray
    samples: np.ndarray
    window: np.ndarray | None = None  # seconds of the window each period was read in


def windows_s(t: Thresholds) -> tuple[int, ...]:
    """The period's windows, 16-120 s by default: the shortest that holds two periods answers.

    Finely spaced, so a node whose pace just changed is read off a window
    mostly after the change: a longer one still averages in the old pace.
    """
    w = t.straggler_window_s
    return tuple(sorted({w * 2 // 3, w, w * 4 // 3, w * 5 // 3, w * 5 // 2, max(5 * w, 120)}))


def _interpolate(x: np.ndarray) -> np.ndarray:
    """Fills NaN along the last axis linearly between samples (sparser sampling than the grid)."""
    valid = ~np.isnan(x)
    if valid.all():  # sampled every second: nothing to fill
        return x
    n = x.shape[-1]
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
        # A rhythm runs through the whole window: one half swinging and the other flat is a
        # phase change (an evaluation pass starting), whose one edge makes a spurious peak.
        spread = np.nanstd(windows[..., : w // 2], axis=-1), np.nanstd(windows[..., w // 2 :], axis=-1)
        judged &= np.maximum(*spread) <= 2 * np.minimum(*spread)
        # And it swings: an evaluation pass's sub-second steps blur into a level with
        # noise on it, whose autocorrelation can peak anywhere.
        judged &= np.nanstd(windows, axis=-1) >= t.straggler_min_swing * np.nanmean(windows, axis=-1)
        x = _interpolate(windows)
        x = np.nan_to_num(x - np.nanmean(x, axis=-1, keepdims=True))
    n = 1 << (2 * w - 1).bit_length()
    spectrum = np.fft.rfft(x, n, axis=-1)
    max_lag = w // 2  # two periods in the window
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

    def at(lag: np.ndarray) -> np.ndarray:
        return np.take_along_axis(ac, np.clip(lag, 0, ac.shape[-1] - 1)[..., None], -1)[..., 0]

    def refine(lag: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The peak between integer lags (parabola through three), and its height."""
        a, b, c = at(lag - 1), at(lag), at(lag + 1)
        den = a - 2 * b + c
        shift = np.divide(0.5 * (a - c), den, out=np.zeros_like(den), where=np.abs(den) > 1e-12)
        return lag + np.clip(shift, -0.5, 0.5), b

    period, b = refine(first)
    # The fundamental, not a multiple of it. A period that is no whole number of samples
    # puts its dips on and between samples in turn, so its repeats look unlike each other
    # and its multiple nearest a whole lag (10 s for 3.33 s, 7 s for 3.5 s) stands out.
    # The autocorrelation at exactly a third or a half of the peak, between the lags,
    # tells: at 1 s sampling a true fundamental there reads as weak as 0.4 of the peak.
    # Its value is then the peak's lag over 3 or 2, finer than reading the smaller peak.
    found = np.zeros(period.shape, bool)
    for parts in (3, 2):
        part = period / parts
        value = _between(at, part)
        take = has & ~found & (part >= 2) & (value >= 0.4 * b) & (value >= _between(at, 1.5 * part))
        period, found = np.where(take, part, period), found | take
    # Nyquist with margin: a period must span 2.5 samples, or a slow node can alias fast.
    interval = w / np.maximum(samples, 1)
    has &= period >= 2.5 * interval
    return Periods(np.where(has, period, np.nan), np.where(has, b, np.nan), samples)


def _between(at: Any, lag: np.ndarray) -> np.ndarray:
    """The autocorrelation at a fractional lag: a cubic through the four whole lags around it."""
    lo = np.floor(np.nan_to_num(lag)).astype(int)
    f = np.nan_to_num(lag) - lo
    p0, p1, p2, p3 = at(lo - 1), at(lo), at(lo + 1), at(lo + 2)
    value: np.ndarray = (
        p1
        + 0.5 * f * (p2 - p0)
        + f * f * (p0 - 2.5 * p1 + 2 * p2 - 0.5 * p3)
        + f**3 * (1.5 * (p1 - p2) + 0.5 * (p3 - p0))
    )
    return value


def _groups(key: np.ndarray, shape: tuple[int, ...]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Peer groups, each as (the rows of the nodes ever in it, its mask over those rows and the steps).

    key: per node, or per node and step (a node's job can change).
    """
    key = np.broadcast_to(key[:, None], shape[:2]) if key.ndim == 1 else key
    for k in np.unique(key):
        mask = key == k
        rows = np.nonzero(mask.any(axis=1))[0]
        yield rows, mask[rows]


def _members(values: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Per node and step: how many of its group (itself included) have a value then."""
    out = np.zeros(values.shape, int)
    for rows, mask in _groups(key, values.shape):
        count = (mask & ~np.isnan(values[rows])).sum(axis=0)
        out[rows] = np.where(mask, count, out[rows])
    return out


def compare(values: np.ndarray, key: np.ndarray, min_peers: int) -> tuple[np.ndarray, np.ndarray]:
    """Per node and step: its peers' median (same job and model; with two, the other one) and a robust z.

    The baseline is the median over every peer with a value (a straggler
    cannot drag it up); z is NaN with fewer than min_peers peers.
    """
    median, z = np.full(values.shape, np.nan), np.full(values.shape, np.nan)
    for rows, mask in _groups(key, values.shape):
        v = np.where(mask, values[rows], np.nan)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # steps where no node has a value
            count = (~np.isnan(v)).sum(axis=0)
            median_all = np.nanmedian(v, axis=0)
            mad = np.nanmedian(np.abs(v - median_all), axis=0)
            other = np.nansum(v, axis=0) - v
            med = np.where(count == 2, other, median_all)
            med = np.where((count >= 2) & ~np.isnan(v), med, np.nan)
            zz = (v - med) / np.maximum(1.4826 * mad, 0.02 * med)
        median[rows] = np.where(mask, med, median[rows])
        z[rows] = np.where(mask & (count - 1 >= min_peers), zz, z[rows])
    return median, z


def judge(
    p: Periods, t: Thresholds, key: np.ndarray | None = None, steady: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per node and step: slow?, peers' median period, slower fraction, robust z (NaN: too few peers).

    Not slow: a period at a whole multiple of the peers' (a harmonic read off
    the same pace), or where fewer than half of the node's peers have a clear
    period (a phase without a steady pace, such as evaluation). Not judged
    (the last verdict holds): a step where the job's own pace jumped.
    """
    period = p.period
    key = np.zeros(len(period), int) if key is None else key
    median, z = compare(period, key, t.straggler_z_min_peers)
    median[~(_steady(period, key, t) if steady is None else steady)] = np.nan
    with np.errstate(all="ignore"):
        slower = period / median - 1
        ratio = period / median
    k = np.round(ratio)
    harmonic = (k >= 2) & (np.abs(ratio - k) <= 0.1 * k)
    clear = np.zeros(period.shape, bool)
    for rows, mask in _groups(key, period.shape):
        present = ((p.samples[rows] > 0) & mask).sum(axis=0)
        have = (~np.isnan(period[rows]) & mask).sum(axis=0)
        clear[rows] = np.where(mask, have * 2 >= present, clear[rows])
    slow = (slower >= t.straggler_slower_fraction) & ~(z < t.straggler_z) & ~harmonic & clear
    return np.nan_to_num(slow, nan=0).astype(bool), median, slower, z


def _steady(period: np.ndarray, key: np.ndarray, t: Thresholds) -> np.ndarray:
    """Per node and step: is its job's median period within 20 % of the job's own recent one?

    An evaluation pass's sub-second steps alias into periods every node shares,
    and a phase change moves them all: judged then, the straggler would look
    like its peers for a while and its finding would split. The recent pace is
    the median over the last straggler_hold_s, which a live step sees too.
    """
    k = max(3, t.straggler_hold_s // t.step_s)
    steady = np.ones(period.shape, bool)
    for rows, mask in _groups(key, period.shape):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # steps where no node has a period
            job = np.nanmedian(np.where(mask, period[rows], np.nan), axis=0)
            history = sliding_window_view(np.concatenate([np.full(k, np.nan), job[:-1]]), k)
            recent = np.nanmedian(history, axis=1)
        steady[rows] = np.where(mask, ~(np.abs(job / recent - 1) > 0.2), steady[rows])
    return steady


@dataclass
class Busy:
    """Per node and step, the lock-step comparison: activity, the peers', excess, z, and in step?"""

    activity: np.ndarray
    peers: np.ndarray
    excess: np.ndarray
    z: np.ndarray
    util: np.ndarray
    peer_util: np.ndarray
    in_step: np.ndarray  # correlation of the node's activity with its peers' mean, over the window
    slow: np.ndarray


def lockstep(act: np.ndarray, util: np.ndarray, key: np.ndarray, t: Thresholds) -> Busy:
    """act, util: (nodes, steps, window) on the 1 s grid. The node its peers wait for at every barrier."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # windows with nothing sampled: not judged
        a, u = np.nanmean(act, axis=-1), np.nanmean(util, axis=-1)
        peers, z = compare(a, key, t.straggler_z_min_peers)
        peer_util, _ = compare(u, key, t.straggler_z_min_peers)
        in_step = np.full(a.shape, np.nan)
        for rows, mask in _groups(key, a.shape):
            mine = np.where(mask[..., None], np.nan_to_num(act[rows]), 0.0)
            # (nodes, steps, window): the others' mean pace, without the node itself.
            others = (mine.sum(axis=0) - mine) / np.maximum(mask.sum(axis=0) - 1, 1)[:, None]
            x = mine - mine.mean(axis=-1, keepdims=True)
            y = others - others.mean(axis=-1, keepdims=True)
            num = np.nansum(x * y, axis=-1)
            corr = num / np.sqrt(np.nansum(x * x, axis=-1) * np.nansum(y * y, axis=-1))
            in_step[rows] = np.where(mask, corr, in_step[rows])
        excess = a / peers - 1
    slow = (
        (peer_util >= t.straggler_busy_util_percent)
        & (u >= t.straggler_busy_util_percent)
        & (in_step >= t.straggler_in_step)
        & (excess >= t.straggler_busy_fraction)
        & ~(z < t.straggler_z)
    )
    return Busy(a, peers, excess, z, u, peer_util, in_step, np.nan_to_num(slow, nan=0).astype(bool))


def _periods(series: NodeSeries, step_ends: np.ndarray, t: Thresholds, cache: Cache | None = None) -> Periods:
    """Each node's period per step from the shortest window that holds two of them.

    A longer window is computed only for the (node, step) cells a shorter one
    left without a period: most of a training fleet resolves in the first. Steps
    a live detector judged before come from its cache, as it read them then.
    """
    shape = (len(series.nodes), len(step_ends))
    period, strength, samples = np.full(shape, np.nan), np.full(shape, np.nan), np.zeros(shape)
    window = np.full(shape, np.nan)
    done = np.zeros(shape, bool)
    if cache is not None:
        _recall(cache, series.nodes, step_ends, (period, strength, samples, window), done)
    for w in windows_s(t):
        if w > series.activity.shape[1]:
            break  # the data is shorter than this window (and every longer one)
        ni, si = np.nonzero(np.isnan(period) & ~done & (step_ends - w - series.first >= 0))
        for lo in range(0, len(ni), MAX_WINDOWS):
            n, j = ni[lo : lo + MAX_WINDOWS], si[lo : lo + MAX_WINDOWS]
            starts = step_ends[j] - w - series.first  # window [end - w, end) on the grid
            windows = sliding_window_view(series.activity, w, axis=1)[n, starts]
            cnt = sliding_window_view(series.counts, w, axis=1)[n, starts]
            p = periods(windows, cnt, t)
            # Where the window is unclear (a change of pace inside it), its newest
            # two thirds may already be clear: an onset is judged a step sooner.
            unclear = np.isnan(p.period)
            recent = w - 2 * w // 3
            q = periods(windows[unclear, recent:], cnt[unclear, recent:], t)
            found_period, found_strength, found_samples = p.period.copy(), p.strength.copy(), p.samples.copy()
            found_period[unclear], found_strength[unclear], found_samples[unclear] = (
                q.period,
                q.strength,
                q.samples,
            )
            fill = ~np.isnan(found_period)
            period[n[fill], j[fill]], strength[n[fill], j[fill]] = found_period[fill], found_strength[fill]
            window[n[fill], j[fill]] = w
            had = samples[n, j]
            samples[n, j] = np.where(fill | (had == 0), found_samples, had)
    if cache is not None:
        _remember(cache, series.nodes, step_ends, (period, strength, samples, window), done)
    return Periods(period, strength, samples, window)


def _recall(
    cache: Cache, nodes: list[str], step_ends: np.ndarray, into: tuple[np.ndarray, ...], done: np.ndarray
) -> None:
    """Fills the cells of steps judged before (for the nodes seen then) and marks them done."""
    where = {n: i for i, n in enumerate(nodes)}
    for j, end in enumerate(step_ends.tolist()):
        if (kept := cache.periods.get(end)) is None:
            continue
        names, arrays = kept
        rows = np.array([where.get(n, -1) for n in names], dtype=int)
        ok = rows >= 0
        for target, values in zip(into, arrays, strict=True):
            target[rows[ok], j] = values[ok]
        done[rows[ok], j] = True


def _remember(
    cache: Cache, nodes: list[str], step_ends: np.ndarray, arrays: tuple[np.ndarray, ...], done: np.ndarray
) -> None:
    """Keeps the newly read steps' periods, and forgets steps older than this call's first."""
    for j, end in enumerate(step_ends.tolist()):
        if not done[:, j].all():
            cache.periods[end] = (list(nodes), tuple(a[:, j].copy() for a in arrays))
    first = int(step_ends[0]) if len(step_ends) else 0
    for end in [e for e in cache.periods if e < first]:
        del cache.periods[end]


def _busy(
    series: NodeSeries, step_ends: np.ndarray, pace: np.ndarray, key: np.ndarray, t: Thresholds
) -> Busy:
    """The lock-step comparison over the shortest window (20, 30, 60 or 120 s) holding two of the
    job's periods (pace: the peers' median period per node and step; NaN: the shortest). Both
    the node and its peers are averaged over the same seconds, so a part period is fair."""
    shape = (len(series.nodes), len(step_ends))
    nan = np.full(shape, np.nan)
    out = Busy(nan, nan, nan, nan, nan, nan, nan, np.zeros(shape, bool))
    base = t.straggler_busy_window_s
    sizes = [w for w in (base * 2 // 3, base, 2 * base, 4 * base) if w <= series.activity.shape[1]]
    with np.errstate(invalid="ignore"):
        need = np.nan_to_num(2 * pace, nan=0.0)
    shorter = -1.0  # every cell fits after "no window yet"
    for w in sizes:  # a cell takes the shortest window holding two periods (or the longest there is)
        use = (need > shorter) & ((need <= w) | (w == sizes[-1]))
        shorter = w
        if not use.any():
            continue
        starts = np.maximum(step_ends - w - series.first, 0)
        act = sliding_window_view(series.activity, w, axis=1)[:, starts]
        util = sliding_window_view(series.util, w, axis=1)[:, starts]
        b = lockstep(act, util, key, t)
        for name in Busy.__dataclass_fields__:
            setattr(out, name, np.where(use, getattr(b, name), getattr(out, name)))
    return out


def node_jobs(con: Any, nodes: list[str], step_ends: np.ndarray) -> np.ndarray:
    """Per node and step end: the job on most of its GPUs then; '' where no job is known (a
    node that never said, or whose run its agent could not place: such nodes are judged among
    themselves, as before jobs)."""
    jobs = np.full((len(nodes), len(step_ends)), "", dtype=object)
    if not nodes or not len(step_ends):
        return jobs
    hi = ts(datetime.fromtimestamp(int(step_ends[-1]), UTC).replace(tzinfo=None))
    cells = pa.table({
        "node": np.repeat(np.array(nodes, dtype=object), len(step_ends)),
        "step_end": pa.array(
            np.tile(step_ends, len(nodes)).astype("datetime64[s]").astype("datetime64[us]"), pa.timestamp("us")
        ),
        "i": np.repeat(np.arange(len(nodes)), len(step_ends)),
        "j": np.tile(np.arange(len(step_ends)), len(nodes)),
    })  # fmt: skip
    con.register(CELLS, cells)
    try:
        owned = con.sql(f"SELECT i, j, job FROM {sql_node_jobs(CELLS, hi)} WHERE job <> ''").to_arrow_table()
    finally:
        con.unregister(CELLS)
    if owned.num_rows:
        i, j = owned["i"].to_numpy(), owned["j"].to_numpy()
        jobs[i, j] = np.array(owned["job"].to_pylist(), dtype=object)
    return jobs


def peer_keys(model: np.ndarray, jobs: np.ndarray) -> np.ndarray:
    """Per node and step: a peer group (same GPU model, same job)."""
    names, job_index = np.unique(jobs.astype(str), return_inverse=True)
    key: np.ndarray = model[:, None] * len(names) + job_index.reshape(jobs.shape)
    return key


def flagged(con: Any, start: datetime, end: datetime, t: Thresholds, cache: Cache | None = None) -> pa.Table:
    """Straggler steps in (start, end], in the detectors' common shape.

    A slow node's steps are active rows. A window where it cannot be judged (a
    checkpoint pause, say) keeps its last verdict for up to straggler_hold_s
    as an inactive row, so a pause the whole job takes does not split one
    straggler into several findings. cache: a live detector's, kept between its steps.
    """
    s, hold = t.step_s, t.straggler_hold_s
    lookback = start - timedelta(seconds=hold)
    series = node_series(con, lookback, end, max(windows_s(t)), t.active_memory_bytes, s, cache)
    if not series.nodes:
        return COLUMNS.empty_table()
    # Step ends on the step grid, as time_bucket places them.
    last = min(epoch_s(end), series.first + series.activity.shape[1] - 1)
    step_ends = np.arange((epoch_s(lookback) // s + 1) * s, last + 1, s)
    step_ends = step_ends[step_ends - t.straggler_window_s >= series.first]
    if len(step_ends) == 0:
        return COLUMNS.empty_table()
    p = _periods(series, step_ends, t, cache)
    key = peer_keys(series.model, node_jobs(con, series.nodes, step_ends))
    pace, _ = compare(p.period, key, t.straggler_z_min_peers)
    busy = _busy(series, step_ends, pace, key, t)
    # Judged while the job trains at full tilt at a steady pace: an evaluation pass runs its
    # GPUs lower, and its sub-second steps alias into periods that mean nothing.
    with np.errstate(invalid="ignore"):
        training = busy.peer_util >= t.straggler_training_util_percent
    steady = _steady(p.period, key, t) & training
    slow_p, median, slower, z = judge(p, t, key, steady)
    # An evaluation pass runs every node's GPUs lower: busy time is judged while training.
    # Not only at a steady pace: a lock-step straggler's onset slows the whole job with it.
    busy.slow &= training
    # Against a single peer, which of two is slow is least sure, and a peer's own trouble
    # starting (its input starving) tips the pair for a step before that trouble is found:
    # a verdict against one peer stands once the next step agrees.
    busy.slow = _second_step(busy.slow, _members(busy.activity, key) == 2)
    slow_p = _sure(slow_p, p, busy, key, t)
    slow = slow_p | busy.slow
    # Each method's last verdict (slow or not) carries across the steps it cannot judge, at
    # most hold seconds: busy time cannot while the job's GPUs run under 90 % (an evaluation
    # pass, a checkpoint), and the period method's "same pace" then says nothing of it.
    with np.errstate(invalid="ignore"):
        busy_judged = training & (busy.peer_util >= t.straggler_busy_util_percent)
        busy_judged &= (busy.util >= t.straggler_busy_util_percent) & (busy.in_step >= t.straggler_in_step)
    held = _carried(busy.slow, busy_judged | busy.slow, s, hold)
    held |= _carried(slow_p, ~np.isnan(median) & ~np.isnan(p.period), s, hold)
    held &= ~slow
    mine = step_ends > epoch_s(start)  # whole seconds: the same for the integer step ends
    ni, si = np.nonzero((slow | held) & mine)
    if len(ni) == 0:
        return COLUMNS.empty_table()
    evidence = [
        _evidence(p, median, slower, z, busy, slow_p, int(i), int(j)) for i, j in zip(ni, si, strict=True)
    ]
    return _rows(
        [series.nodes[i] for i in ni],
        step_ends[si],
        evidence,
        slow[ni, si],
        slower[ni, si],
        busy.excess[ni, si],
        # The peak: the clearest period, or the largest busy excess in lock-step.
        np.where(slow_p[ni, si], p.strength[ni, si], busy.excess[ni, si]),
        t,
    )


def _sure(slow_p: np.ndarray, p: Periods, busy: Busy, key: np.ndarray, t: Thresholds) -> np.ndarray:
    """The period method's verdicts that stand now: the doubtful ones wait for the next step."""
    # A node well in step with its peers shares their period by construction: a
    # different one read off it is the estimator's noise, not a slower pace. (Less in
    # step, it may be a loosely coupled node falling out of phase as it slows.)
    slow_p &= ~(busy.in_step >= t.straggler_period_in_step)
    # A barely clear period read off a long window (a minute or more: the short ones found
    # none) stands once the next step agrees: alone it is as likely a phase change's blip,
    # which a long window holds, as a slower pace. Short windows answer at once.
    long = p.window >= 60 if p.window is not None else np.zeros(slow_p.shape, bool)
    slow_p = _second_step(slow_p, ~(p.strength >= t.straggler_sure_strength) & long)
    # Against a single peer (two of a model in the job) an evaluation pass starting on one
    # node first reads as the other being slow: that verdict stands once the next step agrees.
    return _second_step(slow_p, _members(p.period, key) == 2)


def _second_step(verdict: np.ndarray, doubtful: np.ndarray) -> np.ndarray:
    """Per node and step: the verdict, but a doubtful one only where the step before said so too."""
    wait = verdict & doubtful
    wait[:, 1:] &= ~verdict[:, :-1]
    out: np.ndarray = verdict & ~wait
    return out


def _carried(verdict: np.ndarray, judged: np.ndarray, step_s: int, hold_s: int) -> np.ndarray:
    """Per node and step: unjudged, and the last judged step within hold_s said slow."""
    steps = np.arange(verdict.shape[1])
    last = np.where(judged, steps, -1)
    np.maximum.accumulate(last, axis=1, out=last)
    carried = np.take_along_axis(verdict, np.maximum(last, 0), axis=1) & (last >= 0)
    out: np.ndarray = ~judged & carried & ((steps - last) * step_s <= hold_s)
    return out


def _round(x: float, digits: int) -> float | None:
    return None if np.isnan(x) else round(float(x), digits)


def _evidence(
    p: Periods,
    median: np.ndarray,
    slower: np.ndarray,
    z: np.ndarray,
    busy: Busy,
    slow_p: np.ndarray,
    i: int,
    j: int,
) -> str:
    if busy.slow[i, j] and not slow_p[i, j]:
        return json.dumps({
            "method": "lockstep_busy_time",
            "busy_activity": _round(busy.activity[i, j], 3),
            "peers_busy_activity": _round(busy.peers[i, j], 3),
            "busy_excess_fraction": _round(busy.excess[i, j], 3),
            # NVML calls the peers busy while their SM activity is low: time at the barrier.
            "peers_barrier_wait_fraction": _round(busy.peer_util[i, j] / 100 - busy.peers[i, j], 3),
            "in_step_correlation": _round(busy.in_step[i, j], 3),
            "robust_z": _round(busy.z[i, j], 2),
        })  # fmt: skip
    if not slow_p[i, j]:
        return json.dumps(
            {"judged": False, "why": "no clear iteration period in this window (pause or phase change)"}
        )
    return json.dumps({
        "method": "iteration_period",
        "iteration_period_s": _round(p.period[i, j], 3),
        "peers_median_period_s": _round(median[i, j], 3),
        "slower_fraction": _round(slower[i, j], 3),
        "robust_z": _round(z[i, j], 2),
        "periodicity": _round(p.strength[i, j], 3),
        "samples_in_window": int(p.samples[i, j]),
    })  # fmt: skip


def _rows(
    nodes: list[str],
    ends: np.ndarray,
    evidence: list[str],
    active: np.ndarray,
    slower: np.ndarray,
    excess: np.ndarray,
    score: np.ndarray,
    t: Thresholds,
) -> pa.Table:
    sl = np.where(active, np.fmax(np.nan_to_num(slower, nan=-1), np.nan_to_num(excess, nan=-1)), 0.0)
    count = len(nodes)
    return pa.table(
        {
            "node": nodes,
            "device": [""] * count,
            "step_end": pa.array(ends.astype("datetime64[s]").astype("datetime64[us]"), pa.timestamp("us")),
            "kind": ["straggler"] * count,
            "severity": np.where(sl >= t.straggler_critical_fraction, "critical", "warning").tolist(),
            "cause": ["slow_iterations"] * count,
            "score": np.where(active, np.nan_to_num(score), 0.0),
            "active": active,
            "onset": pa.nulls(count, pa.timestamp("us")),
            "evidence": evidence,
        },
        schema=COLUMNS,
    )
