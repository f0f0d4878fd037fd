"""A query's result in Prometheus's JSON: resultType and result, series sorted by labels.

A range query's points are formatted by Arrow, all series at once (values as
the shortest digits that read back the same, as Go's FormatFloat 'f' gives
them; the rare one with an exponent, NaN or an infinity in Python), and
joined into each series' JSON array in C++: at a dashboard's 64 series of
720 points, formatting them one by one took longer than the query.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
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
    opens = pa.array([f'[{seconds(start_ms + j * step_ms)},"' for j in range(steps)], pa.string())
    points = pc.binary_join_element_wise(opens.take(pa.array(cols)), _texts(v[rows, cols]), _CLOSE, _EMPTY)
    offsets = np.r_[0, np.cumsum(np.bincount(rows, minlength=len(order)))].astype(np.int32)
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), points), _COMMA).to_pylist()
    series = [f'{{"metric":{json.dumps(vec.labels[i], separators=(",", ":"))},"values":[{joined[k]}]}}'
              for k, i in enumerate(order)]  # fmt: skip
    return '{"resultType":"matrix","result":[' + ",".join(series) + "]}"


def _texts(values: np.ndarray) -> pa.Array:
    """Each value as Go's FormatFloat 'f' writes it. Whole numbers below 2^53 go through int64; the rest
    through Arrow's shortest digits, which come with an exponent from 1e10 up (a GPU's byte rates):
    those below 2^53 have the point moved by Arrow too (_unexponent), and what is left, NaN, an
    infinity, a negative or a tiny number with an exponent (rare), goes through Python one by one."""
    with np.errstate(invalid="ignore"):
        negative_zero = (values == 0) & np.signbit(values)  # Go writes "-0"
        whole = (values == np.floor(values)) & (np.abs(values) < 2**53) & ~negative_zero
    if whole.all():  # counters, utilisation, clocks: each value cast once, not both ways
        return pc.cast(pa.array(values.astype(np.int64)), pa.string())
    rest = values[~whole]
    text = pc.cast(pa.array(rest, pa.float64()), pa.string())
    exponent = pc.match_substring(text, "e").to_numpy(zero_copy_only=False)
    if exponent.any() or not np.isfinite(rest).all():  # Arrow's "inf" and "nan" are not Go's either
        text = _unexponent(text, rest, exponent)
    if whole.any():
        ints = pc.cast(pa.array(np.where(whole, values, 0).astype(np.int64)), pa.string())
        return pc.replace_with_mask(ints, pa.array(~whole), text)
    return text


def _unexponent(text: pa.Array, values: np.ndarray, exponent: np.ndarray) -> pa.Array:
    """text with its exponent forms written out: Arrow's digits with the point moved where the value
    is from 1e10 to 2^53 (its exponent two digits, "d.ddddde+XX"; not whole, as every value here below
    2^53, so of its digits the first XX + 1 are the whole part and there are more), Python's repr for
    the rest (Arrow writes no other positive exponent form above 1)."""
    with np.errstate(invalid="ignore"):
        movable = exponent & (values >= 1e10) & (values < 2**53)
    out = text
    if movable.any():
        forms = pc.filter(text, pa.array(movable))
        digits = pc.replace_substring(
            pc.utf8_slice_codeunits(forms, 0, -4), ".", ""
        )  # "d.ddd" of "d.ddde+XX"
        powers = pc.cast(pc.utf8_slice_codeunits(forms, -2), pa.int64()).to_numpy()
        groups, order = [], []
        for e in np.unique(powers).tolist():  # a few at most: 10 to 15
            at = np.flatnonzero(powers == e)
            part = digits.take(pa.array(at))
            lead, fraction = pc.utf8_slice_codeunits(part, 0, e + 1), pc.utf8_slice_codeunits(part, e + 1)
            groups.append(pc.binary_join_element_wise(lead, fraction, "."))
            order.append(at)
        moved = pa.concat_arrays(groups).take(pa.array(np.argsort(np.concatenate(order), kind="stable")))
        out = pc.replace_with_mask(out, pa.array(movable), moved)
    odd = (exponent & ~movable) | ~np.isfinite(values)
    if not odd.any():
        return out
    rare = values[odd].tolist()
    reprs = list(map(repr, rare))
    for i in np.flatnonzero(pc.match_substring_regex(pa.array(reprs, pa.string()), r"[en]|\.0$")).tolist():
        reprs[i] = format_value(rare[i])
    return pc.replace_with_mask(out, pa.array(odd), pa.array(reprs, pa.string()))


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
