"""Binary operators: arithmetic, comparisons (filtering or `bool`) and and/or/unless, with vector
matching (on, ignoring, group_left, group_right) as Prometheus 2.x does it.

Series are paired once by their match signature; values are then computed for
every step of every pair together. A match group that holds two series at one
step is refused with Prometheus's message, per step as Prometheus checks it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ironsight.collector.promql.values import QueryError, Scalar, Value, Vector, drop_name, merge_same

ARITHMETIC: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "%": np.fmod, "^": np.power,
    "atan2": np.arctan2,
}  # fmt: skip
COMPARISON: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "==": np.equal, "!=": np.not_equal, ">": np.greater, "<": np.less, ">=": np.greater_equal,
    "<=": np.less_equal,
}  # fmt: skip
SET = ("and", "or", "unless")


@dataclass(frozen=True)
class Matching:
    card: str = "one-to-one"  # many-to-one (group_left), one-to-many (group_right), many-to-many (sets)
    on: bool = False
    labels: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    bool_: bool = False

    def signature(self, labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
        if self.on:
            return tuple((n, labels.get(n, "")) for n in sorted(self.labels))
        drop = {*self.labels, "__name__"}
        return tuple(sorted((k, v) for k, v in labels.items() if k not in drop))


def _compute(op: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        if op in ARITHMETIC:
            return ARITHMETIC[op](a, b)
        return COMPARISON[op](a, b)


def scalars(op: str, a: Scalar, b: Scalar) -> Scalar:
    return Scalar(_compute(op, a.v, b.v).astype(np.float64))


def with_scalar(op: str, vec: Vector, s: Scalar, vector_left: bool, bool_: bool) -> Vector:
    a, b = (vec.v, s.v[None, :]) if vector_left else (s.v[None, :], vec.v)
    out = _compute(op, a, b)
    if op in ARITHMETIC:
        return merge_same(Vector(drop_name(vec.labels), out, vec.ok.copy()))
    if bool_:
        return merge_same(Vector(drop_name(vec.labels), out.astype(np.float64), vec.ok.copy()))
    return Vector(vec.labels, vec.v, vec.ok & out).present()


def _by_signature(vec: Vector, m: Matching) -> dict[tuple[tuple[str, str], ...], list[int]]:
    out: dict[tuple[tuple[str, str], ...], list[int]] = {}
    for i, labels in enumerate(vec.labels):
        out.setdefault(m.signature(labels), []).append(i)
    return out


def _any(vec: Vector, groups: dict[tuple[tuple[str, str], ...], list[int]]) -> dict[object, np.ndarray]:
    return {sig: np.asarray(vec.ok[rows].any(axis=0)) for sig, rows in groups.items()}


def set_op(op: str, lhs: Vector, rhs: Vector, m: Matching) -> Vector:
    steps = lhs.v.shape[1]
    none = np.zeros(steps, dtype=bool)
    if op == "or":
        have = _any(lhs, _by_signature(lhs, m))
        extra = np.array([have.get(m.signature(ls), none) for ls in rhs.labels], dtype=bool).reshape(
            -1, steps
        )
        return merge_same(Vector(lhs.labels + rhs.labels, np.r_[lhs.v, rhs.v],
                                 np.r_[lhs.ok, rhs.ok & ~extra])).present()  # fmt: skip
    have = _any(rhs, _by_signature(rhs, m))
    other = np.array([have.get(m.signature(ls), none) for ls in lhs.labels], dtype=bool).reshape(-1, steps)
    ok = lhs.ok & (other if op == "and" else ~other)
    return Vector(lhs.labels, lhs.v, ok).present()


def _result_labels(many: dict[str, str], one: dict[str, str], op: str, m: Matching) -> dict[str, str]:
    out = dict(many)
    if op in ARITHMETIC or m.bool_:
        out.pop("__name__", None)
    if m.card == "one-to-one":
        if m.on:
            out = {k: v for k, v in out.items() if k in m.labels}
        else:
            out = {k: v for k, v in out.items() if k not in m.labels}
    for name in m.include:
        if one.get(name):
            out[name] = one[name]
        else:
            out.pop(name, None)
    return out


def _refuse_duplicates(vec: Vector, groups: dict[tuple[tuple[str, str], ...], list[int]], side: str) -> None:
    for sig, rows in groups.items():
        if len(rows) > 1 and (vec.ok[rows].sum(axis=0) > 1).any():
            raise QueryError(
                "execution",
                f"found duplicate series for the match group {dict(sig)} on the {side} hand-side of the "
                "operation; many-to-many matching not allowed: matching labels must be unique on one side",
            )


def vectors(op: str, lhs: Vector, rhs: Vector, m: Matching) -> Vector:
    if op in SET:
        return set_op(op, lhs, rhs, m)
    steps = lhs.v.shape[1]
    right_many = m.card == "one-to-many"
    many, one = (rhs, lhs) if right_many else (lhs, rhs)
    one_groups = _by_signature(one, m)
    _refuse_duplicates(one, one_groups, "left" if right_many else "right")
    if m.card == "one-to-one":
        _refuse_duplicates(many, _by_signature(many, m), "left")
    pairs = [(i, j) for i, labels in enumerate(many.labels) for j in one_groups.get(m.signature(labels), [])]
    if not pairs:
        return Vector.empty(steps)
    mi = np.array([p[0] for p in pairs])
    oi = np.array([p[1] for p in pairs])
    left, right = (one.v[oi], many.v[mi]) if right_many else (many.v[mi], one.v[oi])
    ok = many.ok[mi] & one.ok[oi]
    out = _compute(op, left, right)
    labels = [_result_labels(many.labels[i], one.labels[j], op, m) for i, j in pairs]
    if op in COMPARISON and not m.bool_:
        return merge_same(Vector(labels, left, ok & out))
    return merge_same(Vector(labels, out.astype(np.float64), ok)).present()


def binary(op: str, lhs: Value, rhs: Value, m: Matching) -> Value:
    if isinstance(lhs, Scalar) and isinstance(rhs, Scalar):
        return scalars(op, lhs, rhs)
    if isinstance(lhs, Vector) and isinstance(rhs, Scalar):
        return with_scalar(op, lhs, rhs, True, m.bool_)
    if isinstance(lhs, Scalar) and isinstance(rhs, Vector):
        return with_scalar(op, rhs, lhs, False, m.bool_)
    if isinstance(lhs, Vector) and isinstance(rhs, Vector):
        return vectors(op, lhs, rhs, m)
    raise QueryError("bad_data", f"operator {op} does not take these operands")
