"""The `ironsight` command: a thin layer over collector.query (and `up`, which runs everything here)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from collector.cli_common import FORMATS, Ctx, emit, format_option
from collector.cli_findings import COMMANDS
from collector.query import (
    NODES_SQL,
    TOP_GPU_SQL,
    Backend,
    QueryError,
    parse_metric,
    parse_time,
    series_sql,
    top_host_sql,
)
from ironsight.flags import parse_duration
from ironsight.schema import TABLES
from ironsight.transport import TransportError, check_dial, tls_from


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db", type=click.Path(path_type=Path), help="DuckDB file to read (default ./data/ironsight.duckdb)"
)
@click.option("--collector", metavar="HOST:PORT", help="ask a running collector instead of opening the file")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--tls-ca", type=click.Path(path_type=Path), help="CA that signed the collector's certificate")
@click.option(
    "--tls-cert", type=click.Path(path_type=Path), help="this client's certificate (ironsight certs issue)"
)
@click.option("--tls-key", type=click.Path(path_type=Path), help="its private key")
@click.option("--insecure", is_flag=True, help="plaintext to a collector that is not on this machine")
@click.pass_context
def cli(
    ctx: click.Context,
    db: Path | None,
    collector: str | None,
    fmt: str,
    tls_ca: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    insecure: bool,
) -> None:
    """Query telemetry stored by ironsight, or run everything on this machine (`ironsight up`).

    \b
    Examples:
      ironsight nodes
      ironsight --collector 127.0.0.1:7070 series --node n1 --metric gpu.temperature_celsius --since 10m
      ironsight --format csv query "SELECT node, max(load1) FROM load GROUP BY node"
    """
    try:
        tls = tls_from(tls_ca, tls_cert, tls_key)
        if collector and ctx.invoked_subcommand != "certs":
            check_dial(collector, tls, insecure)
    except TransportError as exc:
        raise click.UsageError(str(exc)) from None
    ctx.obj = Ctx(db, collector, fmt, tls, insecure)


@cli.command()
@format_option
@click.pass_obj
def nodes(c: Ctx) -> None:
    """Each node, its hardware, and when it was last seen.

    \b
    Example:
      ironsight nodes
    """
    emit(c.run(NODES_SQL), c.fmt, "nodes")


def _list_metrics() -> None:
    for t in TABLES.values():
        for f in t.fields:
            click.echo(f"{t.name}.{f.name}\t{f.kind}")


@cli.command()
@click.option("--node", help="node id (default: all nodes)")
@click.option("--metric", help="TABLE.COLUMN, e.g. gpu.temperature_celsius or cpu.user_seconds")
@click.option("--device", help="only this device (a GPU index, 'nvme0n1', 'eth0', ...)")
@click.option("--since", default="10m", show_default=True, help="start: 10m, 2h, 1d or an ISO time (UTC)")
@click.option("--until", default="now", show_default=True, help="end: same forms as --since")
@click.option("--rate", is_flag=True, help="per-second increase of a counter (resets handled)")
@click.option("--list", "list_", is_flag=True, help="list every TABLE.COLUMN and exit")
@click.option("--limit", default=100_000, show_default=True, help="at most this many rows")
@format_option
@click.pass_obj
def series(
    c: Ctx,
    node: str | None,
    metric: str | None,
    device: str | None,
    since: str,
    until: str,
    rate: bool,
    list_: bool,
    limit: int,
) -> None:
    """One metric over a time range.

    \b
    Examples:
      ironsight series --node n1 --metric gpu.temperature_celsius --since 10m
      ironsight series --metric nic.rx_bytes --device eth0 --rate --since 1h
      ironsight series --list
    """
    if list_:
        _list_metrics()
        return
    if not metric:
        raise click.UsageError("give --metric TABLE.COLUMN (see: ironsight series --list)")
    try:
        m = parse_metric(metric)
        start, end = parse_time(since), parse_time(until)
    except QueryError as exc:
        raise click.ClickException(str(exc)) from exc
    if rate and not m.counter:
        raise click.UsageError(f"{metric} is a gauge; --rate is for counters")
    if start > end:
        raise click.UsageError("--since is after --until")
    emit(c.run(series_sql(m, node, device, start, end, rate), limit), c.fmt, metric)


@cli.command()
@click.argument("sql")
@click.option("--limit", default=100_000, show_default=True, help="at most this many rows")
@format_option
@click.pass_obj
def query(c: Ctx, sql: str, limit: int) -> None:
    """Read-only SQL over the stored tables (cpu, gpu, disk, nic, rdma, memory, nodes, devices, ...).

    \b
    Example:
      ironsight query "SELECT node, device, max(temperature_celsius) FROM gpu GROUP BY ALL"
    """
    emit(c.run(sql, limit), c.fmt)


def _fmt_rate(v: float | None) -> str:
    if v is None:
        return "-"
    for unit in ("B/s", "KB/s", "MB/s", "GB/s"):
        if abs(v) < 1000:
            return f"{v:.0f} {unit}" if unit == "B/s" else f"{v:.1f} {unit}"
        v /= 1000
    return f"{v:.1f} TB/s"


def _fmt(v: Any, spec: str = ".1f", suffix: str = "") -> str:
    return "-" if v is None else f"{v:{spec}}{suffix}"


def render_top(backend: Backend) -> Group:
    host = backend.sql(top_host_sql()).to_pylist()
    try:
        gpus = backend.sql(TOP_GPU_SQL).to_pylist()
    except QueryError:
        gpus = []
    now = datetime.now(UTC).replace(tzinfo=None)
    t = Table(title=f"ironsight top — {now:%H:%M:%S} UTC", expand=True)
    for col in (
        "node",
        "seen",
        "cores",
        "cpu busy",
        "load1",
        "mem used",
        "disk read",
        "disk write",
        "net rx",
        "net tx",
    ):
        t.add_column(col, justify="left" if col == "node" else "right")
    for r in host:
        age = (now - r["last_seen"]).total_seconds() if r["last_seen"] else None
        t.add_row(
            r["node"],
            _fmt(age, ".0f", "s ago"),
            _fmt(r["cores"], "d"),
            _fmt(r["cpu_busy_pct"], ".1f", "%"),
            _fmt(r["load1"], ".2f"),
            _fmt(r["mem_used_pct"], ".1f", "%"),
            _fmt_rate(r["disk_read_bps"]),
            _fmt_rate(r["disk_write_bps"]),
            _fmt_rate(r["net_rx_bps"]),
            _fmt_rate(r["net_tx_bps"]),
        )
    parts: list[Any] = [t]
    if gpus:
        g = Table(title="GPUs", expand=True)
        for col in ("node", "gpu", "util", "mem", "temp", "power", "SM clock", "clock event reasons"):
            g.add_column(col, justify="left" if col == "node" else "right")
        for r in gpus:
            g.add_row(
                r["node"],
                r["gpu"],
                _fmt(r["util_pct"], ".0f", "%"),
                _fmt(r["mem_pct"], ".0f", "%"),
                _fmt(r["temp_c"], ".0f", " C"),
                f"{_fmt(r['power_w'], '.0f')}/{_fmt(r['power_limit_w'], '.0f')} W",
                _fmt(r["sm_mhz"], ".0f", " MHz"),
                "-" if r["reasons"] is None else f"0x{r['reasons']:x}",
            )
        parts.append(g)
    else:
        parts.append(Text("no GPU telemetry (no NVML on the sampled nodes)", style="dim"))
    return Group(*parts)


@cli.command()
@click.option("--refresh", default=1.0, show_default=True, help="seconds between updates")
@click.option("--count", default=0, help="stop after this many updates (0: until Ctrl-C)")
@click.pass_obj
def top(c: Ctx, refresh: float, count: int) -> None:
    """Live latest values per node and GPU, refreshed until Ctrl-C.

    \b
    Example:
      ironsight --collector 127.0.0.1:7070 top
    """
    run_top(c, refresh, count)


def run_top(c: Ctx, refresh: float, count: int, alive: Callable[[], bool] = lambda: True) -> None:
    backend = c.backend()
    console = Console()
    shown = 0
    try:
        with Live(console=console, auto_refresh=False, transient=False) as live:
            while alive():
                try:
                    live.update(render_top(backend), refresh=True)
                except QueryError as exc:
                    live.update(Text(f"waiting for data: {exc}", style="yellow"), refresh=True)
                shown += 1
                if count and shown >= count:
                    break
                time.sleep(refresh)
    except KeyboardInterrupt:
        pass
    finally:
        backend.close()


@cli.command()
@click.option(
    "--db",
    "db_path",
    type=click.Path(path_type=Path),
    default=Path("data/ironsight.duckdb"),
    show_default=True,
)
@click.option("--listen", default="127.0.0.1:7070", show_default=True, help="collector gRPC address")
@click.option("--interval", default=1.0, show_default=True, help="agent sampling interval, seconds")
@click.option("--duration", default=0.0, help="stop after this many seconds (0: until Ctrl-C)")
@click.pass_obj
def up(c: Ctx, db_path: Path, listen: str, interval: float, duration: float) -> None:
    """Run a collector and an agent on this machine and show live telemetry until Ctrl-C.

    \b
    Example:
      ironsight up --db ./data/ironsight.duckdb
    """
    bindir = Path(sys.executable).parent
    log_dir = db_path.parent
    log_dir.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(name: str, args: list[str]) -> subprocess.Popen[bytes]:
        exe = bindir / name
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", name.replace("ironsight-", "") + ".main"]
        log = open(log_dir / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the child
        p = subprocess.Popen(cmd + args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(p)
        return p

    collector = spawn("ironsight-collector", ["--db", str(db_path), "--listen", listen, "--insecure"])
    deadline = time.monotonic() + 15
    while not _port_open(listen):
        if collector.poll() is not None or time.monotonic() > deadline:
            _stop_all(procs)
            tail = (log_dir / "ironsight-collector.log").read_text(errors="replace").strip().splitlines()[-1:]
            raise click.ClickException(f"collector did not start: {tail[0] if tail else 'no output'}")
        time.sleep(0.1)
    # The spool beside the database: `up` is the one-machine demo, everything under its data folder.
    spawn(
        "ironsight-agent",
        ["--collector", listen, "--interval", str(interval), "--state-dir", str(db_path.parent / "agent")],
    )
    click.echo(
        f"collector on {listen} storing in {db_path}; agent every {interval:g}s; logs in {log_dir}/. Ctrl-C stops."
    )
    end = time.monotonic() + duration if duration else None
    try:
        run_top(Ctx(None, listen, c.fmt), 1.0, 0, alive=lambda: end is None or time.monotonic() < end)
    finally:
        _stop_all(procs)
    click.echo("stopped collector and agent")


@cli.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("agent_args", nargs=-1, type=click.UNPROCESSED)
def record(agent_args: tuple[str, ...]) -> None:
    """Sample this node like the agent and write a trace file (takes the agent's flags).

    \b
    Examples:
      ironsight record --out idle.trace --duration 60s
      ironsight record --out burn.trace --interval 0.1 --duration 5m --tee-collector 127.0.0.1:7070
      ironsight record --help
    """
    from agent.record import main as record_main

    raise SystemExit(record_main(list(agent_args)))


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--collector", "target", metavar="HOST:PORT", help="stream into this running collector")
@click.option(
    "--db", "db_path", type=click.Path(path_type=Path), help="load into this DuckDB file instead (no server)"
)
@click.option(
    "--speed", type=click.FloatRange(min=0.001), help="replay at this multiple of real time (default 1)"
)
@click.option("--max", "as_fast", is_flag=True, help="replay as fast as the collector takes it")
@click.option("--shift-to-now", is_flag=True, help="move timestamps so the replay happens now")
@click.pass_obj
def replay(
    c: Ctx,
    files: tuple[Path, ...],
    target: str | None,
    db_path: Path | None,
    speed: float | None,
    as_fast: bool,
    shift_to_now: bool,
) -> None:
    """Replay trace files: into a collector as live agents would, or straight into a DuckDB file.

    Every file is verified whole first: a damaged trace loads nothing.
    Replaying a trace twice stores it once.

    \b
    Examples:
      ironsight replay tests/traces/mixed.trace --collector 127.0.0.1:7070 --max
      ironsight replay run1.trace run2.trace --collector 127.0.0.1:7070 --speed 10 --shift-to-now
      ironsight replay run1.trace --db ./offline.duckdb
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from collector import replay as rp
    from ironsight.trace import TraceError

    target = target or c.collector
    if bool(target) == bool(db_path):
        raise click.UsageError("give exactly one of --collector HOST:PORT or --db PATH")
    if speed is not None and as_fast:
        raise click.UsageError("--speed and --max exclude each other")
    try:
        if db_path is not None:
            stats = rp.to_db(list(files), db_path, shift_to_now)
        else:
            assert target is not None
            try:
                check_dial(target, c.tls, c.insecure)
            except TransportError as exc:
                raise click.UsageError(str(exc)) from None
            columns = (
                TextColumn("replaying"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("values"),
                TimeRemainingColumn(),
            )
            with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
                task = bar.add_task("replay", total=None)
                stats = rp.to_collector(
                    list(files),
                    target,
                    c.tls,
                    None if as_fast else (speed or 1.0),
                    shift_to_now,
                    progress=lambda n: bar.advance(task, n),
                    on_plan=lambda plan: bar.update(task, total=plan.values),
                )
    except (TraceError, rp.ReplayError) as exc:
        raise click.ClickException(str(exc)) from exc
    if stats.errors:
        raise click.ClickException("; ".join(sorted(set(stats.errors))))
    rate = stats.values / stats.seconds if stats.seconds else 0.0
    click.echo(
        f"replayed {stats.batches} batches ({stats.values} values) in {stats.seconds:.2f}s "
        f"({rate:,.0f} values/s): {stats.stored} stored, {stats.duplicate} already there"
    )


@cli.command()
@click.option("--scenario", help="scenario name (see --list)")
@click.option("--nodes", default=2, show_default=True, type=click.IntRange(1, 1024))
@click.option("--gpus", default=8, show_default=True, type=click.IntRange(1, 16), help="GPUs per node")
@click.option("--duration", default="30m", show_default=True, help="simulated time: 600, 600s, 10m, 2h")
@click.option(
    "--interval",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.1, 60),
    help="seconds between samples",
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--start", default="2026-11-01T00:00:00", show_default=True, help="simulated start time (UTC)")
@click.option("--out", type=click.Path(path_type=Path), help="trace file to write")
@click.option("--list", "list_", is_flag=True, help="list the scenarios and exit")
def simulate(
    scenario: str | None,
    nodes: int,
    gpus: int,
    duration: str,
    interval: float,
    seed: int,
    start: str,
    out: Path | None,
    list_: bool,
) -> None:
    """Write a labelled trace of a simulated training job (H100-class nodes) for tests and detector scoring.

    \b
    Examples:
      ironsight simulate --list
      ironsight simulate --scenario thermal --nodes 4 --gpus 8 --duration 30m --seed 7 --out thermal.trace
    """
    from collector.simulate import SCENARIOS
    from collector.simulate import simulate as run_simulation
    from ironsight.trace import TraceWriter

    if list_:
        for sc in SCENARIOS.values():
            click.echo(f"{sc.name:16} {sc.description} (nodes >= {sc.min_nodes})")
        return
    if not scenario or not out:
        raise click.UsageError("give --scenario NAME and --out FILE (scenarios: ironsight simulate --list)")
    if out.exists():
        raise click.ClickException(f"{out} exists; choose another --out or remove it")
    try:
        seconds = parse_duration(duration)
        start_ns = int(parse_time(start).replace(tzinfo=UTC).timestamp() * 1e9)
        header, batches = run_simulation(scenario, nodes, gpus, seconds, interval, seed, start_ns)
    except (ValueError, QueryError) as exc:
        raise click.ClickException(str(exc)) from exc
    with TraceWriter(out, header) as writer:
        for batch in batches:
            writer.write(batch)
    kinds = sorted({label.kind for label in header.labels})
    click.echo(f"wrote {writer.batches} batches to {out}; labels: {', '.join(kinds) if kinds else 'none'}")


def _port_open(target: str) -> bool:
    import socket

    host, _, port = target.rpartition(":")
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, int(port))) == 0


