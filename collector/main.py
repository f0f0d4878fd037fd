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
from datetime import timedelta
from pathlib import Path

from prometheus_client.registry import CollectorRegistry

from ironsight.collector import runtime
from ironsight.collector.database import StoreLocked
from ironsight.collector.detect.live import LiveDetector
from ironsight.collector.detect.thresholds import with_overrides
from ironsight.collector.flags import parser, remote_write_config
from ironsight.collector.metrics import CollectorMetrics
from ironsight.collector.promql.api import Api
from ironsight.collector.promql.head import Head
from ironsight.collector.receive import senders
from ironsight.collector.receive.decode import Decoder
from ironsight.collector.receive.endpoint import Receiver
from ironsight.collector.receive.metrics import ReceiverMetrics
from ironsight.collector.receive.staging import Staging, journal_of
from ironsight.collector.remote_write.writer import RemoteWriter
from ironsight.collector.retention import Policy, Retention
from ironsight.collector.server import start
from ironsight.collector.store import Store
from ironsight.core import config
from ironsight.core.flags import setup_logging
from ironsight.core.systemd import Notifier
from ironsight.core.transport import check_listen, serve_http, serve_metrics, tls_from
from ironsight.core.validate import Limits

log = logging.getLogger("ironsight.collector")


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
    # A port taken after the gRPC one opened: said in one line, then the same orderly stop as a SIGTERM
    # (threads joined, the gRPC server stopped, the file closed), never a traceback.
    failed = ""
    try:
        receiver = _receiver(args, store)
    except OSError as exc:
        receiver, failed = None, f"cannot listen for remote write on {args.remote_write_listen}: {exc}"
    detector = None
    if not args.no_detect:
        # Received rows are stored only once settled: the detector waits that much longer.
        delay = args.detect_delay + (args.remote_write_settle if receiver is not None else 0)
        detector = LiveDetector(store.reader(), args.thresholds, delay)
        detector.start()
    retention = Retention(store.reader(), args.retention, db_path=store.path, changes=store.changes)
    retention.start()
    if args.http_listen and not failed:
        registry = CollectorRegistry()
        registry.register(CollectorMetrics(store, collector.ingest, retention, detector, writer))
        if receiver is not None:
            registry.register(ReceiverMetrics(receiver))
        try:
            _serve_http(args, store, registry)
        except OSError as exc:
            failed = f"cannot listen for HTTP on {args.http_listen}: {exc}"
    if failed:
        print(f"ironsight-collector: {failed}", file=sys.stderr)
        stop.set()
    loop.add_signal_handler(signal.SIGHUP, reload, args, detector)
    started = time.monotonic()
    notifier = Notifier()
    if not failed:
        log.info("listening on %s (port %d), storing in %s", args.listen, collector.port, args.db)
        notifier.ready(f"listening on {args.listen}, storing in {args.db}")
        runtime.started()
    pings = asyncio.create_task(systemd_pings(notifier, store, stop))
    await stop.wait()
    await pings
    notifier.stopping("stopping: draining in-flight batches")
    log.info("stopping: draining in-flight batches")
    if detector is not None:
        detector.stop(0)
    retention.stop(0, join_s=30)
    if receiver is not None:
        receiver.staging.stop(0)  # what has not settled stays in the journal and settles after a restart
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
    return 1 if failed else 0


def _serve_http(args: argparse.Namespace, store: Store, registry: CollectorRegistry) -> None:
    """/metrics and the Prometheus API on --http-listen (OSError: the port is taken)."""
    # The Prometheus API's series carry the labels remote write gives them, so both agree.
    rw = args.remote_write
    head = Head(args.query_memory * 2**20)
    store.changes.listen(head)
    api = Api(store.reader, rw.job if rw else "ironsight", dict(rw.labels) if rw else {}, _version(), head)
    serve_metrics(args.http_listen, registry, args.tls, api)


def _receiver(args: argparse.Namespace, store: Store) -> Receiver | None:
    """The remote-write receiver on its own address, or None when --remote-write-listen is not given."""
    if not args.remote_write_listen:
        return None
    staging = Staging(store.reader, journal_of(store.path), args.remote_write_settle, changes=store.changes)
    receiver = Receiver(
        staging,
        Decoder(
            args.remote_write_node_label, not args.remote_write_keep_port, staging.parts(), staging.register
        ),
        args.senders,
    )
    serve_http(args.remote_write_listen, receiver, args.tls, client_cert_optional=True)  # OSError: serve()
    staging.start()
    log.info("receiving remote write on %s", args.remote_write_listen)
    return receiver


def _receiver_args(args: argparse.Namespace) -> None:
    """The receiver's flags, checked; ValueError with one line when they do not hold."""
    args.senders = None
    if not args.remote_write_listen:
        if args.remote_write_senders:
            raise ValueError("--remote-write-senders needs --remote-write-listen")
        return
    check_listen(
        args.remote_write_listen, args.tls, args.insecure, args.allow_remote_insecure, "remote write"
    )
    if args.remote_write_senders:
        args.senders = senders.load(args.remote_write_senders)
    elif args.tls is not None:
        raise ValueError(
            "--remote-write-listen with TLS needs --remote-write-senders: who may write, for which nodes"
        )
    if not 1 <= args.remote_write_settle <= 600:
        raise ValueError("--remote-write-settle must be 1 to 600 seconds")
    if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", args.remote_write_node_label):
        raise ValueError(f"--remote-write-node-label {args.remote_write_node_label!r} is not a label name")


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
        _receiver_args(args)
    except ValueError as exc:
        p.error(str(exc))
    if args.detect_delay < 0:
        p.error("--detect-delay must be 0 or more seconds")
    if args.query_memory < 0:
        p.error("--query-memory must be 0 (off) or more MiB")
    if args.retention_raw < 600 or args.retention_rollups < args.retention_raw or args.max_db_bytes < 0:
        p.error(
            "--retention-raw must be at least 10m, --retention-rollups at least as long, --max-db-bytes >= 0"
        )
    if args.cold_after < 0:
        p.error("--cold-after must be 0 (off) or a duration")
    args.retention = Policy(
        timedelta(seconds=args.retention_raw),
        timedelta(seconds=args.retention_rollups),
        args.max_db_bytes,
        timedelta(seconds=args.cold_after) if args.cold_after else None,
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
    runtime.tune()
    return asyncio.run(serve(args))


if __name__ == "__main__":
    raise SystemExit(main())


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ironsight")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"
