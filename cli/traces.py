"""Trace files: `replay` them into a collector or a file, `simulate` new ones."""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import click
from rich.console import Console

from ironsight.cli.backend import (
    QueryError,
    parse_time,
)
from ironsight.cli.common import Ctx
from ironsight.core.flags import parse_duration
from ironsight.core.transport import TransportError, check_dial


@click.command()
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

    from ironsight.core.trace import TraceError
    from ironsight.offline import replay as rp

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


@click.command()
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
    from ironsight.core.trace import TraceWriter
    from ironsight.offline.simulate import SCENARIOS
    from ironsight.offline.simulate import simulate as run_simulation

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


COMMANDS = (replay, simulate)
