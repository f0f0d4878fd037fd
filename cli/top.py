"""`ironsight top`: the latest values per node and GPU, redrawn in place."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ironsight.cli.backend import (
    Backend,
    QueryError,
    job_nodes_sql,
    top_gpu_sql,
    top_host_sql,
)
from ironsight.cli.common import Ctx


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


def render_top(backend: Backend, job: str | None = None) -> Group:
    host = backend.sql(top_host_sql()).to_pylist()
    try:
        gpus = backend.sql(top_gpu_sql(job)).to_pylist()
    except QueryError:
        gpus = []
    if job:
        held = {r["node"] for r in backend.sql(job_nodes_sql(job)).to_pylist()}
        host = [r for r in host if r["node"] in held]
    now = datetime.now(UTC).replace(tzinfo=None)
    title = f"ironsight top — {now:%H:%M:%S} UTC" + (f" — job {job}" if job else "")
    t = Table(title=title, expand=True)
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
        for col in ("node", "gpu", "job", "util", "mem", "temp", "power", "SM clock", "clock event reasons"):
            g.add_column(col, justify="left" if col == "node" else "right")
        for r in gpus:
            g.add_row(
                r["node"],
                r["gpu"],
                r["job"] or "-",
                _fmt(r["util_pct"], ".0f", "%"),
                _fmt(r["mem_pct"], ".0f", "%"),
                _fmt(r["temp_c"], ".0f", " C"),
                f"{_fmt(r['power_w'], '.0f')}/{_fmt(r['power_limit_w'], '.0f')} W",
                _fmt(r["sm_mhz"], ".0f", " MHz"),
                "-" if r["reasons"] is None else f"0x{r['reasons']:x}",
            )
        parts.append(g)
    elif job:
        parts.append(Text(f"no GPU holds job {job} now (see: ironsight jobs)", style="dim"))
    else:
        parts.append(Text("no GPU telemetry (no NVML on the sampled nodes)", style="dim"))
    return Group(*parts)


@click.command()
@click.option("--refresh", default=1.0, show_default=True, help="seconds between updates")
@click.option("--count", default=0, help="stop after this many updates (0: until Ctrl-C)")
@click.option("--job", help="only this job's nodes and GPUs (where it holds GPUs now)")
@click.pass_obj
def top(c: Ctx, refresh: float, count: int, job: str | None) -> None:
    """Live latest values per node and GPU, with each GPU's job, refreshed until Ctrl-C.

    \b
    Examples:
      ironsight --collector 127.0.0.1:7070 top
      ironsight top --job 4242
    """
    run_top(c, refresh, count, job=job)


def run_top(
    c: Ctx, refresh: float, count: int, alive: Callable[[], bool] = lambda: True, job: str | None = None
) -> None:
    backend = c.backend()
    console = Console()
    shown = 0
    try:
        with Live(console=console, auto_refresh=False, transient=False) as live:
            while alive():
                try:
                    live.update(render_top(backend, job), refresh=True)
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


COMMANDS = (top,)