def _stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    # The agent first, so its last batch reaches the collector before it drains.
    for p in reversed(procs):
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


for _command in COMMANDS:
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="ironsight")


if __name__ == "__main__":
    main()


@cli.group()
def certs() -> None:
    """A CA and the certificates mutual TLS needs: one for the collector, one per node (its identity).

    \b
    Examples:
      ironsight certs init
      ironsight certs collector monitor.example --ip 10.0.0.5
      ironsight certs issue gpu-01
      ironsight certs issue alice          # a user of the CLI
    """


def _dir_option(f: Any) -> Any:
    return click.option(
        "--dir", "directory", type=click.Path(path_type=Path), default=Path("pki"), show_default=True,
        help="where the CA lives and certificates are written",
    )(f)  # fmt: skip


@certs.command("init")
@_dir_option
@click.option("--days", type=click.IntRange(1, 36500), default=3650, show_default=True)
def certs_init(directory: Path, days: int) -> None:
    """Create the CA (ca.pem, and ca.key: keep it off the nodes)."""
    from collector.certs import CertError, init

    try:
        path = init(directory, days)
    except CertError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"CA in {path} (key {directory / 'ca.key'}, mode 0600)")


@certs.command("issue")
@click.argument("node")
@click.option(
    "--dns", "names", multiple=True, help="another host name Prometheus scrapes /metrics by (repeatable)"
)
@click.option("--ip", "ips", multiple=True, help="an address Prometheus scrapes /metrics at (repeatable)")
@_dir_option
@click.option("--days", type=click.IntRange(1, 3650), default=365, show_default=True)
def certs_issue(node: str, names: tuple[str, ...], ips: tuple[str, ...], directory: Path, days: int) -> None:
    """A certificate naming NODE: an agent with --node-id NODE, or a CLI user.

    The node's names also let it serve /metrics over HTTPS under those names (--dns, --ip add more);
    mind that every name a certificate carries is a node id its holder may write as."""
    from collector.certs import CertError, issue

    try:
        path = issue(directory, node, list(names), list(ips), days, node)
    except CertError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{path} and {path.with_suffix('.key')} for node {node}")


