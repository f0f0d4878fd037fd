"""ironsight-collector: receive agents' batches over gRPC and store them in a DuckDB file."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
import signal
import sys
import time
from collections.abc import Iterator
from datetime import UTC, timedelta
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector as PromCollector
from prometheus_client.registry import CollectorRegistry

from ironsight.collector.database import StoreLocked
from ironsight.collector.detect.findings import KINDS
from ironsight.collector.detect.live import LiveDetector
from ironsight.collector.detect.thresholds import with_overrides
from ironsight.collector.remote_write.writer import Config, ConfigError, RemoteWriter
from ironsight.collector.retention import Policy, Retention
from ironsight.collector.server import IngestService, start
from ironsight.collector.store import Store
from ironsight.collector.validate import Limits
from ironsight.core import config
from ironsight.core.flags import add_logging_args, duration_arg, listen_address, setup_logging
from ironsight.core.systemd import Notifier
from ironsight.core.transport import check_listen, serve_metrics, tls_from

log = logging.getLogger("ironsight.collector")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ironsight-collector",
        description="Receive telemetry from ironsight agents over gRPC and store it in DuckDB.",
        epilog="examples:\n  ironsight-collector --db ./data/ironsight.duckdb --listen 127.0.0.1:7070 --insecure\n"
        "  ironsight-collector --listen 0.0.0.0:7070 --tls-ca pki/ca.pem --tls-cert pki/collector.pem "
        "--tls-key pki/collector.key",
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
    sec = p.add_argument_group("security (mutual TLS; see `ironsight certs`)")
    sec.add_argument(
        "--tls-ca", type=Path, metavar="FILE", help="CA whose certificates agents and CLIs must present"
    )
    sec.add_argument(
        "--tls-cert", type=Path, metavar="FILE", help="the collector's certificate (gRPC and /metrics)"
    )
    sec.add_argument("--tls-key", type=Path, metavar="FILE", help="its private key")
    sec.add_argument(
        "--insecure", action="store_true", help="plaintext instead of TLS (loopback only unless...)"
    )
    sec.add_argument(
        "--allow-remote-insecure",
        action="store_true",
        help="...this too: plaintext on a non-loopback address, readable and writable by anyone who reaches it",
    )
    p.add_argument(
        "--detect-delay",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="judge each detector step this long after it ends, for batches in flight (default 5)",
    )
    p.add_argument("--no-detect", action="store_true", help="do not run the bottleneck detector")
    p.add_argument(
        "--retention-raw", type=duration_arg, default=7 * 86400.0, metavar="DURATION",
        help="keep raw samples this long, e.g. 7d, 36h (default 7d); one-minute rollups stay longer",
    )  # fmt: skip
    p.add_argument(
        "--retention-rollups", type=duration_arg, default=90 * 86400.0, metavar="DURATION",
        help="keep one-minute rollups this long (default 90d)",
    )  # fmt: skip
    p.add_argument(
        "--max-db-bytes", type=int, default=0, metavar="BYTES",
        help="keep the database's used space under this by pruning the oldest raw samples first (default 0: no cap)",
    )  # fmt: skip
    p.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a detector threshold or window (repeatable; README lists them), e.g. step_s=10",
    )
    rw = p.add_argument_group("remote write (forward every stored sample to Prometheus, Mimir, Thanos, ...)")
    rw.add_argument("--remote-write-url", metavar="URL", help="e.g. http://prometheus:9090/api/v1/write")
    rw.add_argument(
        "--remote-write-label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="label added to every forwarded series (repeatable), e.g. cluster=eu1",
    )
    rw.add_argument("--remote-write-bearer-token-file", type=Path, metavar="FILE")
    rw.add_argument("--remote-write-username", default="", metavar="USER", help="basic auth user")
    rw.add_argument("--remote-write-password-file", type=Path, metavar="FILE", help="basic auth password")
    rw.add_argument("--remote-write-ca-file", type=Path, metavar="FILE", help="CA bundle for https URLs")
    rw.add_argument("--remote-write-cert-file", type=Path, metavar="FILE", help="client certificate (mTLS)")
    rw.add_argument("--remote-write-key-file", type=Path, metavar="FILE", help="client certificate's key")
    rw.add_argument(
        "--remote-write-queue-values",
        type=int,
        default=2_000_000,
        metavar="N",
        help="stored values waiting to be sent before the oldest are dropped (default 2000000)",
    )
    add_logging_args(p)
    return p


def remote_write_config(args: argparse.Namespace) -> Config | None:
    if not args.remote_write_url:
        if any(
            v
            for k, v in vars(args).items()
            if k.startswith("remote_write_") and k != "remote_write_queue_values"
        ):
            raise ConfigError("--remote-write-* options need --remote-write-url")
        return None
    labels = {}
    for item in args.remote_write_label:
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", key) or key.startswith("__"):
            raise ConfigError(f"--remote-write-label {item!r}: want NAME=VALUE with a Prometheus label name")
        labels[key] = value
    if args.remote_write_queue_values < 1000:
        raise ConfigError("--remote-write-queue-values must be at least 1000")
    config = Config(
        url=args.remote_write_url,
        labels=labels,
        bearer_token_file=args.remote_write_bearer_token_file,
        username=args.remote_write_username,
        password_file=args.remote_write_password_file,
        ca_file=args.remote_write_ca_file,
        cert_file=args.remote_write_cert_file,
        key_file=args.remote_write_key_file,
        queue_values=args.remote_write_queue_values,
    )
    config.check()
    return config


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


class RemoteWriteMetrics(PromCollector):
    def __init__(self, writer: RemoteWriter) -> None:
        self.writer = writer

    def collect(self) -> Iterator[Metric]:
        s = self.writer.stats
        yield CounterMetricFamily(
            "ironsight_remote_write_samples_sent", "Samples the receiver accepted", value=s.samples_sent
        )
        yield CounterMetricFamily(
            "ironsight_remote_write_samples_failed",
            "Samples the receiver refused with a 4xx other than 429 (not retried)",
            value=s.samples_failed,
        )
        yield CounterMetricFamily(
            "ironsight_remote_write_values_dropped",
            "Stored values never forwarded: the queue was full while the receiver was unreachable",
            value=s.values_dropped,
        )
        yield CounterMetricFamily("ironsight_remote_write_requests", "Requests sent", value=s.requests)
        yield CounterMetricFamily(
            "ironsight_remote_write_retries",
            "Requests retried after a 5xx, 429 or connection error",
            value=s.retries,
        )
        yield GaugeMetricFamily(
            "ironsight_remote_write_queue_values",
            "Stored values waiting to be forwarded",
            value=s.queued_values,
        )
        yield GaugeMetricFamily(
            "ironsight_remote_write_last_success_timestamp_seconds",
            "Unix time of the last accepted request",
            value=s.last_success_unix,
        )


class RetentionMetrics(PromCollector):
    def __init__(self, retention: Retention) -> None:
        self.retention = retention

    def collect(self) -> Iterator[Metric]:
        s = self.retention.stats
        deleted = CounterMetricFamily(
            "ironsight_retention_deleted_rows", "Rows pruned, by why: age (raw), rollup_age, size (the cap)",
            labels=["reason"],
        )  # fmt: skip
        for reason in ("age", "rollup_age", "size"):
            deleted.add_metric([reason], s.deleted[reason])
        yield deleted
        yield CounterMetricFamily(
            "ironsight_retention_rollup_rows", "One-minute rollup rows written", value=s.rollup_rows
        )
        yield GaugeMetricFamily(
            "ironsight_store_used_bytes", "Database space in use (freed space is reused, not returned)",
            value=s.used_bytes,
        )  # fmt: skip


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
        for reason in ("malformed", "values", "time", "identity"):
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


async def systemd_pings(notifier: Notifier, store: Store, stop: asyncio.Event) -> None:
    """Watchdog pings while the event loop turns and the store's writer lives; a status line every 10 s."""
    if not notifier.enabled:
        return
    every = min(notifier.watchdog_s or 10.0, 1.0)
    last_status = time.monotonic()
    while not stop.is_set():
        if store.writer_alive():
            notifier.watchdog()
        if time.monotonic() - last_status >= 10:
            last_status = time.monotonic()
            s = store.stats
            notifier.status(
                f"{s.batches_stored} batches stored from {len(s.node_last_seen)} nodes"
                + (f"; store failing: {s.last_error}" if s.last_error else "")
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


async def serve(args: argparse.Namespace) -> int:
    # Before the port opens: a SIGTERM as soon as it accepts must still stop gracefully.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        store = Store(args.db)
    except StoreLocked as exc:
        print(f"ironsight-collector: {exc}", file=sys.stderr)
        return 1
    try:
        collector = await start(store, args.listen, Limits(), args.tls)
    except (OSError, RuntimeError) as exc:
        store.close()
        print(f"ironsight-collector: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return 1
    writer = None
    if args.remote_write is not None:
        writer = RemoteWriter(args.remote_write)
        writer.start()
        store.ingester.forward = writer.submit
        log.info("forwarding stored samples to %s", args.remote_write.url)
    detector = None
    if not args.no_detect:
        detector = LiveDetector(store.reader(), args.thresholds, args.detect_delay)
        detector.start()
    retention = Retention(store.reader(), args.retention)
    retention.start()
    if args.http_listen:
        registry = CollectorRegistry()
        registry.register(IngestMetrics(store, collector.ingest))
        if detector is not None:
            registry.register(DetectorMetrics(detector))
        if writer is not None:
            registry.register(RemoteWriteMetrics(writer))
        registry.register(RetentionMetrics(retention))
        serve_metrics(args.http_listen, registry, args.tls)
    loop.add_signal_handler(signal.SIGHUP, reload, args, detector)
    log.info("listening on %s (port %d), storing in %s", args.listen, collector.port, args.db)
    started = time.monotonic()
    notifier = Notifier()
    notifier.ready(f"listening on {args.listen}, storing in {args.db}")
    pings = asyncio.create_task(systemd_pings(notifier, store, stop))
    await stop.wait()
    await pings
    notifier.stopping("stopping: draining in-flight batches")
    log.info("stopping: draining in-flight batches")
    if detector is not None:
        detector.stop(0)
    retention.stop(0, join_s=30)
    await collector.stop()
    if writer is not None:
        writer.stop()
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


def load(argv: list[str] | None) -> argparse.Namespace:
    """Flags, environment and file, checked; exits 2 with one line when they do not hold."""
    p = parser()
    args = config.parse(p, argv, Path("/etc/ironsight/collector.toml"), "IRONSIGHT_COLLECTOR_")
    try:
        args.thresholds = with_overrides(args.threshold)
        args.remote_write = remote_write_config(args)
        args.tls = tls_from(args.tls_ca, args.tls_cert, args.tls_key)
        check_listen(args.listen, args.tls, args.insecure, args.allow_remote_insecure, "gRPC")
        if args.http_listen:
            check_listen(args.http_listen, args.tls, args.insecure, args.allow_remote_insecure, "/metrics")
    except ValueError as exc:
        p.error(str(exc))
    if args.detect_delay < 0:
        p.error("--detect-delay must be 0 or more seconds")
    if args.retention_raw < 600 or args.retention_rollups < args.retention_raw or args.max_db_bytes < 0:
        p.error(
            "--retention-raw must be at least 10m, --retention-rollups at least as long, --max-db-bytes >= 0"
        )
    args.retention = Policy(
        timedelta(seconds=args.retention_raw), timedelta(seconds=args.retention_rollups), args.max_db_bytes
    )
    args.argv = argv
    return args


def reload(args: argparse.Namespace, detector: LiveDetector | None) -> None:
    """SIGHUP: the detector's thresholds change in place (from its next step); the rest at a restart."""
    try:
        new = load(args.argv)
    except SystemExit:  # argparse has printed its one line
        log.error("reload: the configuration does not hold (see above); keeping the running one")
        return
    # Thresholds come from the `threshold` flags; remote_write and tls from flags compared themselves.
    live, changed = config.changes(
        args, new, lambda k: k == "thresholds", ignore=("threshold", "remote_write", "tls")
    )
    if live:
        old_t, new_t = vars(args.thresholds), vars(new.thresholds)
        diff = ", ".join(f"{k} {old_t[k]} -> {v}" for k, v in new_t.items() if old_t[k] != v)
        args.thresholds = new.thresholds
        if detector is not None:
            detector.t = new.thresholds
        log.info("reload: thresholds %s", diff)
    elif not changed:
        log.info("reload: nothing changed")
    for key in changed:
        log.warning("reload: %s changed; it takes effect at the next restart", key)


def main(argv: list[str] | None = None) -> int:
    args = load(argv)
    if args.check_config:
        print(f"ironsight-collector: configuration OK ({args.config_file or 'flags and environment only'})")
        return 0
    setup_logging(args.log_level, args.log_format)
    return asyncio.run(serve(args))


if __name__ == "__main__":
    raise SystemExit(main())
