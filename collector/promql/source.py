"""The store's series, as the forwarder would send them: which rows a selector needs, and their samples.

A metric name maps to the stored table and columns it is rendered from
(core/series_rules.py). The rows are read for the time range only, and turned
into series by the very encoder remote write uses, so a series here has the
name, labels and values a Prometheus fed by our remote write holds. Label
matchers other than `instance` are applied per series, after the fact: there
are a few thousand series per node at most, never a test per sample.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ironsight.collector.promql.findings import NAMES as FINDING_KINDS
from ironsight.collector.promql.findings import findings
from ironsight.collector.promql.head import ROWS, Head, Held
from ironsight.collector.promql.jobs import job_gpus
from ironsight.collector.promql.up import up
from ironsight.collector.promql.values import Matcher, Raw, matches
from ironsight.collector.promql.xids import xid_samples
from ironsight.collector.remote_write.encode import Encoder, table_rules, xid_events
from ironsight.core.reading import DeviceInfo
from ironsight.core.series_rules import (
    CORE_THROTTLES,
    FB_FREE,
    PACKAGE_THROTTLES,
    RULES,
    XID_COUNT,
    XID_LAST,
)

_EPOCH = datetime(1970, 1, 1)
_KEYS = ("core_id", "package_id")  # not values: which core a CPU row's throttle counters belong to


def _names() -> dict[str, dict[str, set[str]]]:
    """Metric name -> table -> the columns its series are rendered from."""
    out: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for table, rules in RULES.items():
        for rule in rules:
            out[rule.name][table].add(rule.column)
    out[FB_FREE]["gpu"] |= {"memory_used_bytes", "memory_total_bytes"}
    out[XID_LAST]["gpu"] |= {"util_gpu_percent"}  # XID series exist wherever a GPU has rows
    out[XID_COUNT]["gpu"] |= {"util_gpu_percent"}
    out[CORE_THROTTLES]["cpu"] |= {*_KEYS, "core_throttles"}
    out[PACKAGE_THROTTLES]["cpu"] |= {*_KEYS, "package_throttles"}
    return {name: dict(tables) for name, tables in out.items()}


NAMES = _names()
SPECIAL = {FB_FREE, XID_LAST, XID_COUNT, CORE_THROTTLES, PACKAGE_THROTTLES}


def _tables(names: Iterable[str]) -> dict[str, set[str]]:
    """The tables these names are rendered from, and the columns each needs."""
    out: dict[str, set[str]] = defaultdict(set)
    for name in names:
        for table, columns in NAMES[name].items():
            out[table] |= columns
    return out


KINDS = {rule.name: rule.kind for rules in RULES.values() for rule in rules} | {
    FB_FREE: "gauge", XID_LAST: "gauge", XID_COUNT: "counter", CORE_THROTTLES: "counter",
    PACKAGE_THROTTLES: "counter", "up": "gauge", "ironsight_job_gpus": "gauge"} | FINDING_KINDS  # fmt: skip


@dataclass
class Inventory:
    """The nodes, their hostnames and devices: what series' labels are made of."""

    nodes: list[str]
    hostnames: dict[str, str]
    devices: dict[str, list[DeviceInfo]]

    @staticmethod
    def load(con: Any) -> Inventory:
        hostnames = {
            n: h or "" for n, h in con.execute("SELECT node, hostname FROM nodes ORDER BY node").fetchall()
        }
        devices: dict[str, list[DeviceInfo]] = defaultdict(list)
        for node, kind, device, attrs in con.execute(
            "SELECT node, kind, device, attrs FROM devices"
        ).fetchall():
            devices[node].append(DeviceInfo(kind, device, dict(attrs or {})))
        return Inventory(list(hostnames), hostnames, dict(devices))


