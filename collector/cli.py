"""The `ironsight` command: a thin layer over collector.query (and `up`, which runs everything here)."""

from __future__ import annotations

import csv
import io
import json
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
import pyarrow as pa
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from collector.query import (
    NODES_SQL,
    TOP_GPU_SQL,
    Backend,
    QueryError,
    open_backend,
    parse_metric,
    parse_time,
    series_sql,
    top_host_sql,
)
from ironsight.schema import TABLES

FORMATS = ["table", "json", "csv"]


class Ctx:
    def __init__(self, db: Path | None, collector: str | None, fmt: str) -> None:
        self.db, self.collector, self.fmt = db, collector, fmt

    def backend(self) -> Backend:
        try:
            return open_backend(self.db, self.collector)
        except QueryError as exc:
            raise click.ClickException(str(exc)) from exc

    def run(self, sql: str, max_rows: int = 100_000) -> pa.Table:
        backend = self.backend()
        try:
            return backend.sql(sql, max_rows)
        except QueryError as exc:
            raise click.ClickException(str(exc)) from exc
        finally:
            backend.close()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="milliseconds")
    return str(value)


def emit(table: pa.Table, fmt: str, title: str | None = None) -> None:
    rows = table.to_pylist()
    if fmt == "json":
        click.echo(json.dumps(rows, default=_cell, indent=None))
    elif fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(table.column_names)
        for row in rows:
            writer.writerow([_cell(row[c]) for c in table.column_names])
        click.echo(buf.getvalue(), nl=False)
    else:
        out = Table(title=title, show_lines=False)
        for name in table.column_names:
            out.add_column(name, overflow="fold")
        for row in rows:
            out.add_row(*[_cell(row[c]) for c in table.column_names])
        Console().print(out)
        if not rows:
            click.echo("(no rows)", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db", type=click.Path(path_type=Path), help="DuckDB file to read (default ./data/ironsight.duckdb)"
)
@click.option("--collector", metavar="HOST:PORT", help="ask a running collector instead of opening the file")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.pass_context
def cli(ctx: click.Context, db: Path | None, collector: str | None, fmt: str) -> None:
    """Query telemetry stored by ironsight, or run everything on this machine (`ironsight up`).

    \b
    Examples:
      ironsight nodes
      ironsight --collector 127.0.0.1:7070 series --node n1 --metric gpu.temperature_celsius --since 10m
      ironsight --format csv query "SELECT node, max(load1) FROM load GROUP BY node"
    """
    ctx.obj = Ctx(db, collector, fmt)


@cli.command()
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

    collector = spawn("ironsight-collector", ["--db", str(db_path), "--listen", listen])
    deadline = time.monotonic() + 15
    while not _port_open(listen):
        if collector.poll() is not None or time.monotonic() > deadline:
            _stop_all(procs)
            tail = (log_dir / "ironsight-collector.log").read_text(errors="replace").strip().splitlines()[-1:]
            raise click.ClickException(f"collector did not start: {tail[0] if tail else 'no output'}")
        time.sleep(0.1)
    spawn("ironsight-agent", ["--collector", listen, "--interval", str(interval)])
    click.echo(
        f"collector on {listen} storing in {db_path}; agent every {interval:g}s; logs in {log_dir}/. Ctrl-C stops."
    )
    end = time.monotonic() + duration if duration else None
    try:
        run_top(Ctx(None, listen, c.fmt), 1.0, 0, alive=lambda: end is None or time.monotonic() < end)
    finally:
        _stop_all(procs)
    click.echo("stopped collector and agent")


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


def main() -> None:
    cli(prog_name="ironsight")


if __name__ == "__main__":
    main()
