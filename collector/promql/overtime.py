"""Functions of a range vector (rate, increase, *_over_time, ...), every series and step at once.

Each follows Prometheus 2.x's definition (promql/functions.go), rate's
extrapolation to the window's edges included; all take the windows found by
windows.py and give (values, present) arrays of series by steps.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ironsight.collector.promql.windows import Windows

Result = tuple[np.ndarray, np.ndarray]


def _extrapolated(w: Windows, ends: np.ndarray, range_ms: int, counter: bool, per_second: bool) -> Result:
    n = w.count
    ok = n >= 2
    tf, vf = w.first()
    tl, vl = w.last()
    result = vl - vf
    if counter:
        v = w.raw.v
        resets = np.r_[0.0, np.where(v[1:] < v[:-1], v[:-1], 0.0)]
        result = result + np.where(ok, w.between(resets), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        to_start = (tf - (ends - range_ms)[None, :]) / 1000
        to_end = (ends[None, :] - tl) / 1000
        sampled = (tl - tf) / 1000
        average = sampled / np.maximum(n - 1, 1)
        if counter:
            to_zero = sampled * (vf / result)
            to_start = np.where((result > 0) & (vf >= 0) & (to_zero < to_start), to_zero, to_start)
        threshold = average * 1.1
        interval = sampled + np.where(to_start < threshold, to_start, average / 2)
        interval = interval + np.where(to_end < threshold, to_end, average / 2)
        # One factor, divided by the range before it multiplies, in Prometheus's order: the last bit
        # decides a round() at .5.
        factor = interval / sampled
        if per_second:
            factor = factor / (range_ms / 1000)
        result = result * factor
    return result, ok


def _instant_rate(w: Windows, counter: bool) -> Result:
    t2, v2 = w.last(1)
    t1, v1 = w.last(2)
    d = v2 - v1
    if counter:
        d = np.where(v2 < v1, v2, d)
        with np.errstate(divide="ignore", invalid="ignore"):
            d = d / ((t2 - t1) / 1000)
    return d, w.count >= 2


def _sums(values: np.ndarray, offsets: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Each window's sum, added in extended precision and rounded once: what Prometheus's compensated
    (Kahan-Neumaier) sums give, so that differences of large sums cancel as they do there."""
    if not len(values):
        return np.zeros(len(counts))
    wide = np.add.reduceat(values.astype(np.longdouble), np.minimum(offsets, len(values) - 1))
    return np.where(counts > 0, wide.astype(np.float64), 0.0)


