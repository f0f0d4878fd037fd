"""The agent's /metrics endpoint: what the last tick read, under node_exporter and dcgm-exporter names.

A scrape never samples: the loop hands each tick here (one assignment), and
a scrape renders the newest one, plus the agent's own figures under
ironsight_agent_. So Prometheus at any scrape interval costs no hardware reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from ironsight.agent.batch import Batcher
from ironsight.agent.runner import Tick
from ironsight.core.exposition import ReadingCollector, XidHistory
from ironsight.core.reading import DeviceInfo, Owners
from ironsight.core.transport import Tls, serve_metrics


class Latest(Collector):
    def __init__(self, hostname: str, sender: Any = None, batcher: Batcher | None = None) -> None:
        self.hostname = hostname
        self.sender = sender  # ironsight.agent.stream.Sender, when streaming
        self.batcher = batcher
        self.tick: Tick | None = None
        self.inventory: list[DeviceInfo] = []
        self.ticks = 0
        self.xids = XidHistory()
        self.owners: Owners | None = None  # the last look at who owns each GPU (every few seconds)

    def update(self, tick: Tick, inventory: list[DeviceInfo]) -> None:
        # Called from the sampling loop: keep it to assignments.
        self.tick, self.inventory = tick, inventory
        self.ticks += 1
        self.xids.add(tick.reading)  # usually no rows
        if tick.reading.owners is not None:
            self.owners = tick.reading.owners

    def collect(self) -> Iterator[Metric]:
        tick = self.tick
        if tick is not None:
            yield from ReadingCollector(
                tick.reading, self.inventory, self.hostname, self.xids, self.owners
            ).collect()
            yield GaugeMetricFamily(
                "ironsight_agent_last_sample_timestamp_seconds",
                "Unix time of the sample these figures come from",
                value=tick.time_ns / 1e9,
            )
        yield CounterMetricFamily("ironsight_agent_ticks", "Sampling ticks since start", value=self.ticks)
        if self.batcher is not None:
            refused = CounterMetricFamily(
                "ironsight_agent_rows_refused",
                "Rows left out of batches because the collector would refuse their table, by table and reason",
                labels=["table", "reason"],
            )
            for (table, reason), rows in sorted(self.batcher.refused.items()):
                refused.add_metric([table, reason], rows)
            yield refused
        s = self.sender
        if s is not None:
            yield CounterMetricFamily(
                "ironsight_agent_batches_sent", "Batches the collector acknowledged", value=s.acked
            )
            yield CounterMetricFamily(
                "ironsight_agent_batches_dropped", "Batches dropped from a full backlog", value=s.dropped
            )
            yield GaugeMetricFamily(
                "ironsight_agent_backlog_batches", "Batches waiting to be acknowledged", value=s.pending()
            )
            rejected = CounterMetricFamily(
                "ironsight_agent_batches_rejected",
                "Batches the collector refused, moved to the quarantine folder, by the collector's reason",
                labels=["reason"],
            )
            for reason, count in sorted(s.quarantine.rejected.items()):
                rejected.add_metric([reason], count)
            yield rejected
            yield CounterMetricFamily(
                "ironsight_agent_reconnects", "Times the stream to the collector was re-established",
                value=s.reconnects,
            )  # fmt: skip


def serve(listen: str, latest: Latest, tls: Tls | None = None) -> Any:
    """Starts the HTTP server on a daemon thread; returns it (shutdown() stops it)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(latest)
    return serve_metrics(listen, registry, tls)
