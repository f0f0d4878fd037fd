"""ironsight-collector: receive agents' batches over gRPC and store them in a DuckDB file."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector as PromCollector
from prometheus_client.registry import CollectorRegistry

from collector.detect.config import with_overrides
from collector.detect.findings import KINDS
from collector.detect.live import LiveDetector
from collector.server import IngestService, start
from collector.store import Store, StoreLocked
from collector.validate import Limits
from ironsight.flags import listen_address, setup_logging

log = logging.getLogger("ironsight.collector")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ironsight-collector",
        description="Receive telemetry from ironsight agents over gRPC and store it in DuckDB.",
        epilog="example:\n  ironsight-collector --db ./data/ironsight.duckdb --listen 127.0.0.1:7070",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--db", type=Path, default=Path("data/ironsight.duckdb"), help="DuckDB file (created if missing)"
    )
    p.add_argument(
        "--listen",
        type=listen_address,
        default="127.0.0.1:7070",
        help="gRPC HOST:PORT (default 127.0.0.1:7070)",
    )
    p.add_argument("--http-listen", type=listen_address, help="serve /metrics on HOST:PORT (off by default)")
    p.add_argument(
        "--detect-delay",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="judge each detector step this long after it ends, for batches in flight (default 5)",
    )
    p.add_argument("--no-detect", action="store_true", help="do not run the bottleneck detector")
    p.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a detector threshold or window (repeatable; README lists them), e.g. step_s=10",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


class DetectorMetrics(PromCollector):
    """Open findings as ironsight_bottleneck_active, and what the detector's steps cost."""

    def __init__(self, detector: LiveDetector) -> None:
        self.detector = detector

    def collect(self) -> Iterator[Metric]:
        st = self.detector.status
        active = GaugeMetricFamily(
            "ironsight_bottleneck_active",
            "1 while the detector has an open finding of this kind on this node and device",
            labels=["kind", "node", "device", "severity"],
        )
        since = GaugeMetricFamily(
            "ironsight_bottleneck_since_timestamp_seconds",
            "Unix time an open finding started, with its cause",
            labels=["kind", "node", "device", "cause"],
        )
        evidence = GaugeMetricFamily(
            "ironsight_bottleneck_evidence",
            "An open finding's evidence at its peak step, one series per figure (see README)",
            labels=["kind", "node", "device", "figure"],
        )
        for f in st.open:
            active.add_metric([f.kind, f.node, f.device, f.severity], 1.0)
            since.add_metric([f.kind, f.node, f.device, f.cause], f.start.replace(tzinfo=UTC).timestamp())
            for figure, value in f.figures.items():
                evidence.add_metric([f.kind, f.node, f.device, figure], value)
        yield from (active, since, evidence)
        opened = CounterMetricFamily(
            "ironsight_findings_opened", "Findings the live detector opened since start", labels=["kind"]
        )
        for kind in KINDS:
            opened.add_metric([kind], st.opened[kind])
        yield opened
        yield GaugeMetricFamily(
            "ironsight_detector_step_seconds",
            "Duration of the last detector step",
            value=st.last_step_seconds,
        )
        yield CounterMetricFamily("ironsight_detector_steps", "Detector steps run", value=st.steps)
        yield CounterMetricFamily(
            "ironsight_detector_failures", "Detector steps that failed", value=st.failures
        )


class IngestMetrics(PromCollector):
    """The collector's pipeline health, read from the store's counters at scrape time."""

    def __init__(self, store: Store, ingest: IngestService) -> None:
        self.store = store
        self.ingest = ingest

    def collect(self) -> Iterator[Metric]:
        s = self.store.stats
        batches = CounterMetricFamily(
            "ironsight_collector_batches",
            "Batches received, by outcome (stored, duplicate, rejected) and why rejected",
            labels=["outcome", "reason"],
        )
        batches.add_metric(["stored", ""], s.batches_stored)
        batches.add_metric(["duplicate", ""], s.batches_duplicate)
        for reason in ("malformed", "values", "time"):
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
        size = sum(
            p.stat().st_size
            for p in (self.store.path, self.store.path.with_name(self.store.path.name + ".wal"))
            if p.exists()
        )
        yield GaugeMetricFamily("ironsight_collector_store_bytes", "Database file and its WAL", value=size)


async def serve(args: argparse.Namespace) -> int:
    try:
        store = Store(args.db)
    except StoreLocked as exc:
        print(f"ironsight-collector: {exc}", file=sys.stderr)
        return 1
    try:
        collector = await start(store, args.listen, Limits())
    except (OSError, RuntimeError) as exc:
        store.close()
        print(f"ironsight-collector: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return 1
    detector = None
    if not args.no_detect:
        detector = LiveDetector(store.reader(), args.thresholds, args.detect_delay)
        detector.start()
    if args.http_listen:
        from prometheus_client import start_http_server

        registry = CollectorRegistry()
        registry.register(IngestMetrics(store, collector.ingest))
        if detector is not None:
            registry.register(DetectorMetrics(detector))
        host, _, port = args.http_listen.rpartition(":")
        start_http_server(int(port), addr=host, registry=registry)
    log.info("listening on %s (port %d), storing in %s", args.listen, collector.port, args.db)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    await stop.wait()
    log.info("stopping: draining in-flight batches")
    if detector is not None:
        detector.stop()
    await collector.stop()
    s = store.stats
    log.info(
        "stopped after %.0fs: %d batches stored, %d duplicates, %d rows, %d commits",
        time.monotonic() - started,
        s.batches_stored,
        s.batches_duplicate,
        s.rows_stored,
        s.commits,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    try:
        args.thresholds = with_overrides(args.threshold)
    except ValueError as exc:
        p.error(str(exc))
    if args.detect_delay < 0:
        p.error("--detect-delay must be 0 or more seconds")
    setup_logging(args.log_level)
    return asyncio.run(serve(args))


if __name__ == "__main__":
    raise SystemExit(main())
