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
from ironsight.agent.once import log_once
from ironsight.agent.runner import Tick
from ironsight.agent.samplers.base import Paths, read_text
from ironsight.core.columnar import TableBuilder
from ironsight.core.reading import DeviceInfo, Owners
from ironsight.core.schema import device_name
from ironsight.core.validate import InvalidBatch, check, ownership_problem
from ironsight.v1 import telemetry_pb2 as pb

log = logging.getLogger("ironsight.agent")


# Who owns each GPU is sent when it changes and at least this often, so a collector that
# started (or lost its memory of it) meanwhile learns it within a minute.
OWNERS_EVERY_NS = 60 * 10**9


def ownership_message(time_ns: int, owners: Owners) -> pb.Ownership:
    msg = pb.Ownership(time_ns=time_ns, gpus=list(owners.gpus))
    for o in owners.jobs:
        msg.jobs.add(gpu=o.gpu, job=o.job, source=o.source, attrs=dict(o.attrs))
    for p in owners.processes:
        msg.processes.add(
            gpu=p.gpu,
            pid=p.pid,
            name=p.name,
            job=p.job,
            used_memory_bytes=-1 if p.used_memory_bytes is None else p.used_memory_bytes,
            sm_util_percent=float("nan") if p.sm_util_percent is None else p.sm_util_percent,
        )
    return msg


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
        self._owners: tuple[int, Owners] | None = None  # the latest look at who owns each GPU, unsent
        self._owners_sent: tuple[object, int] = ((), -OWNERS_EVERY_NS)  # what was sent last, and when

    def add(self, tick: Tick) -> None:
        for name, rows in tick.reading.tables.items():
            builder = self.builders.get(name)
            if builder is None:
                builder = self.builders[name] = TableBuilder(name)
            for device, values in rows:
                builder.add(tick.time_ns, device, values)
        if tick.reading.owners is not None:
            self._owners = (tick.time_ns, tick.reading.owners)
        self.ticks += 1

    def flush(self) -> pb.Batch | None:
        if not self.ticks:
            return None
        batch = pb.Batch(node_id=self.node_id, boot_id=self.boot_id, seq=self.seq, interval_s=self.interval_s)
        batch.node.CopyFrom(self.info)
        for builder in self.builders.values():
            if len(builder):
                batch.tables.append(builder.to_proto())
        sending: tuple[object, int] | None = None
        if self._owners is not None:
            time_ns, owners = self._owners
            sent_key, sent_ns = self._owners_sent
            if owners.key() != sent_key or time_ns - sent_ns >= OWNERS_EVERY_NS:
                batch.ownership.CopyFrom(ownership_message(time_ns, owners))
                sending = (owners.key(), time_ns)
            self._owners = None
        self.seq += 1
        self.builders = {}
        self.ticks = 0
        screened = self._screened(batch)
        if screened is not None and sending is not None and screened.HasField("ownership"):
            self._owners_sent = sending
        return screened

    def _screened(self, batch: pb.Batch) -> pb.Batch | None:
        """The batch as the collector will take it: each table it would refuse left out (None: all were)."""
        # Against the agent's own timeline, which its samples are stamped on: how far that is from
        # true time is the collector's to correct (agent.clock), not a reason to leave anything out.
        now = TIMELINE.now_ns()
        if batch.HasField("ownership") and (problem := ownership_problem(batch.ownership, now)) is not None:
            # The look is the agent's own reading, taken again in a few seconds: it is not kept,
            # but counted beside the refused tables (ironsight_agent_rows_refused_total) and said once.
            log_once(
                "batch.ownership",
                f"job ownership left out of the batch, as the collector would refuse it: {problem};"
                " counted from now on, the samples go on",
                logging.WARNING,
            )
            self.refused[("ownership", "malformed")] += 1
            batch.ClearField("ownership")
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
