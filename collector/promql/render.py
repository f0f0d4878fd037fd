"""A query's result in Prometheus's JSON: resultType and result, series sorted by labels.

A range query's points are written for all series at once: the values by
orjson as the shortest digits that read back the same (Ryu's, which are Go's
FormatFloat 'f' digits; the rare one with an exponent, NaN or an infinity in
Python), then joined into each series' JSON array by Arrow in C++: at a
dashboard's 64 series of 720 points, formatting them one by one took longer
than the query.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ironsight.collector.promql.values import Matrix, Scalar, String, Value, Vector, key, merge_same


def format_value(v: float) -> str:
    """As Go's strconv.FormatFloat(v, 'f', -1, 64), which Prometheus uses: the shortest digits that read
    back the same, never an exponent."""
    text = repr(v)
    if text.endswith(".0"):
        return text[:-2]
    if "e" in text or "n" in text:  # an exponent, inf or nan: rare, the slow way
        if v != v:
            return "NaN"
        if v in (float("inf"), float("-inf")):
            return "+Inf" if v > 0 else "-Inf"
        return np.format_float_positional(v, trim="-")
    return text


def seconds(ms: int) -> float | int:
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


def render_json(value: Value, start_ms: int, step_ms: int, ranged: bool) -> str:
    """The `data` object of a query's answer, as JSON text."""
    if ranged and isinstance(value, Vector | Scalar):
        return _matrix_json(value, start_ms, step_ms)
    return json.dumps(render(value, start_ms, step_ms, ranged), separators=(",", ":"))


def _matrix_json(value: Vector | Scalar, start_ms: int, step_ms: int) -> str:
    if isinstance(value, Scalar):
        value = Vector([{}], value.v[None, :], np.ones((1, len(value.v)), dtype=bool))
    vec = merge_same(value).present()
    order = sorted(range(len(vec.labels)), key=lambda i: key(vec.labels[i]))
    ok, v = vec.ok[order], vec.v[order]
    rows, cols = np.nonzero(ok)  # by series, then time
    steps = v.shape[1]
    opens = _opens(start_ms, step_ms, steps)
    points = pc.binary_join_element_wise(opens.take(pa.array(cols)), _texts(v[rows, cols]), _CLOSE, _EMPTY)
    offsets = np.r_[0, np.cumsum(np.bincount(rows, minlength=len(order)))].astype(np.int32)
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), points), _COMMA).to_pylist()
    series = [f'{{"metric":{json.dumps(vec.labels[i], separators=(",", ":"))},"values":[{joined[k]}]}}'
              for k, i in enumerate(order)]  # fmt: skip
    return '{"resultType":"matrix","result":[' + ",".join(series) + "]}"


@functools.lru_cache(maxsize=64)
def _opens(start_ms: int, step_ms: int, steps: int) -> pa.Array:
    """Each step's point up to its value, '[1700000000.5,"': a dashboard's panels share one range."""
    return pa.array([f'[{seconds(start_ms + j * step_ms)},"' for j in range(steps)], pa.string())


def _texts(values: np.ndarray) -> pa.Array:
    """Each value as Go's FormatFloat 'f' writes it. All whole numbers below 2^53 (counters, utilisation,
    clocks) go through int64; otherwise orjson writes them all (_shortest)."""
    with np.errstate(invalid="ignore"):
        whole = (
            (values == np.floor(values)) & (np.abs(values) < 2**53) & ~((values == 0) & np.signbit(values))
        )
    if whole.all():  # Go writes -0 as "-0": not whole here
        return pc.cast(pa.array(values.astype(np.int64)), pa.string())
    return _shortest(values)


def _shortest(values: np.ndarray) -> pa.Array:
    """orjson writes a float array as JSON numbers with Ryu's shortest digits, the same as Go's, some 4x
    faster than Arrow's cast to text (which puts an exponent on everything from 1e10: a GPU's byte
    rates); positional up to 1e16, whole ones with ".0" (dropped here). Then split into one text each.
    What it writes otherwise (an exponent, "null" for NaN and the infinities) is spelled by Python."""
    if not len(values):
        return pa.array([], pa.string())
    body = orjson.dumps(np.ascontiguousarray(values, dtype=np.float64), option=orjson.OPT_SERIALIZE_NUMPY)
    body = (body[1:-1] + b",").replace(b".0,", b",")[:-1]
    text = pc.split_pattern(pa.array([body.decode()], pa.string()), ",").flatten()
    if b"e" not in body and b"n" not in body:
        return text
    odd = np.flatnonzero(pc.match_substring_regex(text, "[en]").to_numpy(zero_copy_only=False))
    spelled = pa.array([format_value(v) for v in values[odd].tolist()], pa.string())
    mask = np.zeros(len(values), dtype=bool)
    mask[odd] = True
    return pc.replace_with_mask(text, pa.array(mask), spelled)


# Arrow scalars made once: a str argument costs pyarrow an import attempt per call.
_CLOSE, _EMPTY, _COMMA = (pa.scalar(x, pa.string()) for x in ('"]', "", ","))


def render(value: Value, start_ms: int, step_ms: int, ranged: bool) -> dict[str, Any]:
    if isinstance(value, String):
        return {"resultType": "string", "result": [seconds(start_ms), value.s]}
    if isinstance(value, Matrix):
        return {"resultType": "matrix", "result": [
            {"metric": ls, "values": [[seconds(int(t)), format_value(float(v))] for t, v in zip(ts, vs, strict=True)]}
            for ls, ts, vs in sorted(zip(value.labels, value.t, value.v, strict=True), key=lambda r: key(r[0]))]}  # fmt: skip
    if ranged:  # one writer of a range's points: the fast one the API uses
        return dict(json.loads(_matrix_json(value, start_ms, step_ms)))
    if isinstance(value, Scalar):
        return {"resultType": "scalar", "result": [seconds(start_ms), format_value(float(value.v[0]))]}
    vec = merge_same(value).present()
    order = sorted(range(len(vec.labels)), key=lambda i: key(vec.labels[i]))
    return {"resultType": "vector", "result": [
        {"metric": vec.labels[i], "value": [seconds(start_ms), format_value(float(vec.v[i, 0]))]}
        for i in order]}  # fmt: skip
