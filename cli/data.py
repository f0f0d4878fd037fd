"""Reading stored telemetry: `nodes`, `series` and `query`."""

from __future__ import annotations

import click

from ironsight.cli.backend import (
    NODES_SQL,
    QueryError,
    parse_metric,
    parse_time,
    series_sql,
)
from ironsight.cli.common import Ctx, emit, format_option, step_ms
from ironsight.core.schema import TABLES


@click.command()
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


@click.command()
@click.option("--node", help="node id (default: all nodes)")
@click.option("--metric", help="TABLE.COLUMN, e.g. gpu.temperature_celsius or cpu.user_seconds")
@click.option("--device", help="only this device (a GPU index, 'nvme0n1', 'eth0', ...)")
@click.option("--job", help="only where and while this job ran (its GPUs; its nodes for host tables)")
@click.option("--since", default="10m", show_default=True, help="start: 10m, 2h, 1d or an ISO time (UTC)")
@click.option("--until", default="now", show_default=True, help="end: same forms as --since")
@click.option("--rate", is_flag=True, help="per-second increase of a counter (resets handled)")
@click.option("--step", help="one row per step (e.g. 1m): a gauge's mean, a counter's mean per-second rate")
@click.option("--list", "list_", is_flag=True, help="list every TABLE.COLUMN and exit")
@click.option("--limit", default=100_000, show_default=True, help="at most this many rows")
@format_option
@click.pass_obj
def series(
    c: Ctx,
    node: str | None,
    metric: str | None,
    device: str | None,
    job: str | None,
    since: str,
    until: str,
    rate: bool,
    step: str | None,
    list_: bool,
    limit: int,
) -> None:
    """One metric over a time range.

    \b
    Examples:
      ironsight series --node n1 --metric gpu.temperature_celsius --since 10m
      ironsight series --metric nic.rx_bytes --device eth0 --rate --since 1h
      ironsight series --metric gpu.util_gpu_percent --since 2h --step 1m
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
    step_ms = _step(step) if step else 0
    sql = series_sql(m, node, device, start, end, rate or (m.counter and step_ms > 0), job, step_ms)
    emit(c.run(sql, limit, what=": use --step, a shorter range, --node or --device, or a larger --limit"),
         c.fmt, metric)  # fmt: skip


def _step(text: str) -> int:
    try:
        return step_ms(text)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


@click.command()
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


COMMANDS = (nodes, series, query)
