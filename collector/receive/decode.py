"""A remote-write request -> the samples ironsight has columns for, as one Arrow table, and what it left.

Each distinct label set (a series) is read once and given a slot: where its
samples go (node, table, device, column, unit factor) or why nowhere (a family
without a column, a malformed series). A sender repeats its series in every
request, so after its first a request costs a dict lookup per series (its label
bytes) and numpy over arrays indexed by slot (wire.py decodes the samples as one
matrix): no Python object per sample. Prometheus's staleness markers (a NaN
with one bit pattern) are not values and are skipped; any other NaN or infinity
is refused with its series, as the agent refuses them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np
import pyarrow as pa

from ironsight.collector.receive.mapping import INVENTORY_LABELS, device, family, target
from ironsight.collector.receive.wire import (
    STALE_NAN,
    BadRequest,
    Kept,
    Wire,
    kept,
    labels_of,
    parse,
    samples_of,
    show,
    whole,
)

__all__ = ["STALE_NAN", "BadRequest", "Decoded", "Decoder", "Kept", "Part", "node_of"]

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_PORT = re.compile(r":\d+$")
CACHE_SERIES = 1_000_000  # label sets remembered; past it the slots start again

ROWS = pa.schema([("part", pa.int32()), ("time", pa.timestamp("ms")), ("value", pa.float64())])
Part = tuple[str, str, str, str]  # node, table, device, column: a place samples are stored in
OK, DROPPED, REFUSED = 0, 1, 2  # a slot's state


@dataclass(frozen=True)
class _Series:
    """Where a label set's samples go: node, table, device, column and factor, or why nowhere."""

    node: str = ""
    table: str = ""
    device: str = ""
    column: str = ""
    factor: float = 1.0
    dropped: str = ""  # the family: ironsight has no column for it
    refused: str = ""  # why it is malformed
    hostname: str = ""
    inventory: tuple[tuple[str, str], ...] = ()
    part: int = -1  # the place's number in received_parts


@dataclass
class Decoded:
    rows: pa.Table  # part, time, value
    nodes: set[str] = field(default_factory=set)  # the nodes it has samples of
    hostnames: dict[str, str] = field(default_factory=dict)
    inventory: dict[tuple[str, str, str], dict[str, str]] = field(
        default_factory=dict
    )  # (node, kind, device)
    refused: list[str] = field(default_factory=list)  # "series: why", one per refused series
    kept: list[Kept] = field(default_factory=list)  # the refused series' samples, to be kept
    dropped: Counter[str] = field(default_factory=Counter)  # samples per family without a column
    series: int = 0  # series mapped to a column
    samples: int = 0  # samples in the request, stored or not


def node_of(value: str, strip_port: bool) -> str:
    """A node id from an instance label: "gpu-7:9100" -> "gpu-7", "[fe80::1]:9400" -> "fe80::1"."""
    if strip_port and _PORT.search(value):
        value = _PORT.sub("", value)
    return value.removeprefix("[").removesuffix("]") if value.startswith("[") else value


class _Slots:
    """Every label set met so far, by slot: its place, and numpy columns of it a request indexes at once."""

    COLUMNS = (("state", np.int8), ("part", np.int32), ("factor", np.float64), ("node", np.int32),
               ("family", np.int32))  # fmt: skip

    def __init__(self) -> None:
        self.places: list[_Series] = []
        self.nodes: list[str] = []  # by node number
        self.families: list[str] = []  # dropped families, by number
        self._numbers: dict[tuple[bool, str], int] = {}
        self.columns = {name: np.zeros(1024, dtype) for name, dtype in self.COLUMNS}

    def add(self, place: _Series) -> int:
        slot = len(self.places)
        if slot == len(self.columns["state"]):
            self.columns = {k: np.concatenate([a, np.zeros_like(a)]) for k, a in self.columns.items()}
        self.places.append(place)
        c = self.columns
        c["state"][slot] = DROPPED if place.dropped else REFUSED if place.refused else OK
        c["part"][slot], c["factor"][slot] = place.part, place.factor
        c["node"][slot] = self._number(False, place.node, self.nodes)
        c["family"][slot] = self._number(True, place.dropped, self.families)
        return slot

    def _number(self, kind: bool, name: str, names: list[str]) -> int:
        number = self._numbers.get((kind, name))
        if number is None:
            number = self._numbers[kind, name] = len(names)
            names.append(name)
        return number