def _regression(w: Windows, at: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slope and intercept per window, as Prometheus's linearRegression computes them:
    x in seconds from `at` (None: the window's first sample), a constant y gives slope 0."""
    window, index = w.expand()
    counts = w.count.ravel()
    offsets = np.cumsum(counts) - counts
    origin = w.first()[0].ravel() if at is None else np.broadcast_to(at[None, :], w.lo.shape).ravel()
    x = (w.raw.t[index] - origin[window]).astype(np.float64) / 1e3
    y = w.raw.v[index]
    n = np.maximum(counts, 1).astype(np.float64)
    sx, sy = _sums(x, offsets, counts), _sums(y, offsets, counts)
    sxy, sx2 = _sums(x * y, offsets, counts), _sums(x * x, offsets, counts)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = (sxy - sx * sy / n) / (sx2 - sx * sx / n)
        intercept = sy / n - slope * sx / n
    flat = (w.reduce(np.fmin) == w.reduce(np.fmax)).ravel()
    first = w.first()[1].ravel()
    slope, intercept = np.where(flat, 0.0, slope), np.where(flat, first, intercept)
    return slope.reshape(w.lo.shape), intercept.reshape(w.lo.shape)


def _predict(w: Windows, ends: np.ndarray, seconds: np.ndarray) -> Result:
    slope, intercept = _regression(w, ends)
    return slope * seconds[None, :] + intercept, w.count >= 2


SEQUENTIAL_MAX = 4096  # longer windows: the closed forms below, equal but for the last bit


def _kahan(inc: np.ndarray, total: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prometheus's kahanSumInc (Neumaier's variant), on arrays."""
    t = total + inc
    c = c + np.where(np.abs(total) >= np.abs(inc), (total - t) + inc, (inc - t) + total)
    return t, c


def _running(w: Windows) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """avg_over_time's and stdvar_over_time's running sums as Prometheus 2.x adds them, sample by
    sample in time order: a loop over positions in the windows, each step over all windows at once.
    Returns (mean, its compensation, variance sum, its compensation), flat."""
    lo, n = w.lo.ravel(), w.count.ravel()
    mean, c = np.zeros(lo.size), np.zeros(lo.size)
    wmean, cw, aux, ca = np.zeros(lo.size), np.zeros(lo.size), np.zeros(lo.size), np.zeros(lo.size)
    with np.errstate(all="ignore"):
        for k in range(int(n.max()) if n.size else 0):
            live = n > k
            v = w.raw.v[np.where(live, lo + k, 0)]
            count = k + 1.0
            skip = np.isinf(mean) & ((np.isinf(v) & ((mean > 0) == (v > 0))) | (~np.isinf(v) & ~np.isnan(v)))
            m2, c2 = _kahan(v / count - mean / count, mean, c)
            step = live & ~skip
            mean, c = np.where(step, m2, mean), np.where(step, c2, c)
            delta = v - (wmean + cw)
            wm2, cw2 = _kahan(delta / count, wmean, cw)
            a2, ca2 = _kahan(delta * (v - (wm2 + cw2)), aux, ca)
            wmean, cw = np.where(live, wm2, wmean), np.where(live, cw2, cw)
            aux, ca = np.where(live, a2, aux), np.where(live, ca2, ca)
    return mean, c, aux, ca


def _average(w: Windows) -> np.ndarray:
    if w.count.size and int(w.count.max()) > SEQUENTIAL_MAX:
        return np.asarray(w.reduce(np.add) / np.maximum(w.count, 1))
    mean, c, _, _ = _running(w)
    return np.where(np.isinf(mean), mean, mean + c).reshape(w.lo.shape)


def _variance(w: Windows) -> np.ndarray:
    if w.count.size and int(w.count.max()) <= SEQUENTIAL_MAX:
        _, _, aux, ca = _running(w)
        with np.errstate(all="ignore"):
            return np.asarray((aux + ca) / np.maximum(w.count.ravel(), 1)).reshape(w.lo.shape)
    window, index = w.expand()
    cells = w.lo.size
    n = np.maximum(w.count.ravel(), 1)
    # Shifted by each window's first value: a constant then has a variance of exactly 0, as in
    # Prometheus's running (Welford) form, and large values lose no digits to their squares.
    y = w.raw.v[index] - w.first()[1].ravel()[window]
    mean = np.bincount(window, y, cells) / n
    return np.asarray(np.bincount(window, (y - mean[window]) ** 2, cells) / n).reshape(w.lo.shape)


def quantiles(q: np.ndarray, values: np.ndarray, group: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Prometheus's quantile (linear between closest ranks) of each group; values grouped in order,
    q per group. Empty groups give NaN."""
    order = np.lexsort((values, group))
    ordered = values[order]
    offsets = np.cumsum(counts) - counts
    with np.errstate(invalid="ignore"):
        rank = q * (counts - 1)
        lower = np.clip(np.floor(rank), 0, None)
        upper = np.minimum(counts - 1, lower + 1)
        weight = rank - np.floor(rank)
    top = max(len(ordered) - 1, 0)
    lo_i = np.clip(offsets + np.nan_to_num(lower).astype(np.int64), 0, top)
    up_i = np.clip(offsets + np.nan_to_num(upper).astype(np.int64), 0, top)
    pad = ordered if len(ordered) else np.zeros(1)
    out = pad[lo_i] * (1 - weight) + pad[up_i] * weight
    out = np.where(q < 0, -np.inf, np.where(q > 1, np.inf, out))
    return np.where(np.isnan(q) | (counts == 0), np.nan, out)


def _quantile_over_time(w: Windows, q: np.ndarray) -> Result:
    window, index = w.expand()
    qs = np.broadcast_to(q[None, :], w.lo.shape).ravel()
    out = quantiles(qs, w.raw.v[index], window, w.count.ravel())
    return out.reshape(w.lo.shape), w.count > 0


def _changes(w: Windows, resets: bool) -> Result:
    v = w.raw.v
    if resets:
        event = np.r_[0.0, (v[1:] < v[:-1]).astype(np.float64)]
    else:
        event = np.r_[0.0, ((v[1:] != v[:-1]) & ~(np.isnan(v[1:]) & np.isnan(v[:-1]))).astype(np.float64)]
    return w.between(event), w.count > 0


RangeFn = Callable[[Windows, np.ndarray, int, list[np.ndarray]], Result]


def _over(fn: Callable[[Windows], np.ndarray]) -> RangeFn:
    return lambda w, _e, _r, _a: (fn(w), w.count > 0)


FUNCTIONS: dict[str, RangeFn] = {
    "rate": lambda w, e, r, _a: _extrapolated(w, e, r, counter=True, per_second=True),
    "increase": lambda w, e, r, _a: _extrapolated(w, e, r, counter=True, per_second=False),
    "delta": lambda w, e, r, _a: _extrapolated(w, e, r, counter=False, per_second=False),
    "irate": lambda w, _e, _r, _a: _instant_rate(w, counter=True),
    "idelta": lambda w, _e, _r, _a: _instant_rate(w, counter=False),
    "deriv": lambda w, _e, _r, _a: (_regression(w, None)[0], w.count >= 2),
    "predict_linear": lambda w, e, _r, a: _predict(w, e, a[0]),
    "avg_over_time": _over(_average),
    "sum_over_time": _over(lambda w: w.reduce(np.add)),
    "min_over_time": _over(lambda w: w.reduce(np.fmin)),
    "max_over_time": _over(lambda w: w.reduce(np.fmax)),
    "count_over_time": _over(lambda w: w.count.astype(np.float64)),
    "last_over_time": _over(lambda w: w.last()[1]),
    "present_over_time": _over(lambda w: np.ones(w.lo.shape)),
    "stdvar_over_time": _over(_variance),
    "stddev_over_time": _over(lambda w: np.sqrt(_variance(w))),
    "quantile_over_time": lambda w, _e, _r, a: _quantile_over_time(w, a[0]),
    "changes": lambda w, _e, _r, _a: _changes(w, resets=False),
    "resets": lambda w, _e, _r, _a: _changes(w, resets=True),
}
# Functions whose result keeps the metric name (the rest drop it, as Prometheus does).
KEEP_NAME = {"last_over_time"}
