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

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np
import pyarrow as pa

from ironsight.collector.receive.places import DROPPED, OK, REFUSED, Facts, Known, Part, Places, node_of
from ironsight.collector.receive.wire import (
    STALE_NAN,
    BadRequest,
    Kept,
    Wire,
    kept,
    parse,
    samples_of,
    show,
    whole,
)

__all__ = ["STALE_NAN", "BadRequest", "Decoded", "Decoder", "Kept", "Part", "node_of"]

CACHE_SERIES = 1_000_000  # label sets remembered; past it a new generation starts

ROWS = pa.schema([("part", pa.int32()), ("time", pa.timestamp("ms")), ("value", pa.float64())])


@dataclass
class Decoded:
    """What a request carried: the samples to store as three arrays (a place number, milliseconds, the value
    in ironsight's unit), and what was left and why."""

    part: np.ndarray = field(default_factory=lambda: np.empty(0, np.int32))
    time_ms: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    value: np.ndarray = field(default_factory=lambda: np.empty(0, np.float64))
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

    @property
    def stored(self) -> int:
        return len(self.part)

    @property
    def rows(self) -> pa.Table:
        """The samples to store as a table: part, time, value."""
        return pa.table([self.part, self.time_ms.astype("datetime64[ms]"), self.value], schema=ROWS)


class Decoder:
    """Remembers each label set's place, across requests, for one collector's mapping settings. Requests
    may be decoded at once from several threads: only learning new label sets takes a lock."""

    def __init__(
        self,
        node_label: str = "instance",
        strip_port: bool = True,
        parts: dict[Part, int] | None = None,
        register: Callable[[list[tuple[int, Part]]], None] | None = None,
    ) -> None:
        """parts: the places numbered so far (received_parts); register(new): stores new ones, committed,
        before any sample names them."""
        self.places = Places(node_label, strip_port, dict(parts or {}), register)
        self._known = Known()

    @property
    def parts(self) -> dict[Part, int]:
        return self.places.parts

    def decode(self, body: bytes, allowed: Callable[[str], bool]) -> Decoded:
        """The request's samples; allowed(node) says whether the sender may write for that node."""
        wire = Wire.of(parse(body).timeseries)
        if len(self._known.slot_of) >= CACHE_SERIES:
            self._known = Known()
        known = self._known  # this request's generation, whatever happens to it meanwhile
        facts = Facts()
        keys = wire.keys()
        slot = self._slots(known, keys, facts, wire.tails > 0)  # the rest: parsed whole below
        one = np.flatnonzero(slot >= 0)
        counts = np.ones(len(keys), np.int64)
        t, v = wire.last_samples(one)
        which = one  # the series each sample is of
        rest = np.flatnonzero(slot < 0)
        if len(rest):  # several samples, another encoding, or not labels alone: parsed whole
            slot[rest], counts[rest], blobs = self._whole(known, wire.series, rest, facts)
            t2, v2 = samples_of(blobs)
            t, v = np.concatenate([t, t2]), np.concatenate([v, v2])
            which = np.concatenate([one, np.repeat(rest, counts[rest])])
        out = Decoded(samples=len(t), hostnames=facts.hostnames, inventory=facts.inventory)
        ok = self._series(known, wire.series, slot, counts, allowed, out)
        self._rows(known, slot, ok, which, t, v, out)
        return out

    def _whole(
        self, known: Known, series: Sequence[bytes], rest: np.ndarray, facts: Facts
    ) -> tuple[np.ndarray, np.ndarray, list[bytes]]:
        """These series parsed message by message: their slots, sample counts and samples' bytes."""
        keys, counts, blobs = [], [], []
        for i in rest.tolist():
            key, samples = whole(series[i])
            keys.append(key)
            counts.append(len(samples))
            blobs.extend(samples)
        slots = self._slots(known, keys, facts, np.ones(len(keys), bool))
        slots[slots < 0] = known.unreadable
        return slots, np.array(counts, np.int64), blobs

    def _slots(self, known: Known, keys: list[bytes], facts: Facts, wanted: np.ndarray) -> np.ndarray:
        """The slot of each wanted key (-1 for the others): looked up, and those met for the first time
        learnt (-1 where the bytes are not labels alone)."""
        slot = np.fromiter(map(known.slot_of.get, keys, repeat(-1)), np.int64, len(keys))
        slot[~wanted] = -1  # whatever their bytes name (b"" for a series not of the one-sample shape)
        new = np.flatnonzero((slot < 0) & wanted)
        if len(new):
            slot[new] = self.places.learn(known, [keys[i] for i in new.tolist()], facts)
        return slot

    @staticmethod
    def _series(
        known: Known, series: Sequence[bytes], slot: np.ndarray, counts: np.ndarray,
        allowed: Callable[[str], bool], out: Decoded,
    ) -> np.ndarray:  # fmt: skip
        """Per series, whether it is stored: families without a column counted, refusals said and kept."""
        c = known.slots.columns
        state, node = c["state"][slot], c["node"][slot]
        dropped = state == DROPPED
        if dropped.any():
            per_family = np.bincount(c["family"][slot[dropped]], weights=counts[dropped])
            for f in np.flatnonzero(per_family).tolist():
                out.dropped[known.slots.families[f]] += int(per_family[f])
        ok: np.ndarray = state == OK
        denied: dict[int, str] = {}
        for k in _distinct(node[ok]):  # allowed(node), asked once a node
            if not allowed(name := known.slots.nodes[k]):
                denied[k] = f"this sender may not write for instance {name!r}"
        if denied:
            ok &= ~np.isin(node, list(denied))
        for i in np.flatnonzero((state == REFUSED) | ((state == OK) & ~ok)).tolist():
            why = known.slots.places[slot[i]].refused or denied[int(node[i])]
            shown = show(series[i])
            out.refused.append(f"{shown}: {why}")
            out.kept.extend(kept(series[i], why, shown))
        out.series = int(ok.sum())
        return ok

    @staticmethod
    def _rows(
        known: Known, slot: np.ndarray, ok: np.ndarray, which: np.ndarray, t: np.ndarray, v: np.ndarray,
        out: Decoded,
    ) -> None:  # fmt: skip
        """The stored series' samples, but for staleness markers; a series with a value that is not finite
        is refused whole."""
        keep = ok[which] & (v.view(np.uint64) != STALE_NAN)
        bad = keep & ~np.isfinite(v)
        if bad.any():
            for i in np.unique(which[bad]).tolist():
                p = known.slots.places[slot[i]]
                shown = f"{p.node} {p.table}.{p.column} {p.device!r}"
                out.refused.append(f"{shown}: a value that is not finite")
                mine = which == i
                out.kept.extend(("a value that is not finite", shown, int(when), float(value))
                                for when, value in zip(t[mine], v[mine], strict=True))  # fmt: skip
            keep &= ~np.isin(which, which[bad])
        if not keep.any():
            return
        c = known.slots.columns
        s = slot[which[keep]]
        out.nodes = {known.slots.nodes[k] for k in _distinct(c["node"][s])}
        out.part, out.time_ms, out.value = c["part"][s], t[keep], v[keep] * c["factor"][s]


def _distinct(small: np.ndarray) -> list[int]:
    """The distinct values of an array of small non-negative ints (node numbers): cheaper than np.unique."""
    return np.flatnonzero(np.bincount(small)).tolist() if len(small) else []
