"""Which samples each series has at each step, found for all series and steps in one search.

Samples are sorted by series, then time; a combined key (series * span + time)
is sorted too, so one searchsorted over it finds every window's first and last
sample. The range functions then read windows through those bounds: ufunc
reduceat for sums, minima and maxima (summed in order, as Prometheus does), an
expansion of every window's samples for what needs them all (quantiles,
regressions, deviations).

Prometheus 2.x's rules: a range selector [r] at t holds samples with
t - r <= time <= t; an instant selector takes the newest sample with
t - lookback <= time <= t.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ironsight.collector.promql.values import Raw


@dataclass
class Windows:
    """Per (series, step): samples lo..hi-1 of the flat arrays (lo == hi: none)."""

    raw: Raw
    lo: np.ndarray  # int64 (series, steps)
    hi: np.ndarray

    @property
    def count(self) -> np.ndarray:
        return np.asarray(self.hi - self.lo)

    def first(self) -> tuple[np.ndarray, np.ndarray]:
        if not len(self.raw.t):  # no samples at all: every window is empty, and masked
            return np.zeros(self.lo.shape, np.int64), np.zeros(self.lo.shape)
        i = np.minimum(self.lo, len(self.raw.t) - 1)
        return self.raw.t[i], self.raw.v[i]

    def last(self, back: int = 1) -> tuple[np.ndarray, np.ndarray]:
        if not len(self.raw.t):
            return np.zeros(self.lo.shape, np.int64), np.zeros(self.lo.shape)
        i = np.clip(self.hi - back, 0, max(len(self.raw.t) - 1, 0))
        return self.raw.t[i], self.raw.v[i]

    def reduce(self, ufunc: np.ufunc) -> np.ndarray:
        """ufunc over each window's values, in time order (empty windows give garbage: mask them). Sums
        are added in extended precision and rounded once, as Prometheus's compensated sums come out."""
        values = self.raw.v.astype(np.longdouble) if ufunc is np.add else self.raw.v
        return _segments(ufunc, values, self.lo.ravel(), self.hi.ravel()).reshape(self.lo.shape)

    def between(self, per_sample: np.ndarray) -> np.ndarray:
        """Sum of a per-sample quantity over samples lo+1..hi-1 (a pair's, stored at its second sample),
        added in order as Prometheus does, not as a difference of running sums, which loses digits."""
        lo, hi = self.lo.ravel() + 1, self.hi.ravel()
        sums = _segments(np.add, per_sample, lo, hi)
        return np.asarray(np.where(hi > lo, sums, 0.0)).reshape(self.lo.shape)

    def expand(self) -> tuple[np.ndarray, np.ndarray]:
        """(window number, sample index) of every sample of every window, windows in order."""
        counts = self.count.ravel()
        total = int(counts.sum())
        window = np.repeat(np.arange(counts.size), counts)
        offsets = np.cumsum(counts) - counts
        index = np.arange(total) - np.repeat(offsets, counts) + np.repeat(self.lo.ravel(), counts)
        return window, index


def _segments(ufunc: np.ufunc, values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """ufunc over values[lo:hi] for each pair, as float64, in one reduceat over interleaved bounds (so
    segments may overlap); an empty segment gives values[lo] or 0: the caller masks it."""
    if not len(values):
        return np.zeros(lo.shape)
    padded = np.r_[values, np.zeros(1, values.dtype)]
    idx = np.minimum(np.stack([lo, np.maximum(hi, lo + 1)], axis=1).ravel(), len(padded) - 1)
    return np.asarray(ufunc.reduceat(padded, idx)[::2], dtype=np.float64)


def _keys(raw: Raw, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    series = np.repeat(np.arange(len(raw.labels), dtype=np.int64), np.diff(raw.starts))
    base = int(min(raw.t.min() if len(raw.t) else 0, times.min() if len(times) else 0)) - 1
    span = int(max(raw.t.max() if len(raw.t) else 0, times.max() if len(times) else 0)) - base + 2
    return (
        series * span + (raw.t - base),
        np.arange(len(raw.labels), dtype=np.int64)[:, None] * span,
        base,
        span,
    )


def windows(raw: Raw, times: np.ndarray, range_ms: int) -> Windows:
    """Samples of each series in [t - range, t] for each evaluation time t (times: per step)."""
    key, row, base, _ = _keys(raw, np.r_[times, times - range_ms])
    lo = np.searchsorted(key, row + (times - range_ms - base)[None, :], side="left")
    hi = np.searchsorted(key, row + (times - base)[None, :], side="right")
    return Windows(raw, lo.astype(np.int64), hi.astype(np.int64))


def instant(raw: Raw, times: np.ndarray, lookback_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """Each series' newest sample at or before t, if within the lookback: (values, present)."""
    key, row, base, _ = _keys(raw, np.r_[times, times - lookback_ms])
    hi = np.searchsorted(key, row + (times - base)[None, :], side="right")
    starts = raw.starts[:-1][:, None]
    at = np.clip(hi - 1, 0, max(len(raw.t) - 1, 0))
    ok = (
        (hi > starts) & (raw.t[at] >= times[None, :] - lookback_ms)
        if len(raw.t)
        else np.zeros(hi.shape, bool)
    )
    return (raw.v[at] if len(raw.t) else np.zeros(hi.shape)), ok