@certs.command("collector")
@click.argument("names", nargs=-1, required=True)
@click.option("--ip", "ips", multiple=True, help="an IP address agents dial (repeatable)")
@_dir_option
@click.option("--days", type=click.IntRange(1, 3650), default=365, show_default=True)
def certs_collector(names: tuple[str, ...], ips: tuple[str, ...], directory: Path, days: int) -> None:
    """The collector's certificate, naming every host name (NAMES) and address (--ip) agents dial."""
    from collector.certs import CertError, issue

    try:
        path = issue(directory, names[0], list(names[1:]), list(ips), days, "collector")
    except CertError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{path} and {path.with_suffix('.key')} for {', '.join([*names, *ips])}")


@cli.command()
@click.option(
    "--path.procfs", "procfs", type=click.Path(path_type=Path), default=Path("/proc"), show_default=True
)
@click.option(
    "--path.sysfs", "sysfs", type=click.Path(path_type=Path), default=Path("/sys"), show_default=True
)
@click.option(
    "--state-dir", type=click.Path(path_type=Path), help="the spool's or database's folder to check for space"
)
@click.option(
    "--need-mb", type=click.IntRange(1), default=256, show_default=True, help="free space wanted there"
)
@click.option("--user", help="check GPU device access for this user (the services run as ironsight)")
@click.pass_obj
def doctor(c: Ctx, procfs: Path, sysfs: Path, state_dir: Path | None, need_mb: int, user: str | None) -> None:
    """Check this server: NVML and driver, GPU device access, each sampler's files, the clock, TLS files
    (given with --tls-*), free space, and the collector (given with --collector). Exits 1 on any FAIL.

    \b
    Examples:
      ironsight doctor
      ironsight --collector monitor:7070 --tls-ca ca.pem --tls-cert gpu-01.pem --tls-key gpu-01.key doctor
    """
    from agent.main import state_dir as default_state_dir
    from collector.doctor import FAIL, OK, WARN, Setup, run

    tls_files = (c.tls.ca, c.tls.cert, c.tls.key) if c.tls else ()
    setup = Setup(procfs=procfs, sysfs=sysfs, state_dir=state_dir or default_state_dir(None),
                  need_bytes=need_mb << 20, tls_files=tls_files, collector=c.collector, user=user)  # fmt: skip
    checks = run(setup, c.tls)
    width = max(len(ch.name) for ch in checks)
    colour = {OK: "green", WARN: "yellow", FAIL: "red"}
    for ch in checks:
        line = f"{click.style(ch.status.ljust(4), fg=colour[ch.status])}  {ch.name.ljust(width)}  {ch.detail}"
        click.echo(line + (f"\n{'':{width + 8}}fix: {ch.fix}" if ch.fix and ch.status != OK else ""))
    failed = sum(ch.status == FAIL for ch in checks)
    click.echo(f"{len(checks)} checks, {failed} failed, {sum(ch.status == WARN for ch in checks)} warnings")
    if failed:
        raise SystemExit(1)
