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
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from ironsight.collector.promql.findings import NAMES as FINDING_KINDS
from ironsight.collector.promql.findings import findings
from ironsight.collector.promql.values import Matcher, Raw, matches
from ironsight.collector.remote_write.encode import Encoder
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
KINDS = {rule.name: rule.kind for rules in RULES.values() for rule in rules} | {
    FB_FREE: "gauge", XID_LAST: "gauge", XID_COUNT: "counter", CORE_THROTTLES: "counter",
    PACKAGE_THROTTLES: "counter"} | FINDING_KINDS  # fmt: skip


class Source:
    """Reads series from a store's connection (a cursor of its own: it may run beside the writer)."""

    def __init__(self, con: Any, job: str = "ironsight", extra_labels: dict[str, str] | None = None) -> None:
        self.con = con
        self.job = job
        self.extra = extra_labels or {}

    def select(self, matchers: Sequence[Matcher], mint_ms: int, maxt_ms: int) -> Raw:
        """Every sample of the series matching all matchers, mint_ms <= t <= maxt_ms."""
        return self._series(matchers, mint_ms, maxt_ms, exists=False) + self._findings(
            matchers, mint_ms, maxt_ms
        )

    def series(self, matchers: Sequence[Matcher], mint_ms: int, maxt_ms: int) -> list[dict[str, str]]:
        """The label sets of the series with a sample in the range, without reading every value."""
        found = self._findings(matchers, mint_ms, maxt_ms).without_stale()
        have = [ls for i, ls in enumerate(found.labels) if found.starts[i + 1] > found.starts[i]]
        return self._series(matchers, mint_ms, maxt_ms, exists=True).labels + have

    def _findings(self, matchers: Sequence[Matcher], mint_ms: int, maxt_ms: int) -> Raw:
        return findings(self.con, matchers, mint_ms, maxt_ms, {"job": self.job, **self.extra})

    def _series(self, matchers: Sequence[Matcher], mint_ms: int, maxt_ms: int, exists: bool) -> Raw:
        names = [n for n in NAMES if matches({"__name__": n}, [m for m in matchers if m.name == "__name__"])]
        tables: dict[str, set[str]] = defaultdict(set)
        for name in names:
            for table, columns in NAMES[name].items():
                tables[table] |= columns
        if not tables or mint_ms > maxt_ms:
            return Raw.empty()
        nodes = self._nodes([m for m in matchers if m.name == "instance"])
        if not nodes:
            return Raw.empty()
        enc = Encoder(self.extra, self.job, keep_labels=True)
        self._learn(enc, nodes)
        rows = [(t, self._rows(t, sorted(c), nodes, mint_ms, maxt_ms, exists)) for t, c in tables.items()]
        if not exists and any(n in (XID_LAST, XID_COUNT) for n in names):
            rows.append(("gpu_xid", self._xids(enc, nodes, mint_ms, maxt_ms)))
        samples = enc.samples(rows)
        if samples is None:
            return Raw.empty()
        want = [i for i, labels in enumerate(enc.label_sets) if labels["__name__"] in names
                and matches(labels, matchers)]  # fmt: skip
        keep = np.isin(samples.ids, want)
        ids, t, v = samples.ids[keep], samples.ms[keep], samples.values[keep]
        return _raw(ids, t, v, enc.label_sets)

    def _nodes(self, instance: Sequence[Matcher]) -> list[str]:
        known = [r[0] for r in self.con.execute("SELECT node FROM nodes ORDER BY node").fetchall()]
        return [n for n in known if all(m.matches(n) for m in instance)]

    def _learn(self, enc: Encoder, nodes: list[str]) -> None:
        hostnames = dict(self.con.execute("SELECT node, hostname FROM nodes").fetchall())
        devices: dict[str, list[DeviceInfo]] = defaultdict(list)
        for node, kind, device, attrs in self.con.execute(
            "SELECT node, kind, device, attrs FROM devices WHERE list_contains(?, node)", [nodes]
        ).fetchall():
            devices[node].append(DeviceInfo(kind, device, dict(attrs or {})))
        for node in nodes:
            enc.know(node, hostnames.get(node) or "", devices[node])

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


_WHERE = "time >= ? AND time < ? AND list_contains(?, node)"


def _bounds(mint_ms: int, maxt_ms: int) -> tuple[datetime, datetime]:
    """Rows whose millisecond (their microseconds floored, as remote write sends them) is in range."""
    return _EPOCH + timedelta(milliseconds=mint_ms), _EPOCH + timedelta(milliseconds=maxt_ms + 1)


def _raw(ids: np.ndarray, t: np.ndarray, v: np.ndarray, label_sets: list[dict[str, str]]) -> Raw:
    """Samples contiguous per label id -> series numbered from 0; a repeated millisecond keeps its first."""
    if len(ids):
        dup = np.r_[False, (ids[1:] == ids[:-1]) & (t[1:] == t[:-1])]
        ids, t, v = ids[~dup], t[~dup], v[~dup]
    first = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, np.int64)
    starts = np.r_[first, len(ids)].astype(np.int64)
    return Raw([label_sets[int(i)] for i in ids[first]], starts, t.astype(np.int64), v.astype(np.float64))


def merge_labels(sets: Iterable[dict[str, str]]) -> list[dict[str, str]]:
    """Distinct label sets, sorted as Prometheus lists them."""
    seen = {tuple(sorted(s.items())): s for s in sets}
    return [seen[k] for k in sorted(seen)]
