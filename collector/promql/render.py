"""A query's result in Prometheus's JSON: resultType and result, series sorted by labels."""

from __future__ import annotations

from typing import Any

import numpy as np

from ironsight.collector.promql.values import Matrix, Scalar, String, Value, Vector, key, merge_same


def format_value(v: float) -> str:
    """As Go's strconv.FormatFloat(v, 'f', -1, 64), which Prometheus uses."""
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    return np.format_float_positional(v, trim="-")


def seconds(ms: int) -> float | int:
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


def render(value: Value, start_ms: int, step_ms: int, ranged: bool) -> dict[str, Any]:
    if isinstance(value, String):
        return {"resultType": "string", "result": [seconds(start_ms), value.s]}
    if isinstance(value, Matrix):
        return {"resultType": "matrix", "result": [
            {"metric": ls, "values": [[seconds(int(t)), format_value(float(v))] for t, v in zip(ts, vs, strict=True)]}
            for ls, ts, vs in sorted(zip(value.labels, value.t, value.v, strict=True), key=lambda r: key(r[0]))]}  # fmt: skip
    if isinstance(value, Scalar):
        if not ranged:
            return {"resultType": "scalar", "result": [seconds(start_ms), format_value(float(value.v[0]))]}
        value = Vector([{}], value.v[None, :], np.ones((1, len(value.v)), dtype=bool))
    vec = merge_same(value).present()
    order = sorted(range(len(vec.labels)), key=lambda i: key(vec.labels[i]))
    if not ranged:
        return {"resultType": "vector", "result": [
            {"metric": vec.labels[i], "value": [seconds(start_ms), format_value(float(vec.v[i, 0]))]}
            for i in order]}  # fmt: skip
    times = [seconds(start_ms + j * step_ms) for j in range(vec.v.shape[1])]
    out = []
    for i in order:
        (cols,) = np.nonzero(vec.ok[i])
        values = vec.v[i, cols].tolist()
        out.append({"metric": vec.labels[i], "values": [[times[c], format_value(v)] for c, v in
                                                        zip(cols.tolist(), values, strict=True)]})  # fmt: skip
    return {"resultType": "matrix", "result": out}
