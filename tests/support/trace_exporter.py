"""A simulated node's /metrics, as its agent would serve them: each tick once the wall clock reaches it.

Feeds the agent's own Latest and HTTP server from a trace, so a real
Prometheus scrapes series (GPM, NVLink, RDMA congestion, throttle time) no
NVML double or this VM can produce, and counters advance between scrapes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from ironsight.agent.metrics import Latest, serve
from ironsight.agent.runner import Tick
from ironsight.collector.remote_write.series import readings
from ironsight.core.columnar import to_arrow
from ironsight.core.reading import DeviceInfo
from ironsight.v1 import telemetry_pb2 as pb


def ticks(node: str, batches: Iterable[pb.Batch]) -> list[Tick]:
    """The node's samples regrouped into ticks, oldest first."""
    tables = [(t.name, to_arrow(node, t)) for b in batches if b.node_id == node for t in b.tables]
    by_time = readings(tables)
    return [Tick(us * 1000, by_time[(n, us)]) for n, us in sorted(by_time)]


class TraceExporter:
    def __init__(self, header: pb.TraceHeader, batches: list[pb.Batch], node: str, listen: str) -> None:
        info = next(n for n in header.nodes if n.node_id == node)
        self.inventory = [DeviceInfo(d.kind, d.name, dict(d.attrs)) for d in info.devices]
        self.ticks = ticks(node, batches)
        self.latest = Latest(info.hostname)
        self.server: Any = serve(listen, self.latest)
        self._stop = threading.Event()
        self._next = 0
        self.advance()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def advance(self) -> None:
        now = time.time_ns()
        while self._next < len(self.ticks) and self.ticks[self._next].time_ns <= now:
            self.latest.update(self.ticks[self._next], self.inventory)
            self._next += 1

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.advance()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.server.shutdown()
