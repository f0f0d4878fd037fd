"""The recent samples of the columns queries ask for, held in memory: a dashboard's panels slice arrays
instead of running a DuckDB statement each (10-16 ms a panel, most of what a query cost).

Prometheus answers from its head block, the newest hours in memory; this is the
same idea, filled on demand. An entry holds one (table, column)'s samples from
its `lo` on, per series (node, device), oldest first, NULLs and NaNs left out,
as the store has them. It stays true to the store through Changes: every writer
says after its COMMIT which table it touched between which times, and the entry
reads that span again before its next answer (one statement over the newest
rows, which DuckDB's zone maps find without a scan).

Only queries reaching back at most SPAN_MS before the table's newest sample are
served; older ones go to DuckDB as before. Past the memory budget the least
recently used entries are dropped; a column that would not fit alone (a large
fleet's hours of it: counted before it is read) is left to DuckDB, whose own
reduction per step beats loading it and dropping it at every refresh.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ironsight.core.unixtime import EPOCH

SPAN_MS = 3 * 3600 * 1000  # as far back as the head reaches from each table's newest sample
BUDGET_BYTES = 256 * 2**20
SAMPLE_BYTES = 16  # a held sample: its millisecond and its value
TOO_BIG_S = 60.0  # a column found past the budget is not tried again for this long
ROWS = ""  # not a column: a table's every row, its value the row's microsecond (what XID series need)


@dataclass(frozen=True)
class Held:
    """One column's samples, series after series (keys sorted), each series' oldest first. Never
    changed once made: a reader keeps a consistent view while the head moves on."""

    keys: list[tuple[str, str]]  # (node, device)
    starts: np.ndarray  # int64, len(keys) + 1: series i is t[starts[i]:starts[i + 1]]
    t: np.ndarray  # int64 ms
    v: np.ndarray  # float64

    @staticmethod
    def empty() -> Held:
        return Held([], np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0))

    @property
    def nbytes(self) -> int:
        return int(self.t.nbytes + self.v.nbytes + self.starts.nbytes)

    def counts(self) -> np.ndarray:
        return np.diff(self.starts)

    def where(self, keep: np.ndarray) -> Held:
        """The samples where keep (a mask over all of them); every series stays, perhaps empty."""
        at = np.flatnonzero(keep)
        return Held(self.keys, np.searchsorted(at, self.starts).astype(np.int64), self.t[at], self.v[at])

    def between(self, mint: int, maxt: int) -> Held:
        """The samples with mint <= t <= maxt."""
        if not len(self.t):
            return self
        early, late = int(self.t.min()) < mint, int(self.t.max()) > maxt
        if not early and not late:
            return self  # the usual for a live dashboard: it asks for all the head holds
        keep = (self.t >= mint) & (self.t <= maxt) if early else self.t <= maxt
        return self.where(keep)

    def per_step(self, mint: int, maxt: int, first: int, step: int) -> Held:
        """The samples mint <= t <= maxt that source.py's step form of SQL keeps: each series' newest at or
        before each of first, first + step, ... (the last of each step's group), in one pass."""
        t = self.t
        k = np.maximum(0, (t - first + step - 1) // step)
        last = np.ones(len(k), dtype=bool)
        last[:-1] = k[1:] != k[:-1]
        later = t > maxt  # a series' newest in the span is the last of its group, whatever follows
        last[:-1] |= later[1:]
        ends = self.starts[1:][self.counts() > 0] - 1
        last[ends] = True  # a series' newest, whatever the next series' first step
        return self.where(last & (t >= mint) & ~later)


class _TooBig(Exception):
    """The samples asked for would not fit the head's budget."""


@dataclass
class _Entry:
    lo: int = 0  # complete for every time >= lo (ms), once loaded
    held: Held = field(default_factory=Held.empty)
    loaded: bool = False
    dirty: int | None = None  # the oldest ms written since the last read of the store
    floor: int = 0  # pruned before this ms
    lock: threading.Lock = field(default_factory=threading.Lock)


class Head:
    def __init__(self, budget_bytes: int = BUDGET_BYTES, span_ms: int = SPAN_MS) -> None:
        self.budget = budget_bytes
        self.span = span_ms
        self._entries: dict[tuple[str, str], _Entry] = {}  # least recently used first
        self._newest: dict[str, int] = {}
        self._too_big: dict[tuple[str, str], float] = {}  # (table, column) -> not tried until (monotonic)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    # -- Changes' listener

    def wrote(self, table: str, lo_ms: int, hi_ms: int) -> None:
        with self._lock:
            if table in self._newest:
                self._newest[table] = max(self._newest[table], hi_ms)
            for (t, _), e in self._entries.items():
                if t == table:
                    e.dirty = lo_ms if e.dirty is None else min(e.dirty, lo_ms)

    def pruned(self, before_ms: int) -> None:
        with self._lock:
            for e in self._entries.values():
                e.floor = max(e.floor, before_ms)

    # -- reading

    def samples(self, con: Any, table: str, column: str, mint: int, maxt: int) -> Held | None:
        """The column's samples, every one from mint on (and perhaps some before), or None when the head
        does not serve this span (the caller asks DuckDB)."""
        if self.budget <= 0 or time.monotonic() < self._too_big.get((table, column), 0.0):
            return None
        newest = self._table_newest(con, table)
        if newest is None or mint < newest - self.span or mint > maxt:
            return None
        with self._lock:
            entry = self._entries.pop((table, column), None) or _Entry()
            self._entries[(table, column)] = entry  # the most recently used, last
        try:
            with entry.lock:
                self._update(con, entry, table, column, mint, newest)
                held = entry.held
        except _TooBig:
            # A fleet's hours of one column past the budget: loading it, answering once and dropping it
            # again at every refresh would cost more than DuckDB's own reduction. Asked again later.
            with self._lock:
                if self._entries.get((table, column)) is entry and not entry.loaded:
                    del self._entries[(table, column)]
                self._too_big[(table, column)] = time.monotonic() + TOO_BIG_S
            return None
        self._fit()
        return held

    def _table_newest(self, con: Any, table: str) -> int | None:
        with self._lock:
            if table in self._newest:
                return self._newest[table]
        (at,) = con.execute(f"SELECT epoch_us(max(time)) // 1000 FROM {table}").fetchall()[0]
        if at is None:
            return None
        with self._lock:
            self._newest[table] = max(self._newest.get(table, at), int(at))
            return self._newest[table]

    def _update(self, con: Any, e: _Entry, table: str, column: str, mint: int, newest: int) -> None:
        """Brings the entry up to what the store holds from mint on (under its lock)."""
        with self._lock:
            dirty, e.dirty = e.dirty, None
            floor = e.floor
        try:
            self._read_in(con, e, table, column, mint, dirty)
        except BaseException:  # a read interrupted at the query's timeout: its span is still to read
            with self._lock:
                if dirty is not None:
                    e.dirty = dirty if e.dirty is None else min(e.dirty, dirty)
            raise
        # Pruned rows go at once; what the head no longer reaches goes an eighth of its span at a time
        # (each let-go copies what is kept: not at every refresh of a live dashboard).
        keep = floor
        if newest - self.span > e.lo + self.span // 8:
            keep = max(keep, newest - self.span)
        if keep > e.lo:
            e.lo = keep
            e.held = _splice(e.held, Held.empty(), None, keep)

    def _read_in(self, con: Any, e: _Entry, table: str, column: str, mint: int, dirty: int | None) -> None:
        """The store's samples the entry lacks: all from mint on at first; then what was written since
        the last read (dirty on), and what lies between mint and what is held."""
        if not e.loaded:
            self._check_fits(con, table, column, mint, None, 0)
            self.misses += 1
            e.held, e.lo, e.loaded = _read(con, table, column, mint, None), mint, True
            return
        self.hits += 1
        if dirty is not None:  # what was written before lo is not held, and need not be read
            since = max(dirty, e.lo)
            e.held = _splice(e.held, _read(con, table, column, since, None), since, None)
        if mint < e.lo:
            self._check_fits(con, table, column, mint, e.lo, e.held.nbytes)
            e.held = _splice(e.held, _read(con, table, column, mint, e.lo), mint, e.lo)
            e.lo = mint

    def _check_fits(self, con: Any, table: str, column: str, lo: int, hi: int | None, held: int) -> None:
        """Raises _TooBig where the samples lo <= ms < hi, beside the held bytes, would pass the budget."""
        rows = _count(con, table, column, lo, hi)
        if held + rows * SAMPLE_BYTES > self.budget:
            raise _TooBig

    def _fit(self) -> None:
        """Least recently used entries out until the rest fit the budget (the one in use is the most
        recently used: it goes last, when it alone is too large; its query has its samples already)."""
        with self._lock:
            total = sum(e.held.nbytes for e in self._entries.values())
            for key in list(self._entries):
                if total <= self.budget:
                    break
                total -= self._entries.pop(key).held.nbytes

    def nbytes(self) -> int:
        with self._lock:
            return sum(e.held.nbytes for e in self._entries.values())


def _where(column: str, lo: int, hi: int | None) -> tuple[str, list[datetime]]:
    """SQL's WHERE for a column's samples lo <= ms < hi, and its parameters."""
    where = "time >= ?" + ("" if hi is None else " AND time < ?")
    bounds = [EPOCH + timedelta(milliseconds=lo)] + (
        [] if hi is None else [EPOCH + timedelta(milliseconds=hi)]
    )
    if column != ROWS:
        where += f' AND "{column}" IS NOT NULL AND NOT isnan("{column}"::DOUBLE)'
    return where, bounds


def _count(con: Any, table: str, column: str, lo: int, hi: int | None) -> int:
    where, bounds = _where(column, lo, hi)
    return int(con.execute(f"SELECT count(*) FROM {table} WHERE {where}", bounds).fetchall()[0][0])


def _read(con: Any, table: str, column: str, lo: int, hi: int | None) -> Held:
    """The column's non-NULL, non-NaN samples with lo <= ms < hi; for ROWS, every row, its value the
    row's microsecond."""
    where, bounds = _where(column, lo, hi)
    value = "epoch_us(time)::DOUBLE" if column == ROWS else f'"{column}"::DOUBLE'
    got = con.sql(
        f"SELECT node, device, epoch_us(time) // 1000 AS t, {value} AS v FROM {table} WHERE {where} "
        "ORDER BY node, device, time",
        params=bounds,
    ).to_arrow_table()
    if not got.num_rows:
        return Held.empty()
    node, device = got.column("node").combine_chunks(), got.column("device").combine_chunks()
    changed = pc.or_(pc.not_equal(node[1:], node[:-1]), pc.not_equal(device[1:], device[:-1]))
    starts = np.r_[0, np.flatnonzero(changed.to_numpy(zero_copy_only=False)) + 1, got.num_rows].astype(
        np.int64
    )
    first = pa.array(starts[:-1])
    keys = list(zip(node.take(first).to_pylist(), device.take(first).to_pylist(), strict=True))
    t = np.asarray(got.column("t").to_numpy(), dtype=np.int64)
    v = np.asarray(got.column("v").to_numpy(zero_copy_only=False), dtype=np.float64)
    return Held(keys, starts, t, v)


def _splice(old: Held, new: Held, lo: int | None, hi: int | None) -> Held:
    """old with its samples lo <= ms < hi (None: no bound) replaced by new (the store's for that span).
    A loop over series, not samples: each series' kept and new parts are sliced, then joined at once."""
    olds = dict(
        zip(old.keys, zip(old.starts[:-1].tolist(), old.starts[1:].tolist(), strict=True), strict=True)
    )
    news = dict(
        zip(new.keys, zip(new.starts[:-1].tolist(), new.starts[1:].tolist(), strict=True), strict=True)
    )
    keys, counts, ts, vs = [], [], [], []
    for key in sorted(olds.keys() | news.keys()):
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        if key in olds:
            a, b = olds[key]
            t = old.t[a:b]
            i = 0 if lo is None else int(np.searchsorted(t, lo, side="left"))
            j = len(t) if hi is None else int(np.searchsorted(t, hi, side="left"))
            parts += [(t[:i], old.v[a : a + i]), (t[j:], old.v[a + j : b])]
        if key in news:
            a, b = news[key]
            parts.insert(1, (new.t[a:b], new.v[a:b]))
        n = sum(len(p[0]) for p in parts)
        if n:
            keys.append(key)
            counts.append(n)
            ts += [p[0] for p in parts]
            vs += [p[1] for p in parts]
    if not keys:
        return Held.empty()
    starts = np.r_[0, np.cumsum(counts)].astype(np.int64)
    return Held(keys, starts, np.concatenate(ts), np.concatenate(vs))
