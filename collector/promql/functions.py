"""Functions of instant vectors and scalars: math, clamps, label_replace/label_join, scalar(),
vector(), absent(); each over all series and steps at once."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from ironsight.collector.promql.values import QueryError, Scalar, Vector, anchored, drop_name, merge_same

MATH: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "abs": np.abs, "ceil": np.ceil, "floor": np.floor, "exp": np.exp, "ln": np.log, "log2": np.log2,
    "log10": np.log10, "sqrt": np.sqrt, "sgn": np.sign, "sin": np.sin, "cos": np.cos, "tan": np.tan,
    "asin": np.arcsin, "acos": np.arccos, "atan": np.arctan, "sinh": np.sinh, "cosh": np.cosh,
    "tanh": np.tanh, "asinh": np.arcsinh, "acosh": np.arccosh, "atanh": np.arctanh, "deg": np.degrees,
    "rad": np.radians,
}  # fmt: skip


def math(name: str, vec: Vector) -> Vector:
    with np.errstate(all="ignore"):
        out = MATH[name](vec.v)
    return merge_same(Vector(drop_name(vec.labels), out, vec.ok))


def clamp(vec: Vector, lo: np.ndarray | None, hi: np.ndarray | None) -> Vector:
    v, ok = vec.v, vec.ok.copy()
    if lo is not None:
        v = np.where(np.isnan(v), v, np.maximum(v, lo[None, :]))
    if hi is not None:
        v = np.where(np.isnan(v), v, np.minimum(v, hi[None, :]))
    if lo is not None and hi is not None:
        ok &= ~(lo > hi)[None, :]  # clamp with min > max returns nothing
    return merge_same(Vector(drop_name(vec.labels), v, ok))


def round_to(vec: Vector, nearest: np.ndarray) -> Vector:
    inverse = 1 / nearest[None, :]
    with np.errstate(all="ignore"):
        out = np.floor(vec.v * inverse + 0.5) / inverse
    return merge_same(Vector(drop_name(vec.labels), out, vec.ok))


_GO_TEMPLATE = re.compile(r"\$(?:\{(\w+)\}|(\w+)|\$)")


def _expand(template: str, match: re.Match[str]) -> str:
    """Go's regexp Expand: $1, ${1}, $name, ${name}; an unknown group is empty; $$ is $."""

    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name is None:
            return "$"
        try:
            got = match.group(int(name)) if name.isdigit() else match.group(name)
        except (IndexError, KeyError):
            return ""
        return got or ""

    return _GO_TEMPLATE.sub(one, template)


def _valid_label(name: str) -> bool:
    return re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name) is not None


def _with_label(labels: dict[str, str], name: str, value: str) -> dict[str, str]:
    """A copy with the label set, or removed where the value is empty (an empty label is none)."""
    out = {k: v for k, v in labels.items() if k != name}
    if value:
        out[name] = value
    return out


def label_replace(vec: Vector, dst: str, replacement: str, src: str, regex: str) -> Vector:
    try:
        pattern = anchored(regex)
    except re.error as exc:
        raise QueryError("bad_data", f'invalid regular expression in label_replace(): "{regex}"') from exc
    if not _valid_label(dst):
        raise QueryError("bad_data", f'invalid destination label name in label_replace(): "{dst}"')
    labels = []
    for ls in vec.labels:
        m = pattern.match(ls.get(src, ""))
        labels.append(ls if m is None else _with_label(ls, dst, _expand(replacement, m)))
    return merge_same(Vector(labels, vec.v, vec.ok))


def label_join(vec: Vector, dst: str, sep: str, sources: list[str]) -> Vector:
    if not _valid_label(dst):
        raise QueryError("bad_data", f'invalid destination label name in label_join(): "{dst}"')
    labels = [_with_label(ls, dst, sep.join(ls.get(s, "") for s in sources)) for ls in vec.labels]
    return merge_same(Vector(labels, vec.v, vec.ok))


def scalar(vec: Vector) -> Scalar:
    """The one series' value at each step; NaN where there are none or several."""
    n = vec.ok.sum(axis=0)
    total = np.where(vec.ok, vec.v, 0.0).sum(axis=0) if len(vec.labels) else np.zeros(vec.v.shape[1])
    return Scalar(np.where(n == 1, total, np.nan))


def vector(s: Scalar) -> Vector:
    return Vector([{}], s.v[None, :].copy(), np.ones((1, len(s.v)), dtype=bool))


def absent(vec: Vector, labels: dict[str, str]) -> Vector:
    """1 with the selector's equality labels where the argument has no series at all."""
    none = np.asarray(~vec.ok.any(axis=0)) if len(vec.labels) else np.ones(vec.v.shape[1], dtype=bool)
    return Vector([labels], np.ones((1, vec.v.shape[1])), none[None, :])
