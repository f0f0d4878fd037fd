"""The collector's /metrics: ingest outcomes, the store, the detector, retention and remote write.

Read from each part's counters at scrape time; nothing here keeps state.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector as PromCollector

from ironsight.collector.detect.findings import KINDS
from ironsight.collector.detect.live import LiveDetector, Status
from ironsight.collector.remote_write.writer import RemoteWriter
from ironsight.collector.retention import Retention
from ironsight.collector.retention import Stats as RetentionStats
from ironsight.collector.server import IngestService
from ironsight.collector.store import Store

Family = type[CounterMetricFamily] | type[GaugeMetricFamily]
# (family, name, help, attribute of the part's stats): the figures that are one number each.
Plain = tuple[tuple[Family, str, str, str], ...]

REMOTE_WRITE: Plain = (
    (
        CounterMetricFamily,
        "ironsight_remote_write_samples_sent",
        "Samples the receiver accepted",
        "samples_sent",
    ),
    (
        CounterMetricFamily,
        "ironsight_remote_write_samples_failed",
        "Samples the receiver refused with a 4xx other than 429 (not retried)",
        "samples_failed",
    ),
    (
        CounterMetricFamily,
        "ironsight_remote_write_values_dropped",
        "Stored values never forwarded: the queue was full while the receiver was unreachable",
        "values_dropped",
    ),
    (CounterMetricFamily, "ironsight_remote_write_requests", "Requests sent", "requests"),
    (
        CounterMetricFamily,
        "ironsight_remote_write_retries",
        "Requests retried after a 5xx, 429 or connection error",
        "retries",
    ),
    (
        CounterMetricFamily,
        "ironsight_remote_write_cpu_seconds",
        "CPU time of the sender thread: encoding, compressing and posting requests",
        "cpu_seconds",
    ),
    (
        GaugeMetricFamily,
        "ironsight_remote_write_queue_values",
        "Stored values not forwarded yet: queued, or in requests being sent",
        "unsent_values",
    ),
    (
        GaugeMetricFamily,
        "ironsight_remote_write_last_success_timestamp_seconds",
        "Unix time of the last accepted request",
        "last_success_unix",
    ),
)
RETENTION: Plain = (
    (CounterMetricFamily, "ironsight_retention_rollup_rows", "One-minute rollup rows written", "rollup_rows"),
    (
        GaugeMetricFamily,
        "ironsight_store_used_bytes",
        "Database space in use (freed space is reused, not returned), the cold tier's files included",
        "used_bytes",
    ),
    (GaugeMetricFamily, "ironsight_store_cold_bytes", "The cold tier's Parquet files", "cold_bytes"),
    (CounterMetricFamily, "ironsight_retention_cold_rows", "Raw rows moved to the cold tier", "cold_rows"),
)
DETECTOR: Plain = (
    (
        GaugeMetricFamily,
        "ironsight_detector_step_seconds",
        "Duration of the last detector step",
        "last_step_seconds",
    ),
    (CounterMetricFamily, "ironsight_detector_steps", "Detector steps run", "steps"),
    (CounterMetricFamily, "ironsight_detector_failures", "Detector steps that failed", "failures"),
)


def _plain(table: Plain, stats: object) -> Iterator[Metric]:
    for family, name, help, attr in table:
        yield family(name, help, value=getattr(stats, attr))


class CollectorMetrics(PromCollector):
    """Every figure of the collector's parts that run (the detector and remote write may not)."""

    def __init__(
        self,
        store: Store,
        ingest: IngestService,
        retention: Retention,
        detector: LiveDetector | None = None,
        writer: RemoteWriter | None = None,
    ) -> None:
        self.store, self.ingest, self.retention = store, ingest, retention
        self.detector, self.writer = detector, writer

    def collect(self) -> Iterator[Metric]:
        yield from self._ingest()
        if self.detector is not None:
            yield from _detector(self.detector.status)
        if self.writer is not None:
            yield from _plain(REMOTE_WRITE, self.writer.stats)
        yield from _retention(self.retention.stats)

    def _ingest(self) -> Iterator[Metric]:
        """The pipeline's health, read from the store's counters."""
        s = self.store.stats
        batches = CounterMetricFamily(
            "ironsight_collector_batches",
            "Batches received, by outcome (stored, duplicate, rejected) and why rejected",
            labels=["outcome", "reason"],
        )
        batches.add_metric(["stored", ""], s.batches_stored)
        batches.add_metric(["duplicate", ""], s.batches_duplicate)
        for reason in ("malformed", "names", "values", "time", "identity"):
            batches.add_metric(["rejected", reason], self.ingest.rejected.get(reason, 0))
        yield batches
        yield CounterMetricFamily("ironsight_collector_rows", "Rows stored", value=s.rows_stored)
        yield CounterMetricFamily("ironsight_collector_store_failures", "Failed commits", value=s.failures)
        seen = GaugeMetricFamily(
            "ironsight_collector_node_last_seen_seconds", "Unix time of the last batch", labels=["node"]
        )
        for node, at in s.node_last_seen.items():
            seen.add_metric([node], at)
        yield seen
        lag = GaugeMetricFamily(
            "ironsight_collector_node_lag_seconds",
            "Now minus the newest sample stored from the node",
            labels=["node"],
        )
        now = time.time()
        for node, newest in s.node_newest_sample_ns.items():
            lag.add_metric([node], now - newest / 1e9)
        yield lag
        offset = GaugeMetricFamily(
            "ironsight_node_clock_offset_seconds",
            "The collector's clock minus the node's, from its batches' send times (beyond 5 s its samples are stored shifted)",
            labels=["node"],
        )
        for node, seconds in sorted(self.ingest.clocks.offsets_s().items()):
            offset.add_metric([node], seconds)
        yield offset
        path = self.store.path
        size = sum(p.stat().st_size for p in (path, path.with_name(path.name + ".wal")) if p.exists())
        yield GaugeMetricFamily("ironsight_collector_store_bytes", "Database file and its WAL", value=size)