class Source:
    """Reads series from a store's connection (a cursor of its own: it may run beside the writer).
    inventory: one read a moment ago, to spare each query reading it (default: read now)."""

    def __init__(
        self,
        con: Any,
        job: str = "ironsight",
        extra_labels: dict[str, str] | None = None,
        inventory: Inventory | None = None,
        head: Head | None = None,
    ) -> None:
        """head: recent samples in memory, where it serves a query's span (else DuckDB is asked)."""
        self.con = con
        self.head = head
        self.job = job
        self.extra = extra_labels or {}
        self._inventory = inventory

    @property
    def inventory(self) -> Inventory:
        if self._inventory is None:
            self._inventory = Inventory.load(self.con)
        return self._inventory

    def select(
        self, matchers: Sequence[Matcher], mint_ms: int, maxt_ms: int, first: int = 0, step: int = 0
    ) -> Raw:
        """The samples of the series matching all matchers, mint_ms <= t <= maxt_ms: every one, or with
        a step only those an instant selector evaluated at first, first + step, ... can use."""
        span = Span(mint_ms, maxt_ms, first, step)
        return self._series(matchers, span, exists=False) + self._derived(matchers, mint_ms, maxt_ms)

    def series(self, matchers: Sequence[Matcher], mint_ms: int, maxt_ms: int) -> list[dict[str, str]]:
        """The label sets of the series with a sample in the range, without reading every value."""
        found = self._derived(matchers, mint_ms, maxt_ms).without_stale()
        have = [ls for i, ls in enumerate(found.labels) if found.starts[i + 1] > found.starts[i]]
        return self._series(matchers, Span(mint_ms, maxt_ms), exists=True).labels + have

    def _derived(self, matchers: Sequence[Matcher], mint_ms: int, maxt_ms: int) -> Raw:
        """Series that are not a stored column: the detector's findings, `up`, the GPUs jobs hold."""
        extra = {"job": self.job, **self.extra}
        nodes = self._nodes([m for m in matchers if m.name == "instance"])
        return (findings(self.con, matchers, mint_ms, maxt_ms, extra)
                + up(self.con, matchers, nodes, mint_ms, maxt_ms, extra)
                + job_gpus(self.con, matchers, nodes, mint_ms, maxt_ms, extra))  # fmt: skip

    def _series(self, matchers: Sequence[Matcher], span: Span, exists: bool) -> Raw:
        mint_ms, maxt_ms = span.mint, span.maxt
        names = [n for n in NAMES if matches({"__name__": n}, [m for m in matchers if m.name == "__name__"])]
        nodes = self._nodes([m for m in matchers if m.name == "instance"]) if names else []
        if not nodes or mint_ms > maxt_ms:
            return Raw.empty()
        enc = Encoder(self.extra, self.job, keep_labels=True)
        self.inform(enc, nodes)
        # Plain names (a column each) are read sorted by DuckDB, straight into arrays; the rest (values
        # built from two columns, the XID history, per-core throttles) through the encoder's renderer.
        plain = [] if exists else [n for n in names if n not in SPECIAL]
        parts = [self._plain(enc, t, c, set(plain), nodes, span) for t, c in _tables(plain).items()]
        rendered = [n for n in names if n not in plain]
        xids = None
        if rendered and self.head is not None and not exists and set(rendered) <= {XID_LAST, XID_COUNT}:
            xids = self._xids_from_head(enc, set(rendered), nodes, span)
        if xids is not None:
            parts.append(xids)
        elif rendered:
            enc.only = frozenset(rendered)  # values of these only: the plain ones are read above
            if span.step and not exists and set(rendered) <= {XID_LAST, XID_COUNT}:
                rows = [("gpu", self._last_rows("gpu", sorted(_tables(rendered)["gpu"]), nodes, span))]
            else:
                rows = [(t, self._rows(t, sorted(c), nodes, mint_ms, maxt_ms, exists))
                        for t, c in _tables(rendered).items()]  # fmt: skip
            if not exists and any(n in (XID_LAST, XID_COUNT) for n in rendered):
                rows.append(("gpu_xid", self._xids(enc, nodes, mint_ms, maxt_ms)))
            samples = enc.samples(rows)
            if samples is not None:
                parts.append((samples.ids, samples.ms, samples.values))
        if not parts:
            return Raw.empty()
        ids, t, v = (
            np.concatenate([p[k] for p in parts]) if len(parts) > 1 else parts[0][k] for k in range(3)
        )
        runs = ids[np.r_[True, ids[1:] != ids[:-1]]] if len(ids) else ids  # each series' samples are one run
        labels = {int(i): enc.label_set(int(i)) for i in np.unique(runs)}
        want = [i for i, ls in labels.items() if ls["__name__"] in names and matches(ls, matchers)]
        if len(want) < len(labels):
            keep = np.isin(ids, want)
            ids, t, v = ids[keep], t[keep], v[keep]
        return _raw(ids, t, v, labels)

    def _plain(
        self, enc: Encoder, table: str, columns: set[str], names: set[str], nodes: list[str], span: Span
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(label id, ms, value) of each non-NULL value of a table's columns, each series' oldest first."""
        # Every node asked (`instance=~".+"`, the dashboards' usual): no filter on node in DuckDB (it was a
        # join over every row, a sixth of a day's query); rows of a node not in the inventory are left
        # out below instead, as the filter would have.
        if (
            self.head is not None
            and (got := self._from_head(enc, table, columns, names, nodes, span)) is not None
        ):
            return got
        everyone = len(nodes) == len(self.inventory.nodes)
        sql = _plain_sql(table, sorted(columns), span, everyone)
        bounds = [*_bounds(span.mint, span.maxt)]
        got = self.con.sql(sql, params=bounds if everyone else [*bounds, nodes]).to_arrow_table()
        n = got.num_rows
        out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        if n:
            node, device = got.column("node").combine_chunks(), got.column("device").combine_chunks()
            changed = pc.or_(pc.not_equal(node[1:], node[:-1]), pc.not_equal(device[1:], device[:-1]))
            cut = np.r_[0, np.flatnonzero(changed.to_numpy(zero_copy_only=False)) + 1]
            keys = zip(node.take(cut).to_pylist(), device.take(cut).to_pylist(), strict=True)
            asked = set(nodes)
            base = np.array(
                [enc.series_id(table, a, b) if a in asked else -1 for a, b in keys], dtype=np.int64
            )
            row_base = np.repeat(base, np.diff(np.r_[cut, n]))
        for k, rule in enumerate(table_rules(table)):
            if not n or rule.column not in columns or rule.name not in names:
                continue
            v = np.asarray(got.column(rule.column).to_numpy(zero_copy_only=False), dtype=np.float64)
            t = np.asarray(
                got.column(f"t_{rule.column}" if span.step else "t").to_numpy(zero_copy_only=False)
            )
            ok = ~np.isnan(v) & (row_base >= 0)
            ids, t, v = (row_base + k, t, v) if ok.all() else (row_base[ok] + k, t[ok], v[ok])
            out.append((ids, t.astype(np.int64, copy=False), v * rule.scale if rule.scale != 1 else v))
        if not out:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        return out[0] if len(out) == 1 else tuple(np.concatenate([o[i] for o in out]) for i in range(3))  # type: ignore[return-value]

    def _from_head(
        self, enc: Encoder, table: str, columns: set[str], names: set[str], nodes: list[str], span: Span
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """What _plain reads, from the head's arrays; None where the head does not hold the span."""
        assert self.head is not None
        asked = set(nodes)
        out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for k, rule in enumerate(table_rules(table)):
            if rule.column not in columns or rule.name not in names:
                continue
            held = self.head.samples(self.con, table, rule.column, span.mint, span.maxt)
            if held is None:
                return None
            held = _in_span(held, span)
            base = np.array([enc.series_id(table, node, device) + k if node in asked else -1
                             for node, device in held.keys], dtype=np.int64)  # fmt: skip
            ids = np.repeat(base, held.counts())
            ok = ids >= 0
            t, v = (held.t, held.v) if ok.all() else (held.t[ok], held.v[ok])
            out.append((ids[ok] if not ok.all() else ids, t, v * rule.scale if rule.scale != 1 else v))
        if not out:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        return out[0] if len(out) == 1 else tuple(np.concatenate([o[i] for o in out]) for i in range(3))  # type: ignore[return-value]

    def _xids_from_head(
        self, enc: Encoder, names: set[str], nodes: list[str], span: Span
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The XID series at the GPU rows the head holds (None where it does not hold the span)."""
        assert self.head is not None
        held = self.head.samples(self.con, "gpu", ROWS, span.mint, span.maxt)
        if held is None:
            return None
        held = _in_span(held, span)
        found = xid_events(self._xids(enc, nodes, span.mint, span.maxt))
        return xid_samples(held, enc, names, set(nodes), found)

    def _nodes(self, instance: Sequence[Matcher]) -> list[str]:
        return [n for n in self.inventory.nodes if all(m.matches(n) for m in instance)]

    def inform(self, enc: Encoder, nodes: list[str]) -> None:
        """Tell an encoder these nodes' hostnames and devices, which their series' labels are made of."""
        inv = self.inventory
        for node in nodes:
            enc.know(node, inv.hostnames.get(node, ""), inv.devices.get(node, []))

    def _rows(
        self, table: str, columns: list[str], nodes: list[str], mint_ms: int, maxt_ms: int, exists: bool
    ) -> pa.Table:
        """The table's rows in the range; with exists, one row per node and device that has any."""
        if exists:
            cols = ", ".join(f'max("{c}") AS "{c}"' for c in columns)
            sql = f"SELECT node, device, max(time) AS time, {cols} FROM {table} WHERE {_WHERE} GROUP BY ALL"
        else:
            cols = ", ".join(f'"{c}"' for c in columns)
            sql = f"SELECT node, device, time, {cols} FROM {table} WHERE {_WHERE}"
        return self.con.sql(sql, params=[*_bounds(mint_ms, maxt_ms), nodes]).to_arrow_table()

    def _last_rows(self, table: str, columns: list[str], nodes: list[str], span: Span) -> pa.Table:
        """Each node and device's last row before each step of an instant selector: all it can use of a
        series whose value depends on its row's time alone (the XID history's; a dashboard's XID panel
        read every GPU row of the range)."""
        cols = ", ".join(f'arg_max("{c}", time) AS "{c}"' for c in columns)
        sql = (f"SELECT node, device, max(time) AS time, {cols} FROM {table} WHERE {_WHERE} "
               f"GROUP BY node, device, {_step_of(span)}")  # fmt: skip
        return self.con.sql(sql, params=[*_bounds(span.mint, span.maxt), nodes]).to_arrow_table()

    def _xids(self, enc: Encoder, nodes: list[str], mint_ms: int, maxt_ms: int) -> pa.Table:
        """The XIDs in the range; the last one and how many came before it are the encoder's state."""
        lo, _ = _bounds(mint_ms, maxt_ms)
        for node, device, count, last in self.con.execute(
            "SELECT node, device, count(*), arg_max(xid, time) FROM gpu_xid "
            "WHERE time < ? AND xid IS NOT NULL AND list_contains(?, node) GROUP BY ALL",
            [lo, nodes],
        ).fetchall():
            enc.xids[(node, device)] = (int(last), int(count))
        return self.con.sql(
            f"SELECT node, device, time, xid FROM gpu_xid WHERE {_WHERE} ORDER BY time",
            params=[*_bounds(mint_ms, maxt_ms), nodes],
        ).to_arrow_table()


_WHERE_TIME = "time >= ? AND time < ?"
_WHERE = f"{_WHERE_TIME} AND list_contains(?, node)"


@dataclass(frozen=True)
class Span:
    """Samples from mint to maxt (ms). With a step: only each series' last sample at or before each of
    the times first, first + step, ... (all an instant selector can use), found by DuckDB."""

    mint: int
    maxt: int
    first: int = 0
    step: int = 0


def _plain_sql(table: str, columns: list[str], span: Span, everyone: bool = False) -> str:
    """everyone: no node filter (and no parameter for it)."""
    where = _WHERE_TIME if everyone else _WHERE
    if len(columns) == 1:  # a panel's usual: NULLs left out by the scan, not by each aggregate (a tenth)
        where += f' AND "{columns[0]}" IS NOT NULL'
    if not span.step:
        cols = ", ".join(f'"{c}"' for c in columns)
        return (f"SELECT node, device, epoch_us(time) // 1000 AS t, {cols} FROM {table} WHERE {where} "
                "ORDER BY node, device, t")  # fmt: skip
    # The step a sample serves: the first evaluation time at or after its millisecond. In integers, and
    # the millisecond taken only of each group's last time: epoch_ms() and a float ceil() on every row
    # were a third of a day's query (negative numerators are clamped to 0, so truncation is floor here).
    k = _step_of(span)
    only = "" if len(columns) == 1 else ' FILTER ("{}" IS NOT NULL)'
    cols = ", ".join(f'epoch_ms(max(time){only.format(c)}) AS "t_{c}", '
                     f'arg_max("{c}", time){only.format(c)} AS "{c}"' for c in columns)  # fmt: skip
    return (f"SELECT node, device, {k} AS k, {cols} FROM {table} WHERE {where} GROUP BY node, device, k "
            "ORDER BY node, device, k")  # fmt: skip


def _in_span(held: Held, span: Span) -> Held:
    """The head's samples a selector reads: those in the span, with a step only the ones _plain_sql's
    step form keeps."""
    if span.step:
        return held.per_step(span.mint, span.maxt, span.first, span.step)
    return held.between(span.mint, span.maxt)


def _step_of(span: Span) -> str:
    """SQL: the step of a row's sample, k for first + k * step. In integers, of the row's millisecond."""
    return f"greatest(0, (epoch_us(time) // 1000 - {span.first} + {span.step - 1}) // {span.step})"


def _bounds(mint_ms: int, maxt_ms: int) -> tuple[datetime, datetime]:
    """Rows whose millisecond (their microseconds floored, as remote write sends them) is in range."""
    return _EPOCH + timedelta(milliseconds=mint_ms), _EPOCH + timedelta(milliseconds=maxt_ms + 1)


def _raw(ids: np.ndarray, t: np.ndarray, v: np.ndarray, label_sets: dict[int, dict[str, str]]) -> Raw:
    """Samples contiguous per label id -> series numbered from 0; a repeated millisecond keeps its first."""
    if len(ids):
        dup = np.r_[False, (ids[1:] == ids[:-1]) & (t[1:] == t[:-1])]
        if dup.any():
            ids, t, v = ids[~dup], t[~dup], v[~dup]
    first = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, np.int64)
    starts = np.r_[first, len(ids)].astype(np.int64)
    # Copies (astype's default): the head's arrays may come this far uncopied, and are never to be written.
    return Raw([label_sets[int(i)] for i in ids[first]], starts, t.astype(np.int64), v.astype(np.float64))


def merge_labels(sets: Iterable[dict[str, str]]) -> list[dict[str, str]]:
    """Distinct label sets, sorted as Prometheus lists them."""
    seen = {tuple(sorted(s.items())): s for s in sets}
    return [seen[k] for k in sorted(seen)]
