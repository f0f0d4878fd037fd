"""Aggregations (sum, avg, topk, quantile, ...) with `by` and `without`, over all steps at once.

Series are put into groups once, by their labels; each group's values are
then reduced along the series axis for every step together.
"""

from __future__ import annotations

import numpy as np

from ironsight.collector.promql.overtime import quantiles
from ironsight.collector.promql.values import QueryError, Vector, key


def group_labels(labels: dict[str, str], names: list[str], without: bool) -> dict[str, str]:
    if without:
        drop = {*names, "__name__"}
        return {k: v for k, v in labels.items() if k not in drop}
    return {k: v for k, v in labels.items() if k in names}


def _groups(vec: Vector, names: list[str], without: bool) -> tuple[np.ndarray, list[dict[str, str]]]:
    ids: dict[tuple[tuple[str, str], ...], int] = {}
    out: list[dict[str, str]] = []
    gid = np.zeros(len(vec.labels), dtype=np.int64)
    for i, ls in enumerate(vec.labels):
        g = group_labels(ls, names, without)
        k = key(g)
        if k not in ids:
            ids[k] = len(out)
            out.append(g)
        gid[i] = ids[k]
    return gid, out


def _reduce(ufunc: np.ufunc, values: np.ndarray, gid: np.ndarray, groups: int) -> np.ndarray:
    order = np.argsort(gid, kind="stable")
    starts = np.searchsorted(gid[order], np.arange(groups))
    return ufunc.reduceat(values[order], starts, axis=0)


def aggregate(op: str, vec: Vector, names: list[str], without: bool, param: np.ndarray | None) -> Vector:
    steps = vec.v.shape[1]
    if op in ("topk", "bottomk"):
        assert param is not None
        return _top(vec, names, without, param, op == "topk")
    gid, glabels = _groups(vec, names, without)
    g = len(glabels)
    if g == 0:
        return Vector.empty(steps)
    ok, v = vec.ok, vec.v
    count = _reduce(np.add, ok.astype(np.float64), gid, g)
    if op == "sum":
        out = _reduce(np.add, np.where(ok, v, 0.0), gid, g)
    elif op == "avg":
        out = _reduce(np.add, np.where(ok, v, 0.0), gid, g) / np.maximum(count, 1)
    elif op == "count":
        out = count
    elif op == "group":
        out = np.ones_like(count)
    elif op == "min":
        out = _reduce(np.fmin, np.where(ok, v, np.nan), gid, g)
    elif op == "max":
        out = _reduce(np.fmax, np.where(ok, v, np.nan), gid, g)
    elif op in ("stddev", "stdvar"):
        # Shifted by the group's least value: a constant group's variance is exactly 0, as Prometheus's.
        shift = _reduce(np.fmin, np.where(ok, v, np.nan), gid, g)[gid]
        d = np.where(ok, v - shift, 0.0)
        mean = _reduce(np.add, d, gid, g) / np.maximum(count, 1)
        var = _reduce(np.add, np.where(ok, (d - mean[gid]) ** 2, 0.0), gid, g) / np.maximum(count, 1)
        out = np.sqrt(var) if op == "stddev" else var
    elif op == "quantile":
        assert param is not None
        out = _quantile(vec, gid, g, param)
    else:
        raise QueryError("bad_data", f"aggregation {op} is not supported")
    return Vector(glabels, out, count > 0)


def _quantile(vec: Vector, gid: np.ndarray, groups: int, q: np.ndarray) -> np.ndarray:
    steps = vec.v.shape[1]
    s, t = np.nonzero(vec.ok)
    cell = gid[s] * steps + t
    counts = np.bincount(cell, minlength=groups * steps)
    order = np.argsort(cell, kind="stable")
    qs = np.broadcast_to(q[None, :], (groups, steps)).ravel()
    return quantiles(qs, vec.v[s, t][order], cell[order], counts).reshape(groups, steps)


def _top(vec: Vector, names: list[str], without: bool, k: np.ndarray, largest: bool) -> Vector:
    """The k largest (smallest) series of each group at each step, with their own labels."""
    gid, _ = _groups(vec, names, without)
    steps = vec.v.shape[1]
    keep = np.zeros(vec.ok.shape, dtype=bool)
    want = np.nan_to_num(k, nan=0).astype(np.int64)
    for g in np.unique(gid):
        rows = np.flatnonzero(gid == g)
        v = vec.v[rows]
        # Absent samples last; NaN after every number, as Prometheus ranks them.
        score = np.where(vec.ok[rows], np.where(np.isnan(v), -np.inf if largest else np.inf, v), np.nan)
        order = np.argsort(-score if largest else score, axis=0, kind="stable")
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(len(rows))[:, None].repeat(steps, axis=1), axis=0)
        keep[rows] = (rank < want[None, :]) & vec.ok[rows]
    return Vector(vec.labels, vec.v, keep).present()
