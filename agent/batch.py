"""Accumulates ticks into columnar Batch messages, about one a second, each one the collector will take.

A batch is checked with the collector's own structure check (core.validate.check;
its values are made storable one by one as they are encoded, core.columnar) before
it leaves the batcher: a table that would be refused (a name the kernel allows
but no string can carry, a value out of range) is left out alone, counted by
table and reason and logged once per reason, and the rest of the tick goes on.
The spool never holds a batch the collector refuses, so none is lost for it.
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections import Counter

from ironsight.agent import __version__
from ironsight.agent.clock import TIMELINE
from ironsight.agent.runner import Tick
from ironsight.agent.samplers.base import Paths, read_text
from ironsight.core.columnar import TableBuilder
from ironsight.core.reading import DeviceInfo
from ironsight.core.schema import device_name
from ironsight.core.validate import InvalidBatch, check
from ironsight.v1 import telemetry_pb2 as pb

log = logging.getLogger("ironsight.agent")


def boot_id(paths: Paths) -> str:
    """The kernel's boot id; a fresh random one if the kernel does not say."""
    return read_text(paths.proc("sys", "kernel", "random", "boot_id")) or f"agent-{uuid.uuid4()}"


def node_info(inventory: list[DeviceInfo], paths: Paths, node_id: str = "") -> pb.NodeInfo:
    info = pb.NodeInfo(
        node_id=node_id,
        hostname=socket.gethostname(),
        kernel=read_text(paths.proc("sys", "kernel", "osrelease")) or "",
        agent_version=__version__,
    )
    for d in inventory:
        info.devices.add(kind=d.kind, name=device_name(d.name), attrs=d.attrs)
    return info


class Batcher:
    def __init__(self, node_id: str, boot: str, interval_s: float, first_seq: int | None = None) -> None:
        self.node_id = node_id
        self.boot_id = boot
        self.interval_s = interval_s
        # Sequence numbers start at the time since boot in microseconds, so an
        # agent restarted within one boot never reuses a (node, boot, seq) that
        # the collector would then drop as a duplicate: unlike the wall clock,
        # that clock is never set back.
        self.seq = time.clock_gettime_ns(time.CLOCK_BOOTTIME) // 1000 if first_seq is None else first_seq
        self.builders: dict[str, TableBuilder] = {}
        self.ticks = 0
        self.info = pb.NodeInfo()
        self.refused: Counter[tuple[str, str]] = Counter()  # (table, reason) -> rows left out

    def add(self, tick: Tick) -> None:
        for name, rows in tick.reading.tables.items():
            builder = self.builders.get(name)
            if builder is None:
                builder = self.builders[name] = TableBuilder(name)
            for device, values in rows:
                builder.add(tick.time_ns, device, values)
        self.ticks += 1

    def flush(self) -> pb.Batch | None:
        if not self.ticks:
            return None
        batch = pb.Batch(node_id=self.node_id, boot_id=self.boot_id, seq=self.seq, interval_s=self.interval_s)
        batch.node.CopyFrom(self.info)
        for builder in self.builders.values():
            if len(builder):
                batch.tables.append(builder.to_proto())
        self.seq += 1
        self.builders = {}
        self.ticks = 0
        return self._screened(batch)

    def _screened(self, batch: pb.Batch) -> pb.Batch | None:
        """The batch as the collector will take it: each table it would refuse left out (None: all were)."""
        # Against the agent's own timeline, which its samples are stamped on: how far that is from
        # true time is the collector's to correct (agent.clock), not a reason to leave anything out.
        now = TIMELINE.now_ns()
        try:
            check(batch, now_ns=now)
            return batch
        except InvalidBatch:
            pass
        keep = []
        for table in batch.tables:
            alone = pb.Batch(
                node_id=batch.node_id, boot_id=batch.boot_id, seq=batch.seq, interval_s=batch.interval_s
            )
            alone.tables.append(table)
            try:
                check(alone, now_ns=now)
            except InvalidBatch as exc:
                self._refuse(table, exc)
                continue
            keep.append(table)
        del batch.tables[:]
        batch.tables.extend(keep)
        return batch if keep else None

    def _refuse(self, table: pb.Table, exc: InvalidBatch) -> None:
        key = (table.name, exc.reason)
        if key not in self.refused:
            log.warning(
                "table %s left out of the batch, as the collector would refuse it (%s): %s; counted from now on,"
                " the other tables go on",
                table.name,
                exc.reason,
                exc,
            )
        self.refused[key] += len(table.time_ns)
