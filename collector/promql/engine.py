"""PromQL over the store: parse with promql-parser (the Rust parser Greptime maintains), evaluate
each node of the expression once for every evaluation step together.

An instant query is a range query of one step. Selectors read their series'
samples for the whole span at once (source.py), then find each step's sample
or window by binary search (windows.py); functions, aggregations and
operators work on series-by-steps arrays.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import promql_parser as pp

from ironsight.collector.promql import functions as fn
from ironsight.collector.promql.aggregate import aggregate
from ironsight.collector.promql.binary import SET, Matching, binary
from ironsight.collector.promql.overtime import FUNCTIONS, KEEP_NAME
from ironsight.collector.promql.source import Source
from ironsight.collector.promql.values import (
    Matcher,
    Matrix,
    QueryError,
    Raw,
    Scalar,
    String,
    Value,
    Vector,
    drop_name,
    merge_same,
)
from ironsight.collector.promql.windows import instant, windows

LOOKBACK_MS = 300_000  # Prometheus's default --query.lookback-delta
SUBQUERY_STEP_MS = 60_000  # a subquery without a step: Prometheus's default evaluation interval
MAX_SAMPLES = 50_000_000  # Prometheus's default --query.max-samples
MAX_SERIES = 500_000  # one selector's series: a whole large fleet's GPUs, not its every counter
_OPS = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~", "MatchOp.NotRe": "!~"}
_CARD = {"VectorMatchCardinality.OneToOne": "one-to-one", "VectorMatchCardinality.ManyToOne": "many-to-one",
         "VectorMatchCardinality.OneToMany": "one-to-many",
         "VectorMatchCardinality.ManyToMany": "many-to-many"}  # fmt: skip


def parse(expr: str) -> Any:
    try:
        return pp.parse(expr)
    except (ValueError, RuntimeError) as exc:
        raise QueryError("bad_data", f'invalid parameter "query": {exc}') from exc


def _ms(delta: timedelta | None) -> int:
    return 0 if delta is None else round(delta.total_seconds() * 1000)


@dataclass
class Engine:
    source: Source
    lookback_ms: int = LOOKBACK_MS
    max_samples: int = MAX_SAMPLES
    max_series: int = MAX_SERIES
    subquery_step_ms: int = SUBQUERY_STEP_MS

    def run(self, expr: str | Any, start_ms: int, end_ms: int, step_ms: int, timeout_s: float = 120) -> Value:
        node = parse(expr) if isinstance(expr, str) else expr
        steps = np.arange(start_ms, end_ms + 1, max(step_ms, 1), dtype=np.int64)
        ev = _Eval(self, start_ms, end_ms, time.monotonic() + timeout_s)
        return ev.eval(node, steps, top=True)


@dataclass
class _Eval:
    engine: Engine
    start_ms: int
    end_ms: int
    deadline: float
    loaded: int = 0
    cache: dict[tuple[Any, ...], Raw] = field(default_factory=dict)

    def eval(self, node: Any, ts: np.ndarray, top: bool = False) -> Value:
        if time.monotonic() > self.deadline:
            raise QueryError("timeout", "query timed out in expression evaluation")
        if isinstance(node, pp.NumberLiteral):
            return Scalar(np.full(len(ts), float(node.val)))
        if isinstance(node, pp.StringLiteral):
            return String(node.val)
        if isinstance(node, pp.ParenExpr):
            return self.eval(node.expr, ts, top)
        if isinstance(node, pp.UnaryExpr):
            return _negate(self.eval(node.expr, ts))
        if isinstance(node, pp.VectorSelector):
            return self.selector(node, ts)
        if isinstance(node, pp.MatrixSelector | pp.SubqueryExpr):
            if top and len(ts) == 1:
                return self.matrix(node, ts)
            raise QueryError("bad_data", "invalid expression type \"range vector\" for range query, "
                             "must be Scalar or instant Vector")  # fmt: skip
        if isinstance(node, pp.Call):
            return self.call(node, ts)
        if isinstance(node, pp.AggregateExpr):
            return self.aggregate(node, ts)
        if isinstance(node, pp.BinaryExpr):
            return self.binary(node, ts)
        raise QueryError("bad_data", f"unsupported expression: {node}")

    # -- selectors

    def _times(self, at: Any, offset: timedelta | None, ts: np.ndarray) -> np.ndarray:
        if at is not None:
            kind = str(at.type)
            fixed = (self.start_ms if kind.endswith("Start") else self.end_ms if kind.endswith("End")
                     else round(at.at.timestamp() * 1000))  # fmt: skip
            ts = np.full(len(ts), fixed, dtype=np.int64)
        return ts - _ms(offset)

    def _fetch(self, vs: Any, mint: int, maxt: int, grid: tuple[int, int] = (0, 0)) -> Raw:
        """grid: (first, step) of an instant selector's evaluation times, to read only what they use."""
        matchers = matchers_of(vs)
        cache_key = (tuple(matchers), mint, maxt, grid)
        raw = self.cache.get(cache_key)
        if raw is None:
            raw = self.cache[cache_key] = self.engine.source.select(matchers, mint, maxt, *grid)
            if len(raw.labels) > self.engine.max_series:
                raise QueryError("execution", f"the query selects {len(raw.labels)} series, more than the "
                                 f"{self.engine.max_series} allowed; narrow its label matchers")  # fmt: skip
            self.loaded += len(raw.t)
            if self.loaded > self.engine.max_samples:
                raise QueryError("execution", "query processing would load too many samples into memory "
                                 "in query execution")  # fmt: skip
        return raw

    def selector(self, vs: Any, ts: np.ndarray) -> Vector:
        times = self._times(vs.at, vs.offset, ts)
        lookback = self.engine.lookback_ms
        step = int(times[1] - times[0]) if len(times) > 1 else 0
        grid = (int(times[0]), step) if step > 0 else (0, 0)
        raw = self._fetch(vs, int(times.min()) - lookback, int(times.max()), grid)
        v, ok = instant(raw, times, lookback)
        if raw.stale:  # the newest sample is a staleness marker: the series has ended
            ok &= ~np.isnan(v)
        return Vector(raw.labels, v, ok).present()

    def _range(self, node: Any, ts: np.ndarray) -> tuple[Raw, np.ndarray, int]:
        """A range argument's samples, the window end of each step, and the window's length."""
        if isinstance(node, pp.MatrixSelector):
            vs = node.vector_selector
            times = self._times(vs.at, vs.offset, ts)
            range_ms = _ms(node.range)
            raw = self._fetch(vs, int(times.min()) - range_ms, int(times.max())).without_stale()
            return raw, times, range_ms
        times = self._times(node.at, node.offset, ts)
        range_ms, step = _ms(node.range), _ms(node.step) or self.engine.subquery_step_ms
        first = -(-(int(times.min()) - range_ms) // step) * step
        inner = self.eval(node.expr, np.arange(first, int(times.max()) + 1, step, dtype=np.int64))
        if not isinstance(inner, Vector):
            raise QueryError("bad_data", "subquery is only allowed on instant vector")
        return _to_raw(inner, np.arange(first, int(times.max()) + 1, step, dtype=np.int64)), times, range_ms

    def matrix(self, node: Any, ts: np.ndarray) -> Matrix:
        raw, times, range_ms = self._range(node, ts)
        w = windows(raw, times, range_ms)
        rows = [i for i in range(len(raw.labels)) if w.hi[i, 0] > w.lo[i, 0]]
        return Matrix([raw.labels[i] for i in rows], [raw.t[w.lo[i, 0] : w.hi[i, 0]] for i in rows],
                      [raw.v[w.lo[i, 0] : w.hi[i, 0]] for i in rows])  # fmt: skip

    # -- functions, aggregations, operators

    def call(self, node: Any, ts: np.ndarray) -> Value:
        name, args = node.func.name, list(node.args)
        if name in FUNCTIONS or name == "absent_over_time":
            ranged = next(a for a in args if isinstance(a, pp.MatrixSelector | pp.SubqueryExpr))
            raw, times, range_ms = self._range(ranged, ts)
            w = windows(raw, times, range_ms)
            if name == "absent_over_time":
                return fn.absent(
                    Vector(raw.labels, np.zeros(w.lo.shape), w.count > 0), _absent_labels(ranged)
                )
            scalars = [self.scalar(a, ts).v for a in args if a is not ranged]
            v, ok = FUNCTIONS[name](w, times, range_ms, scalars)
            labels = raw.labels if name in KEEP_NAME else drop_name(raw.labels)
            return merge_same(Vector(labels, v, ok)).present()
        return self.instant_call(name, args, ts)

    def instant_call(self, name: str, args: list[Any], ts: np.ndarray) -> Value:
        if name == "time":
            return Scalar(ts / 1000)
        if name == "vector":
            return fn.vector(self.scalar(args[0], ts))
        if name == "absent":
            got = self.vector(args[0], ts)
            return fn.absent(got, _absent_labels(args[0]))
        vec = self.vector(args[0], ts)
        if name == "scalar":
            return fn.scalar(vec)
        if name in fn.MATH:
            return fn.math(name, vec)
        if name in ("sort", "sort_desc"):
            return vec
        if name in ("clamp", "clamp_min", "clamp_max"):
            bounds = [self.scalar(a, ts).v for a in args[1:]]
            lo = bounds[0] if name in ("clamp", "clamp_min") else None
            hi = bounds[-1] if name in ("clamp", "clamp_max") else None
            return fn.clamp(vec, lo, hi)
        if name == "round":
            nearest = self.scalar(args[1], ts).v if len(args) > 1 else np.ones(len(ts))
            return fn.round_to(vec, nearest)
        strings = [self.string(a) for a in args[1:]]
        if name == "label_replace":
            return fn.label_replace(vec, *strings)
        if name == "label_join":
            return fn.label_join(vec, strings[0], strings[1], strings[2:])
        raise QueryError("bad_data", f"function {name}() is not supported by ironsight")

    def aggregate(self, node: Any, ts: np.ndarray) -> Vector:
        op = str(node.op)
        if op == "count_values":
            raise QueryError("bad_data", "count_values is not supported by ironsight")
        vec = self.vector(node.expr, ts)
        param = self.scalar(node.param, ts).v if node.param is not None else None
        mod = node.modifier
        without = mod is not None and str(mod.type).endswith("Without")
        names = list(mod.labels) if mod is not None else []
        return aggregate(op, vec, names, without, param)

    def binary(self, node: Any, ts: np.ndarray) -> Value:
        op = str(node.op)
        lhs, rhs = self.eval(node.lhs, ts), self.eval(node.rhs, ts)
        mod = node.modifier
        if mod is None:
            m = Matching(card="many-to-many" if op in SET else "one-to-one")
        else:
            matching = mod.matching
            m = Matching(
                card=_CARD[str(mod.card)],
                on=matching is not None and str(matching.type).endswith("Include"),
                labels=tuple(matching.labels) if matching is not None else (),
                include=tuple(mod.group_labels or ()),
                bool_=bool(mod.return_bool),
            )
        return binary(op, lhs, rhs, m)

    # -- argument types

    def vector(self, node: Any, ts: np.ndarray) -> Vector:
        got = self.eval(node, ts)
        if not isinstance(got, Vector):
            raise QueryError("bad_data", "expected type instant vector in call to function")
        return got

    def scalar(self, node: Any, ts: np.ndarray) -> Scalar:
        got = self.eval(node, ts)
        if not isinstance(got, Scalar):
            raise QueryError("bad_data", "expected type scalar in call to function")
        return got

    def string(self, node: Any) -> str:
        if isinstance(node, pp.ParenExpr):
            return self.string(node.expr)
        if not isinstance(node, pp.StringLiteral):
            raise QueryError("bad_data", "expected type string in call to function")
        return str(node.val)


def matchers_of(vs: Any) -> list[Matcher]:
    if vs.matchers.or_matchers:
        raise QueryError("bad_data", "`or` between label matchers is not supported by ironsight")
    out = [Matcher("__name__", "=", vs.name)] if vs.name else []
    out += [Matcher(m.name, _OPS[str(m.op)], m.value) for m in vs.matchers.matchers]
    return out


def _absent_labels(node: Any) -> dict[str, str]:
    """absent()'s labels: the selector's equality matchers (none if two name the same label)."""
    while isinstance(node, pp.ParenExpr):
        node = node.expr
    vs = node.vector_selector if isinstance(node, pp.MatrixSelector) else node
    if not isinstance(vs, pp.VectorSelector):
        return {}
    eq = [m for m in matchers_of(vs) if m.op == "=" and m.name != "__name__"]
    names = [m.name for m in eq]
    return {m.name: m.value for m in eq if names.count(m.name) == 1}


def _negate(value: Value) -> Value:
    if isinstance(value, Scalar):
        return Scalar(-value.v)
    if isinstance(value, Vector):
        return merge_same(Vector(drop_name(value.labels), -value.v, value.ok))
    raise QueryError("bad_data", "unary minus is only allowed on scalars and instant vectors")


def _to_raw(vec: Vector, steps: np.ndarray) -> Raw:
    """A subquery's result as samples (one per step the series has), for the range functions."""
    s, t = np.nonzero(vec.ok)  # row-major: by series, then time
    counts = np.bincount(s, minlength=len(vec.labels))
    starts = np.r_[0, np.cumsum(counts)].astype(np.int64)
    return Raw(list(vec.labels), starts, steps[t].astype(np.int64), vec.v[s, t].astype(np.float64))
