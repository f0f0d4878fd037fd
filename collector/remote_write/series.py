"""Stored samples as Prometheus series, under the names and labels the agent's /metrics uses.

Remote write must land the same series a Prometheus scraping the agents
would hold, so that one set of dashboards works on both: each node's samples
are regrouped into ticks and rendered by the agent's own exposition code, with
instance set to the node id (as docs/fleet.md's scrape config does) and the
sample time of each tick.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pyarrow as pa

from ironsight.core.exposition import ReadingCollector, XidHistory
from ironsight.core.reading import DeviceInfo, Reading
from ironsight.v1 import telemetry_pb2 as pb

LabelSet = tuple[tuple[str, str], ...]  # sorted by name, __name__ included
Series = dict[LabelSet, list[tuple[int, float]]]  # (milliseconds, value), oldest first


def readings(tables: Iterable[tuple[str, pa.Table]]) -> dict[tuple[str, int], Reading]:
    """Stored rows (node, device, time, fields) regrouped as each node's ticks, by (node, microseconds)."""
    out: dict[tuple[str, int], Reading] = {}
    for name, table in tables:
        # Microseconds as integers: naive datetimes would be read in the local time zone.
        micros = table.column("time").cast(pa.int64()).to_pylist()
        for us, row in zip(micros, table.drop_columns(["time"]).to_pylist(), strict=True):
            node, device = row.pop("node"), row.pop("device")
            reading = out.get((node, us))
            if reading is None:
                reading = out[(node, us)] = Reading()
            reading.add(name, device, {k: v for k, v in row.items() if v is not None})
    return out


@dataclass
class NodeState:
    hostname: str
    inventory: list[DeviceInfo] = field(default_factory=list)
    xids: XidHistory = field(default_factory=XidHistory)


class SeriesBuilder:
    """Keeps what rendering needs across batches: each node's inventory and XID history."""

    def __init__(self, extra_labels: Mapping[str, str] | None = None, job: str = "ironsight") -> None:
        self.extra = {"job": job, **(extra_labels or {})}
        self.nodes: dict[str, NodeState] = {}

    def learn(self, node_id: str, info: pb.NodeInfo) -> None:
        """A batch carrying the node's inventory (the first of each stream)."""
        devices = [DeviceInfo(d.kind, d.name, dict(d.attrs)) for d in info.devices]
        self.nodes[node_id] = NodeState(info.hostname or node_id, devices, self._node(node_id).xids)

    def _node(self, node_id: str) -> NodeState:
        state = self.nodes.get(node_id)
        if state is None:
            state = self.nodes[node_id] = NodeState(node_id)
        return state

    def add(self, tables: Iterable[tuple[str, pa.Table]], out: Series) -> int:
        """Appends the samples of stored tables (node, device, time, fields) to out; returns how many."""
        ticks = readings(tables)
        count = 0
        for (node, us), reading in sorted(ticks.items(), key=lambda kv: kv[0][1]):
            ms = us // 1000
            state = self._node(node)
            state.xids.add(reading)
            base = {**self.extra, "instance": node}
            for family in ReadingCollector(reading, state.inventory, state.hostname, state.xids).collect():
                for s in family.samples:
                    labels = tuple(sorted({**base, **s.labels, "__name__": s.name}.items()))
                    out.setdefault(labels, []).append((ms, float(s.value)))
                    count += 1
        return count
