"""Label sets -> places: where a series' samples go (node, table, device, column, unit), each read once.

A place is numbered once (received_parts) and a label set gets a slot: a row of
numpy columns (state, place number, unit factor, node, dropped family) that a
request indexes for all its series at once. Learning new label sets is one
request at a time, and a new place is registered (committed to the store)
before its label set is published: so no sample that names a place reaches the
journal before the store knows that place, whichever request met it first.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ironsight.collector.receive.mapping import INVENTORY_LABELS, device, family, target
from ironsight.collector.receive.wire import labels_of

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_PORT = re.compile(r":\d+$")

Part = tuple[str, str, str, str]  # node, table, device, column: a place samples are stored in
OK, DROPPED, REFUSED = 0, 1, 2  # a slot's state


class Place(NamedTuple):  # a tuple: some 5x cheaper to make than a frozen dataclass, one per new series
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


def node_of(value: str, strip_port: bool) -> str:
    """A node id from an instance label: "gpu-7:9100" -> "gpu-7", "[fe80::1]:9400" -> "fe80::1"."""
    if strip_port and _PORT.search(value):
        value = _PORT.sub("", value)
    return value.removeprefix("[").removesuffix("]") if value.startswith("[") else value


class Slots:
    """Label sets' places by slot, and numpy columns of them. Written under Places' lock; read by any
    request (a reader takes `columns` once, and every slot it knows of is in that copy)."""

    COLUMNS = (("state", np.int8), ("part", np.int32), ("factor", np.float64), ("node", np.int32),
               ("family", np.int32))  # fmt: skip

    def __init__(self) -> None:
        self.places: list[Place] = []
        self.nodes: list[str] = []  # by node number
        self.families: list[str] = []  # dropped families, by number
        self._numbers: dict[tuple[bool, str], int] = {}
        self.columns = {name: np.zeros(1024, dtype) for name, dtype in self.COLUMNS}

    def add(self, place: Place) -> int:
        slot = len(self.places)
        c = self.columns
        if slot == len(c["state"]):
            c = {k: np.concatenate([a, np.zeros_like(a)]) for k, a in c.items()}
        c["state"][slot] = DROPPED if place.dropped else REFUSED if place.refused else OK
        c["part"][slot], c["factor"][slot] = place.part, place.factor
        c["node"][slot] = self._number(False, place.node, self.nodes)
        c["family"][slot] = self._number(True, place.dropped, self.families)
        self.columns = c
        self.places.append(place)
        return slot

    def _number(self, kind: bool, name: str, names: list[str]) -> int:
        number = self._numbers.get((kind, name))
        if number is None:
            number = self._numbers[kind, name] = len(names)
            names.append(name)
        return number


@dataclass
class Known:
    """The label sets met so far: a generation, replaced by an empty one when it holds too many."""

    slot_of: dict[bytes, int] = field(default_factory=dict)  # label bytes -> slot
    slots: Slots = field(default_factory=Slots)
    unreadable: int = -1  # the slot of series whose labels cannot be read

    def __post_init__(self) -> None:
        self.unreadable = self.slots.add(Place(refused="a series whose labels cannot be read"))


@dataclass
class Facts:
    """What new places say of their node and device: hostnames, and inventories by (node, kind, device)."""

    hostnames: dict[str, str] = field(default_factory=dict)
    inventory: dict[tuple[str, str, str], dict[str, str]] = field(default_factory=dict)


class Places:
    """Numbers places and learns label sets for one collector's mapping settings."""

    def __init__(
        self,
        node_label: str,
        strip_port: bool,
        parts: dict[Part, int],
        register: Callable[[list[tuple[int, Part]]], None] | None,
    ) -> None:
        self.node_label, self.strip_port = node_label, strip_port
        self.parts = parts
        self._next = max(parts.values(), default=-1) + 1
        self._register = register
        self._lock = threading.Lock()
        self._dropped: dict[str, Place] = {}  # by family: one place for all of a family's series
        self._nodes: dict[str, str] = {}  # node label value -> node id

    def learn(self, known: Known, keys: list[bytes], facts: Facts) -> list[int]:
        """Slots for these label bytes (-1 where they are not labels alone), learnt and published in known."""
        with self._lock:
            new: list[tuple[int, Part]] = []
            fresh: list[Place] = []
            pending: dict[bytes, int] = {}
            out = []
            for key in keys:
                slot = known.slot_of.get(key, -1)  # another request may have learnt it meanwhile
                if slot < 0:
                    slot = pending.get(key, -1)
                if slot < 0 and (labels := labels_of(key)) is not None:
                    place = self._where(labels, new)
                    slot = pending[key] = known.slots.add(place)
                    if place.part >= 0:
                        fresh.append(place)
                out.append(slot)
            if new and self._register is not None:
                try:
                    self._register(new)
                except Exception:
                    for _, part in new:  # never published: met again, they are numbered and stored again
                        del self.parts[part]
                    raise
            known.slot_of.update(pending)
        for p in fresh:
            if p.hostname:
                facts.hostnames[p.node] = p.hostname
            if p.inventory:
                facts.inventory.setdefault((p.node, p.table, p.device), {}).update(p.inventory)
        return out

    def _where(self, labels: dict[str, str], new: list[tuple[int, Part]]) -> Place:
        name = labels.pop("__name__", "")
        t = target(name, labels)
        if t is None:
            if not _NAME.fullmatch(name):
                return Place(refused="no valid __name__ label")
            f = family(name)
            return self._dropped.get(f) or self._dropped.setdefault(f, Place(dropped=f))
        raw_node = labels.get(self.node_label, "")
        if not raw_node:
            return Place(refused=f"no {self.node_label} label to name its node")
        node = self._nodes.get(raw_node) or self._nodes.setdefault(
            raw_node, node_of(raw_node, self.strip_port)
        )
        dev = device(t.table, labels)
        if dev is None:
            return Place(refused=f"{t.table} series without the labels that name its device")
        inventory = tuple((ours, labels[theirs]) for theirs, ours in INVENTORY_LABELS.get(t.table, {}).items()
                          if labels.get(theirs))  # fmt: skip
        # dcgm-exporter says Hostname, the agent's own /metrics hostname.
        hostname = labels.get("Hostname") or labels.get("hostname") or ""
        where = (node, t.table, dev, t.column)
        number = self.parts.get(where)
        if number is None:
            number = self.parts[where] = self._next
            self._next += 1
            new.append((number, where))
        return Place(
            node, t.table, dev, t.column, t.factor, hostname=hostname, inventory=inventory, part=number
        )
