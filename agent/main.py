"""ironsight-agent: sample this node and stream to a collector, or print one sample (--once)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ironsight.agent.batch import Batcher, boot_id
from ironsight.agent.clock import TIMELINE
from ironsight.agent.jobs.kubernetes import DEFAULT_SOCKET
from ironsight.agent.jobs.options import JobOptions
from ironsight.agent.loop import Sink, sample_loop
from ironsight.agent.runner import Runner, Tick
from ironsight.agent.samplers import REGISTRY
from ironsight.agent.samplers.base import Paths, Sampler, SamplerContext, raise_fd_limit
from ironsight.core import config
from ironsight.core.flags import add_logging_args, dial_address, listen_address, setup_logging
from ironsight.core.reading import DeviceInfo
from ironsight.core.systemd import Notifier
from ironsight.core.transport import TransportError, check_dial, host_of, is_loopback, tls_from

log = logging.getLogger("ironsight.agent")


class UsageError(Exception):
    pass


DEFAULT_METRICS_LISTEN = "127.0.0.1:9471"  # beside node_exporter's 9100 and dcgm-exporter's 9400


def interval(value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not 0.1 <= v <= 60:
        raise argparse.ArgumentTypeError(f"{v:g} is outside 0.1 to 60 seconds")
    return v


def bounded(kind: type[int] | type[float], low: float, high: float) -> Callable[[str], int | float]:
    def parse(value: str) -> int | float:
        try:
            v = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
        if not low <= v <= high:
            fmt = "d" if kind is int else "g"
            raise argparse.ArgumentTypeError(f"{v:{fmt}} is outside {low:{fmt}} to {high:{fmt}}")
        return v

    return parse


def existing_dir(value: str) -> Path:
    p = Path(value)
    if not p.is_dir():
        raise argparse.ArgumentTypeError(f"{value} is not a directory")
    return p


DEFAULT_CONFIG = Path("/etc/ironsight/agent.toml")
ENV_PREFIX = "IRONSIGHT_AGENT_"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ironsight-agent",
        description="Sample GPU, CPU, memory, disk, NIC and RDMA counters and stream them to an ironsight collector.",
        epilog="examples:\n  ironsight-agent --once\n  ironsight-agent --collector 127.0.0.1:7070 --interval 1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--collector", type=dial_address, help="collector gRPC address HOST:PORT")
    p.add_argument(
        "--once", action="store_true", help="sample every enabled source once, print Prometheus text, exit"
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="where the spool lives (default $STATE_DIRECTORY as systemd sets it, else "
        "/var/lib/ironsight-agent as root, else ~/.local/state/ironsight-agent)",
    )
    p.add_argument(
        "--spool-max-bytes",
        type=bounded(int, 1 << 20, 1 << 40),
        default=256 << 20,
        metavar="BYTES",
        help="batches kept on disk until acknowledged; past it the oldest go first "
        "(default 268435456: over 2 h at 1 s for a node with 8 GPUs and 200 cores)",
    )
    p.add_argument(
        "--metrics-listen",
        nargs="?",
        const=DEFAULT_METRICS_LISTEN,
        type=listen_address,
        metavar="HOST:PORT",
        help="serve the latest sample as Prometheus /metrics (node_exporter and dcgm-exporter names); "
        f"off unless given; alone it means {DEFAULT_METRICS_LISTEN}",
    )
    add_sampling_args(p)
    add_tls_args(p)
    return p


def add_tls_args(p: argparse.ArgumentParser) -> None:
    """Mutual TLS to the collector (and for /metrics): shared by the agent and `ironsight record`."""
    g = p.add_argument_group("security (mutual TLS; see `ironsight certs`)")
    g.add_argument("--tls-ca", type=Path, metavar="FILE", help="CA that signed the collector's certificate")
    g.add_argument(
        "--tls-cert", type=Path, metavar="FILE", help="this node's certificate (names its node id)"
    )
    g.add_argument("--tls-key", type=Path, metavar="FILE", help="its private key")
    g.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext to a collector that is not on this machine, or /metrics on a non-loopback address",
    )


def check_tls_args(args: argparse.Namespace, collector: str | None, metrics: str | None = None) -> str | None:
    """Sets args.tls; returns a one-line error, if any."""
    try:
        args.tls = tls_from(args.tls_ca, args.tls_cert, args.tls_key)
        if collector:
            check_dial(collector, args.tls, args.insecure)
        if metrics and args.tls is None and not args.insecure and not is_loopback(host_of(metrics)):
            raise TransportError(
                f"/metrics on {metrics} in plaintext would be open to the network: listen on 127.0.0.1, "
                "give --tls-* files (Prometheus then scrapes with a certificate), or --insecure"
            )
    except TransportError as exc:
        return str(exc)
    return None


def add_sampling_args(p: argparse.ArgumentParser) -> None:
    """The flags that say what to sample and how often: shared by the agent and `ironsight record`."""
    p.add_argument(
        "--interval", type=interval, default=1.0, help="seconds between samples, 0.1 to 60 (default 1)"
    )
    p.add_argument("--node-id", default=socket.gethostname(), help="this node's name (default: the hostname)")
    p.add_argument(
        "--batch-seconds",
        type=bounded(float, 0.1, 60),
        default=1.0,
        help="send a batch about this often (default 1)",
    )
    p.add_argument(
        "--path.procfs", dest="procfs", type=existing_dir, default=Path("/proc"), help="procfs root"
    )
    p.add_argument("--path.sysfs", dest="sysfs", type=existing_dir, default=Path("/sys"), help="sysfs root")
    p.add_argument(
        "--path.rootfs", dest="rootfs", type=existing_dir, default=Path("/"), help="root filesystem"
    )
    add_logging_args(p)
    add_job_args(p)
    for spec in REGISTRY.values():
        p.add_argument(
            f"--collector.{spec.name}",
            dest=f"enable_{spec.name}",
            action=argparse.BooleanOptionalAction,
            default=spec.default_enabled,
            help=f"{spec.help} (default {'on' if spec.default_enabled else 'off'})",
        )


def job_name(value: str) -> str:
    if not 1 <= len(value) <= 256 or not value.isprintable():
        raise argparse.ArgumentTypeError(f"{value[:64]!r} is not a job name: 1-256 printable characters")
    return value


def add_job_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("jobs (which job owns each GPU; --no-collector.jobs turns it all off)")
    g.add_argument("--job", type=job_name, help="every GPU of this node runs this job (a name)")
    g.add_argument(
        "--jobs.mapping-dir",
        dest="jobs_mapping_dir",
        type=Path,
        metavar="DIR",
        help="dcgm-exporter's job-mapping folder: a file per GPU index holding its job ids (Slurm prolog)",
    )
    g.add_argument(
        "--jobs.processes",
        dest="jobs_processes",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="jobs from the GPU processes' cgroups and Slurm environment (default on)",
    )
    g.add_argument(
        "--jobs.kubernetes",
        dest="jobs_kubernetes",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="pods from the kubelet's PodResources API where its socket exists (default on)",
    )
    g.add_argument(
        "--jobs.kubelet-socket",
        dest="jobs_kubelet_socket",
        type=Path,
        default=DEFAULT_SOCKET,
        metavar="PATH",
        help=f"the kubelet's pod-resources socket (default {DEFAULT_SOCKET})",
    )
    g.add_argument(
        "--jobs.interval",
        dest="jobs_interval",
        type=bounded(float, 1, 300),
        default=5.0,
        help="seconds between looks, 1 to 300 (default 5)",
    )


def sampler_context(args: argparse.Namespace, paths: Paths) -> SamplerContext:
    socket = args.jobs_kubelet_socket if args.jobs_kubernetes else None
    jobs = JobOptions(args.job or "", args.jobs_mapping_dir, args.jobs_processes, args.jobs_interval, socket)
    return SamplerContext(paths=paths, jobs=jobs)


def build_samplers(args: argparse.Namespace, ctx: SamplerContext) -> list[Sampler]:
    samplers: list[Sampler] = []
    for spec in REGISTRY.values():
        if getattr(args, f"enable_{spec.name}"):
            samplers.append(spec.factory(ctx))
    return samplers


def run_once(runner: Runner) -> int:
    from ironsight.core.exposition import render  # prometheus_client: only where exposition is rendered

    tick = runner.tick()
    text = render(tick.reading, runner.inventory(), socket.gethostname())
    sys.stdout.buffer.write(text)
    sys.stdout.flush()
    return 0


def samplers_on(args: argparse.Namespace) -> set[str]:
    return {k for k, v in vars(args).items() if k.startswith("enable_") and v}


def budget(interval_s: float) -> float:
    """How long a sampler may take before the runner gives up on it this tick."""
    return min(5.0, max(0.05, interval_s * 0.8))


def reparse(argv: list[str] | None) -> argparse.Namespace:
    p = parser()
    args = config.parse(p, argv, DEFAULT_CONFIG, ENV_PREFIX)
    problem = check_tls_args(args, args.collector, args.metrics_listen)
    if problem:
        p.error(problem)
    return args


def stop_on_signals() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


def state_dir(flag: Path | None) -> Path:
    if flag is not None:
        return flag
    if os.environ.get("STATE_DIRECTORY"):  # systemd's StateDirectory=; the first if several
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    if os.geteuid() == 0:
        return Path("/var/lib/ironsight-agent")
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "ironsight-agent"


OnTick = Callable[[Tick, list[DeviceInfo]], None]


class SystemdTicks:
    """Under systemd (Type=notify): READY after the first tick a sampler succeeded in, a watchdog ping
    from the sampling loop itself (a stuck loop stops pinging), and a status line every 10 s."""

    def __init__(
        self, notifier: Notifier, args: argparse.Namespace, sender: Any, then: OnTick | None
    ) -> None:
        self.notifier, self.args, self.sender, self.then = notifier, args, sender, then
        self.ready = False
        self.last_ping = self.last_status = 0.0

    def tick(self, tick: Tick, inventory: list[DeviceInfo]) -> None:
        if self.then is not None:
            self.then(tick, inventory)
        if not self.notifier.enabled:
            return
        now = time.monotonic()
        if not self.ready and any(v.get("success") for _, v in tick.reading.rows("sampler")):
            self.ready = True
            self.notifier.ready(self._status())
        wd = self.notifier.watchdog_s
        if wd is not None and now - self.last_ping >= min(wd, 1.0):
            self.last_ping = now
            self.notifier.watchdog()
        if self.ready and now - self.last_status >= 10:
            self.last_status = now
            self.notifier.status(self._status())

    def _status(self) -> str:
        where = f"sending to {self.args.collector}" if self.sender else "serving /metrics"
        text = f"sampling every {self.args.interval:g}s as {self.args.node_id}, {where}"
        if self.sender is not None:
            text += f"; {self.sender.acked} batches acknowledged, {self.sender.pending()} spooled"
        return text


def run_forever(args: argparse.Namespace, runner: Runner, paths: Paths, argv: list[str] | None = None) -> int:
    """Samples until SIGTERM: streams to the collector, serves /metrics, or both; SIGHUP reloads.

    It owns the runner: a reload that changes the samplers or the interval replaces it."""
    from ironsight.agent.quarantine import Quarantine
    from ironsight.agent.reload import Signals, reload
    from ironsight.agent.spool import Spool, SpoolError
    from ironsight.agent.stream import Sender

    state = state_dir(args.state_dir)
    sender = None
    if args.collector:
        spool_dir = state / "spool" / args.node_id
        try:
            spool = Spool(spool_dir, args.spool_max_bytes)
        except SpoolError as exc:
            print(f"ironsight-agent: {exc}", file=sys.stderr)
            runner.close()
            return 1
        quarantine = Quarantine(state / "quarantine" / args.node_id)
        sender = Sender(args.collector, spool, tls=args.tls, quarantine=quarantine)
        log.info("spooling to %s (up to %d bytes)", spool_dir, args.spool_max_bytes)
    signals = Signals()
    on_tick, server = None, None
    boot = boot_id(paths)
    TIMELINE.anchor(state / "timeline" / args.node_id, boot)
    batcher = Batcher(args.node_id, boot, args.interval)
    if args.metrics_listen:
        from ironsight.agent.metrics import Latest, serve

        latest = Latest(socket.gethostname(), sender, batcher)
        try:
            server = serve(args.metrics_listen, latest, args.tls)
        except OSError as exc:
            print(f"ironsight-agent: cannot serve metrics on {args.metrics_listen}: {exc}", file=sys.stderr)
            runner.close()
            return 1
        on_tick = latest.update
        log.info("serving /metrics on %s", args.metrics_listen)
    if sender is not None:
        sender.start()
    log.info(
        "sampling every %gs as node %s, %s",
        args.interval,
        args.node_id,
        f"sending to {args.collector}" if sender else "serving /metrics only",
    )
    sinks: list[Sink] = [sender] if sender is not None else []
    systemd = SystemdTicks(Notifier(), args, sender, on_tick)
    try:
        while True:
            sample_loop(runner, batcher, paths, sinks, signals.wake, args.batch_seconds, on_tick=systemd.tick)
            if signals.term:
                break
            signals.rearm()
            before = (args.interval, samplers_on(args), sampler_context(args, paths).jobs)
            args = reload(args, lambda: reparse(argv))
            if (args.interval, samplers_on(args), sampler_context(args, paths).jobs) != before:
                runner.close()
                runner = Runner(
                    build_samplers(args, sampler_context(args, paths)), budget_s=budget(args.interval)
                )
                batcher.interval_s = args.interval
    finally:
        runner.close()
    systemd.notifier.stopping("stopping: sending what is spooled")
    if server is not None:
        server.shutdown()
    if sender is not None:
        sender.stop()
        log.info(
            "stopped: %d batches acknowledged, %d unsent, %d dropped",
            sender.acked,
            sender.pending(),
            sender.dropped,
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = reparse(argv)
    if args.check_config:
        print(f"ironsight-agent: configuration OK ({args.config_file or 'flags and environment only'})")
        return 0
    setup_logging(args.log_level, args.log_format)
    if not args.once and not args.collector and not args.metrics_listen:
        print(
            "ironsight-agent: give --collector HOST:PORT to stream, --metrics-listen to serve /metrics, "
            "or --once to print one sample",
            file=sys.stderr,
        )
        return 2
    paths = Paths(procfs=args.procfs, sysfs=args.sysfs, rootfs=args.rootfs)
    raise_fd_limit()
    samplers = build_samplers(args, sampler_context(args, paths))
    runner = Runner(samplers, budget_s=budget(args.interval))
    if not args.once:
        return run_forever(args, runner, paths, argv)  # it owns the runner: a reload replaces it
    try:
        return run_once(runner)
    finally:
        runner.close()


if __name__ == "__main__":
    raise SystemExit(main())