# The job a finding hit, as stored (a Slurm job id, namespace/pod, a --job name): never `job`,
# which Prometheus sets to the scrape job.
JOB = "ironsight_job"


def _detector(st: Status) -> Iterator[Metric]:
    """Open findings as ironsight_bottleneck_active, and what the detector's steps cost."""
    active = GaugeMetricFamily(
        "ironsight_bottleneck_active",
        "1 while the detector has an open finding of this kind on this node and device",
        labels=["kind", "node", "device", "severity", JOB],
    )
    since = GaugeMetricFamily(
        "ironsight_bottleneck_since_timestamp_seconds",
        "Unix time an open finding started, with its cause",
        labels=["kind", "node", "device", "cause", JOB],
    )
    evidence = GaugeMetricFamily(
        "ironsight_bottleneck_evidence",
        "An open finding's evidence at its peak step, one series per figure (see docs/detector.md)",
        labels=["kind", "node", "device", "figure", JOB],
    )
    for f in st.open:
        active.add_metric([f.kind, f.node, f.device, f.severity, f.job], 1.0)
        since.add_metric([f.kind, f.node, f.device, f.cause, f.job], f.start.replace(tzinfo=UTC).timestamp())
        for figure, value in f.figures.items():
            evidence.add_metric([f.kind, f.node, f.device, figure, f.job], value)
    yield from (active, since, evidence)
    held = GaugeMetricFamily(
        "ironsight_job_gpus",
        "GPUs each job holds on each node, from the node's last look at its jobs (none for 10 minutes: gone)",
        labels=[JOB, "node"],
    )
    for job, node, gpus in st.jobs:
        held.add_metric([job, node], gpus)
    yield held
    opened = CounterMetricFamily(
        "ironsight_findings_opened", "Findings the live detector opened since start", labels=["kind"]
    )
    for kind in KINDS:
        opened.add_metric([kind], st.opened[kind])
    yield opened
    yield from _plain(DETECTOR, st)


def _retention(s: RetentionStats) -> Iterator[Metric]:
    deleted = CounterMetricFamily(
        "ironsight_retention_deleted_rows",
        "Rows pruned, by why: age (raw), rollup_age, size (the cap)",
        labels=["reason"],
    )
    for reason in ("age", "rollup_age", "size"):
        deleted.add_metric([reason], s.deleted[reason])
    yield deleted
    yield from _plain(RETENTION, s)