class Decoder:
    """Remembers each label set's place, across requests, for one collector's mapping settings."""

    def __init__(
        self,
        node_label: str = "instance",
        strip_port: bool = True,
        parts: dict[Part, int] | None = None,
        register: Callable[[list[tuple[int, Part]]], None] | None = None,
    ) -> None:
        """parts: the places numbered so far (received_parts); register(new): stores new ones, committed,
        before any sample names them."""
        self.node_label = node_label
        self.strip_port = strip_port
        self.parts: dict[Part, int] = dict(parts or {})
        self._next = max(self.parts.values(), default=-1) + 1
        self._register = register
        self._new: list[tuple[int, Part]] = []
        self._fresh: list[_Series] = []  # places first met in this request: their hostname and inventory
        self._forget()

    def _forget(self) -> None:
        self._slot_of: dict[bytes | None, int] = {}  # label bytes -> slot
        self._dropped: dict[str, _Series] = {}  # by family
        self._nodes: dict[str, str] = {}  # node label value -> node id
        self._slots = _Slots()
        self._unreadable = self._slots.add(_Series(refused="a series whose labels cannot be read"))

    def decode(self, body: bytes, allowed: Callable[[str], bool]) -> Decoded:
        """The request's samples; allowed(node) says whether the sender may write for that node."""
        wire = Wire.of(parse(body).timeseries)
        if len(self._slot_of) >= CACHE_SERIES:
            self._forget()
        keys = wire.keys()
        slot = np.fromiter(map(self._slot_of.get, keys, repeat(-1)), np.int64, len(keys))
        for i in np.flatnonzero((slot < 0) & (wire.tails > 0)).tolist():
            slot[i] = self._place(keys[i] or b"")  # -1: not labels alone after all, parsed whole below
        one = np.flatnonzero(slot >= 0)
        counts = np.ones(len(keys), np.int64)
        t, v = wire.last_samples(one)
        which = one  # the series each sample is of
        rest = np.flatnonzero(slot < 0)
        if len(rest):  # several samples, or another encoding
            slot[rest], counts[rest], blobs = self._whole(wire.series, rest)
            t2, v2 = samples_of(blobs)
            t, v = np.concatenate([t, t2]), np.concatenate([v, v2])
            which = np.concatenate([one, np.repeat(rest, counts[rest])])
        out = Decoded(ROWS.empty_table(), samples=len(t))
        self._announce(out)
        ok = self._series(wire.series, slot, counts, allowed, out)
        out.rows = self._rows(wire.series, slot, ok, which, t, v, out)
        return out

    def _whole(self, series: Sequence[bytes], rest: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[bytes]]:
        """These series parsed message by message: their slots, sample counts and samples' bytes."""
        slots, counts, blobs = [], [], []
        for i in rest.tolist():
            key, samples = whole(series[i])
            slot = self._slot_of.get(key, -1)
            if slot < 0:
                slot = self._place(key)
            slots.append(slot if slot >= 0 else self._unreadable)
            counts.append(len(samples))
            blobs.extend(samples)
        return np.array(slots, np.int64), np.array(counts, np.int64), blobs

    def _series(
        self, series: Sequence[bytes], slot: np.ndarray, counts: np.ndarray, allowed: Callable[[str], bool],
        out: Decoded,
    ) -> np.ndarray:  # fmt: skip
        """Per series, whether it is stored: families without a column counted, refusals said and kept."""
        c = self._slots.columns
        state, node = c["state"][slot], c["node"][slot]
        dropped = state == DROPPED
        if dropped.any():
            per_family = np.bincount(c["family"][slot[dropped]], weights=counts[dropped])
            for f in np.flatnonzero(per_family).tolist():
                out.dropped[self._slots.families[f]] += int(per_family[f])
        ok: np.ndarray = state == OK
        denied: dict[int, str] = {}
        for k in np.unique(node[ok]).tolist():  # allowed(node), asked once a node
            if not allowed(name := self._slots.nodes[k]):
                denied[k] = f"this sender may not write for instance {name!r}"
        if denied:
            ok &= ~np.isin(node, list(denied))
        for i in np.flatnonzero((state == REFUSED) | ((state == OK) & ~ok)).tolist():
            why = self._slots.places[slot[i]].refused or denied[int(node[i])]
            shown = show(series[i])
            out.refused.append(f"{shown}: {why}")
            out.kept.extend(kept(series[i], why, shown))
        out.series = int(ok.sum())
        return ok

    def _rows(
        self, series: Sequence[bytes], slot: np.ndarray, ok: np.ndarray, which: np.ndarray, t: np.ndarray,
        v: np.ndarray, out: Decoded,
    ) -> pa.Table:  # fmt: skip
        """The stored series' samples as rows, but for staleness markers; a series with a value that is
        not finite is refused whole."""
        keep = ok[which] & (v.view(np.uint64) != STALE_NAN)
        bad = keep & ~np.isfinite(v)
        if bad.any():
            for i in np.unique(which[bad]).tolist():
                p = self._slots.places[slot[i]]
                shown = f"{p.node} {p.table}.{p.column} {p.device!r}"
                out.refused.append(f"{shown}: a value that is not finite")
                mine = which == i
                out.kept.extend(("a value that is not finite", shown, int(when), float(value))
                                for when, value in zip(t[mine], v[mine], strict=True))  # fmt: skip
            keep &= ~np.isin(which, which[bad])
        if not keep.any():
            return ROWS.empty_table()
        c = self._slots.columns
        s = slot[which[keep]]
        out.nodes = {self._slots.nodes[k] for k in np.unique(c["node"][s]).tolist()}
        return pa.table(
            [
                pa.array(c["part"][s]),
                pa.array(t[keep], pa.timestamp("ms")),
                pa.array(v[keep] * c["factor"][s]),
            ],
            schema=ROWS,
        )

    def _announce(self, out: Decoded) -> None:
        """New places stored before a sample names them; what they say of their node and device."""
        new, self._new = self._new, []
        fresh, self._fresh = self._fresh, []
        if new and self._register is not None:
            try:
                self._register(new)
            except Exception:
                for _, part in new:  # met again, they are numbered and stored again
                    del self.parts[part]
                self._forget()
                raise
        for p in fresh:
            if p.hostname:
                out.hostnames[p.node] = p.hostname
            if p.inventory:
                out.inventory.setdefault((p.node, p.table, p.device), {}).update(p.inventory)

    def _place(self, key: bytes) -> int:
        """The slot of the series with these label bytes; -1 when they are not labels alone."""
        labels = labels_of(key)
        if labels is None:
            return -1
        place = self._where(labels)
        if place.part >= 0:
            self._fresh.append(place)
        slot = self._slot_of[key] = self._slots.add(place)
        return slot

    def _where(self, labels: dict[str, str]) -> _Series:
        name = labels.pop("__name__", "")
        t = target(name, labels)
        if t is None:
            if not _NAME.fullmatch(name):
                return _Series(refused="no valid __name__ label")
            f = family(name)  # one place for all of a family's series: many, and all alike
            return self._dropped.get(f) or self._dropped.setdefault(f, _Series(dropped=f))
        raw_node = labels.get(self.node_label, "")
        if not raw_node:
            return _Series(refused=f"no {self.node_label} label to name its node")
        node = self._nodes.get(raw_node) or self._nodes.setdefault(
            raw_node, node_of(raw_node, self.strip_port)
        )
        dev = device(t.table, labels)
        if dev is None:
            return _Series(refused=f"{t.table} series without the labels that name its device")
        inventory = tuple((ours, labels[theirs]) for theirs, ours in INVENTORY_LABELS.get(t.table, {}).items()
                          if labels.get(theirs))  # fmt: skip
        # dcgm-exporter says Hostname, the agent's own /metrics hostname.
        hostname = labels.get("Hostname") or labels.get("hostname") or ""
        where = (node, t.table, dev, t.column)
        number = self.parts.get(where)
        if number is None:
            number = self.parts[where] = self._next
            self._next += 1
            self._new.append((number, where))
        return _Series(
            node, t.table, dev, t.column, t.factor, hostname=hostname, inventory=inventory, part=number
        )
