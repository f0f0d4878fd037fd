"""Which batches are stored already, by (node, boot id, seq), mostly without asking the database.

Asking the batches table for every commit group (a join of the group's keys
with every key stored) took 24 ms of wall time of each 165 ms commit of 256
batches in bench/run.py fleet-ingest (median; register, plan, join, under
the interpreter lock the gRPC loop wants too), and 3.8 ms of DuckDB on a day
of 128 nodes' keys (11 M); from memory it is 0.11 ms. An agent numbers its
batches 1, 2, 3, ... per boot and resends in that order, so each stream's
stored numbers are a run from some floor up, plus a few above a gap (a
refused batch): that is what is kept here, a few numbers a stream, and the
table is asked only about streams new since start and numbers below their
floor.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

Key = tuple[str, str, int]  # node, boot id, seq
MAX_ABOVE = 1024  # numbers kept above a gap; past that the floor moves up to the lowest of them
RECENT = 16  # commits whose keys are kept for committed_since (a group read ahead is one or two behind)
MAX_STREAMS = 100_000  # (node, boot) pairs kept; past that all are forgotten and asked again as new


@dataclass
class _Stream:
    """Stored: every number from floor to top, those in above; not stored: any other from floor up."""

    floor: int
    top: int  # floor - 1: none of the run yet
    above: set[int] = field(default_factory=set)

    def has(self, seq: int) -> bool:
        return self.floor <= seq <= self.top or seq in self.above

    def add(self, seq: int) -> None:
        if seq < self.floor or seq <= self.top:
            return
        if seq != self.top + 1:
            self.above.add(seq)
            if len(self.above) > MAX_ABOVE:  # a gap nobody fills: forget what lies below the rest
                self.floor = min(self.above)
                self.top = self.floor - 1
                self._extend()
            return
        self.top = seq
        self._extend()

    def _extend(self) -> None:
        while self.top + 1 in self.above:
            self.top += 1
            self.above.discard(self.top)


class Seen:
    """The stored keys of each stream seen since start, from its first number asked upward."""

    def __init__(self) -> None:
        self._streams: dict[tuple[str, str], _Stream] = {}
        # The store reads a group (asks here) while the one before it commits (adds here): one at a time,
        # so a stream learnt from the table never misses a commit that lands between the two.
        self._lock = threading.Lock()
        self.generation = 0  # commits added so far
        self._recent: deque[tuple[int, frozenset[Key]]] = deque(maxlen=RECENT)

    def stored(self, con: Any, keys: list[Key]) -> set[Key]:
        """Which of keys are in the batches table (con: inside the group's transaction, or not)."""
        return self.stored_as_of(con, keys)[0]

    def stored_as_of(self, con: Any, keys: list[Key]) -> tuple[set[Key], int]:
        """Which of keys are stored, and the generation that answer holds for: what committed_since()
        adds to it later is what committed in between."""
        with self._lock:
            return self._stored(con, keys), self.generation

    def committed_since(self, generation: int) -> frozenset[Key] | None:
        """The keys added after that generation; None if it is older than what is kept (ask again)."""
        with self._lock:
            if generation == self.generation:
                return frozenset()
            if not self._recent or self._recent[0][0] > generation + 1:
                return None
            return frozenset().union(*(keys for g, keys in self._recent if g > generation))

    def _stored(self, con: Any, keys: list[Key]) -> set[Key]:
        new = self._floors(keys)
        if new and len(self._streams) + len(new) > MAX_STREAMS:  # boots of long ago pile up: start again
            self._streams = {}
            new = self._floors(keys)
        if new:
            self._learn(con, new)
        found, ask = set(), []
        for key in keys:
            stream = self._streams[(key[0], key[1])]
            if key[2] < stream.floor:  # older than what is kept: the table says
                ask.append(key)
            elif stream.has(key[2]):
                found.add(key)
        return found | (_lookup(con, ask) if ask else set())

    def add(self, keys: Iterable[Key]) -> None:
        """Keys committed to the batches table (never before the commit: a failed one stored nothing)."""
        listed = list(keys)  # in commit order: a stream's numbers mostly extend its run, not its gaps
        added = frozenset(listed)
        with self._lock:
            for node, boot, seq in listed:
                stream = self._streams.get((node, boot))
                if stream is not None:
                    stream.add(seq)
            self.generation += 1
            self._recent.append((self.generation, added))

    def _floors(self, keys: list[Key]) -> dict[tuple[str, str], int]:
        """The streams among keys not kept yet, each with its lowest number asked (its floor)."""
        new: dict[tuple[str, str], int] = {}
        for node, boot, seq in keys:
            if (node, boot) not in self._streams:
                new[(node, boot)] = min(seq, new.get((node, boot), seq))
        return new

    def _learn(self, con: Any, floors: dict[tuple[str, str], int]) -> None:
        """New streams: their stored numbers from each one's floor up, in one query."""
        pairs = pa.table({
            "node": [p[0] for p in floors], "boot_id": [p[1] for p in floors],
            "floor": pa.array(list(floors.values()), pa.uint64()),
        })  # fmt: skip
        con.register("seen_streams", pairs)
        try:
            rows = con.execute(
                "SELECT b.node, b.boot_id, b.seq FROM batches b JOIN seen_streams s USING (node, boot_id) "
                "WHERE b.seq >= s.floor ORDER BY b.seq"
            ).fetchall()
        finally:
            con.unregister("seen_streams")
        for pair, floor in floors.items():
            self._streams[pair] = _Stream(floor, floor - 1)
        for node, boot, seq in rows:
            self._streams[(node, boot)].add(int(seq))


def _lookup(con: Any, keys: list[Key]) -> set[Key]:
    """One join for these keys: which are stored."""
    table = pa.table({
        "node": [k[0] for k in keys], "boot_id": [k[1] for k in keys],
        "seq": pa.array([k[2] for k in keys], pa.uint64()),
    })  # fmt: skip
    con.register("incoming_keys", table)
    try:
        rows = con.execute(
            "SELECT k.node, k.boot_id, k.seq FROM incoming_keys k JOIN batches b USING (node, boot_id, seq)"
        ).fetchall()
    finally:
        con.unregister("incoming_keys")
    return {(r[0], r[1], int(r[2])) for r in rows}
