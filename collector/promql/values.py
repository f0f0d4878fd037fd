"""What PromQL expressions evaluate to, over all evaluation steps at once.

An instant vector is a matrix of series by steps with a presence mask (a
series has a sample at some steps and none at others); a scalar one value per
step. Every operator works on these whole arrays: no Python runs per sample.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class QueryError(Exception):
    """A query that cannot run; kind is Prometheus's errorType (bad_data, execution, timeout, ...)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class Vector:
    labels: list[dict[str, str]]  # per series
    v: np.ndarray  # float64 (series, steps)
    ok: np.ndarray  # bool (series, steps): the series has a sample at that step

    @staticmethod
    def empty(steps: int) -> Vector:
        return Vector([], np.zeros((0, steps)), np.zeros((0, steps), dtype=bool))

    def take(self, rows: np.ndarray | list[int]) -> Vector:
        rows = np.asarray(rows, dtype=np.int64)
        return Vector([self.labels[i] for i in rows], self.v[rows], self.ok[rows])

    def present(self) -> Vector:
        """Only the series with a sample at some step."""
        return self.take(np.flatnonzero(self.ok.any(axis=1)))


@dataclass
class Scalar:
    v: np.ndarray  # float64 (steps,)


@dataclass
class String:
    s: str


@dataclass
class Matrix:
    """A range vector at one instant, as an instant query returns it: raw samples per series."""

    labels: list[dict[str, str]]
    t: list[np.ndarray]  # milliseconds per series
    v: list[np.ndarray]


Value = Vector | Scalar | String | Matrix


def drop_name(labels: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in ls.items() if k != "__name__"} for ls in labels]


def key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def check_unique(labels: list[dict[str, str]], ok: np.ndarray) -> None:
    """Prometheus refuses a result holding one label set twice at one step."""
    groups: dict[tuple[tuple[str, str], ...], list[int]] = {}
    for i, ls in enumerate(labels):
        groups.setdefault(key(ls), []).append(i)
    for rows in groups.values():
        if len(rows) > 1 and (ok[rows].sum(axis=0) > 1).any():
            raise QueryError("execution", "vector cannot contain metrics with the same labelset")


def merge_same(vec: Vector) -> Vector:
    """Series whose labels became equal (a name dropped) as one, where they never overlap in time."""
    check_unique(vec.labels, vec.ok)
    groups: dict[tuple[tuple[str, str], ...], list[int]] = {}
    for i, ls in enumerate(vec.labels):
        groups.setdefault(key(ls), []).append(i)
    if len(groups) == len(vec.labels):
        return vec
    labels, vs, oks = [], [], []
    for rows in groups.values():
        ok = vec.ok[rows]
        labels.append(vec.labels[rows[0]])
        vs.append(np.where(ok, vec.v[rows], 0).sum(axis=0))
        oks.append(ok.any(axis=0))
    return Vector(labels, np.array(vs).reshape(len(labels), -1), np.array(oks).reshape(len(labels), -1))


def anchored(regex: str) -> re.Pattern[str]:
    """A PromQL regular expression: it must match the whole value, as Prometheus anchors RE2's."""
    return re.compile(f"(?:{regex})\\Z", re.DOTALL)


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str  # =, !=, =~, !~
    value: str

    def __post_init__(self) -> None:
        if self.op in ("=~", "!~"):
            # Anchored at both ends, as Prometheus's; RE2 syntax that Python's re lacks is one clear error.
            try:
                compiled = anchored(self.value)
            except re.error as exc:
                raise QueryError("bad_data", f"invalid regular expression {self.value!r}: {exc}") from None
            object.__setattr__(self, "_re", compiled)

    def matches(self, value: str) -> bool:
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        hit = self._re.match(value) is not None  # type: ignore[attr-defined]
        return hit if self.op == "=~" else not hit


def matches(labels: dict[str, str], matchers: Sequence[Matcher]) -> bool:
    return all(m.matches(labels.get(m.name, "")) for m in matchers)


@dataclass
class Raw:
    """Series and their samples: series i's are t[starts[i]:starts[i+1]], oldest first."""

    labels: list[dict[str, str]]
    starts: np.ndarray  # int64, len(labels) + 1
    t: np.ndarray  # int64 milliseconds
    v: np.ndarray  # float64
    stale: bool = False  # NaN values are staleness markers (the findings' series), not values

    @staticmethod
    def empty() -> Raw:
        return Raw([], np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0))

    @staticmethod
    def of(
        labels: list[dict[str, str]], ts: list[np.ndarray], vs: list[np.ndarray], stale: bool = False
    ) -> Raw:
        """Series from one array of times and one of values each."""
        if not labels:
            return Raw.empty()
        starts = np.r_[0, np.cumsum([len(t) for t in ts])].astype(np.int64)
        return Raw(
            labels, starts, np.concatenate(ts).astype(np.int64), np.concatenate(vs).astype(np.float64), stale
        )

    def __add__(self, other: Raw) -> Raw:
        if not other.labels:
            return self
        if not self.labels:
            return other
        starts = np.r_[self.starts[:-1], other.starts + self.starts[-1]]
        return Raw(self.labels + other.labels, starts, np.r_[self.t, other.t], np.r_[self.v, other.v],
                   self.stale or other.stale)  # fmt: skip

    def without_stale(self) -> Raw:
        """The samples a range function sees: staleness markers left out, as Prometheus does."""
        if not self.stale:
            return self
        keep = ~np.isnan(self.v)
        series = np.repeat(np.arange(len(self.labels)), np.diff(self.starts))[keep]
        starts = np.r_[0, np.cumsum(np.bincount(series, minlength=len(self.labels)))].astype(np.int64)
        return Raw(self.labels, starts, self.t[keep], self.v[keep])
