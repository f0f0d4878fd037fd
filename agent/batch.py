"""Accumulates ticks into columnar Batch messages, about one a second."""

from __future__ import annotations

import socket
import time
import uuid

from ironsight.agent import __version__
from ironsight.agent.runner import Tick
from ironsight.agent.samplers.base import Paths, read_text
from ironsight.core.columnar import TableBuilder
from ironsight.core.reading import DeviceInfo
from ironsight.v1 import telemetry_pb2 as pb


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
        info.devices.add(kind=d.kind, name=d.name, attrs=d.attrs)
    return info


class Batcher:
    def __init__(self, node_id: str, boot: str, interval_s: float, first_seq: int | None = None) -> None:
        self.node_id = node_id
        self.boot_id = boot
        self.interval_s = interval_s
        # Sequence numbers start at the agent's start time in microseconds, so an
        # agent restarted within one boot never reuses a (node, boot, seq) that
        # the collector would then drop as a duplicate.
        self.seq = time.time_ns() // 1000 if first_seq is None else first_seq
        self.builders: dict[str, TableBuilder] = {}
        self.ticks = 0
        self.info = pb.NodeInfo()

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
        return batch
