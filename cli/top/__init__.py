"""`ironsight top`: the fleet live, a line per node worst first, and any node's GPUs in detail."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

import click
from rich.console import Console
from rich.text import Text

from ironsight.cli.backend import QueryError
from ironsight.cli.common import Ctx
from ironsight.cli.top.fleet import View, fleet_view
from ironsight.cli.top.node import node_view
from ironsight.cli.top.session import Session


@click.command()
@click.option(
    "--refresh",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="seconds between updates",
)
@click.option(
    "--count", default=0, type=click.IntRange(min=0), help="print this many updates as text and stop"
)
@click.option("--node", help="open this node's detail view")
@click.option("--filter", "pattern", default="", help="only nodes matching: a substring, or a glob (gpu-1*)")
@click.option("--job", help="only this job's nodes and GPUs (where it holds GPUs now)")
@click.option("--by-job", is_flag=True, help="start with a line per job holding GPUs (g toggles)")
@click.option("--no-color", is_flag=True, help="no colours (as NO_COLOR=1 does)")
@click.pass_obj
def top(
    c: Ctx,
    refresh: float,
    count: int,
    node: str | None,
    pattern: str,
    job: str | None,
    by_job: bool,
    no_color: bool,
) -> None:
    """The fleet live: a line per node, worst first; Enter on one for its GPUs, findings and host.

    Nodes are sorted by open findings (most severe first), then by lowest GPU
    utilization. Keys: up/down (j/k), PgUp/PgDn, Enter (a node's detail),
    Esc (back), / (filter nodes), g (a line per job, Enter for its nodes),
    e (explain the selected finding), r (refresh now), q (quit). One query
    per refresh, however many nodes.
    Without a terminal, or with --count, it prints updates as text.

    \b
    Examples:
      ironsight --collector 127.0.0.1:7070 top
      ironsight top --filter 'gpu-1*' --refresh 5
      ironsight top --node gpu-017 --count 1 --no-color
      ironsight top --by-job
    """
    if no_color:
        os.environ["NO_COLOR"] = "1"
    run_top(c, refresh, count, job=job, node=node, pattern=pattern, by_job=by_job)


def run_top(
    c: Ctx,
    refresh: float,
    count: int,
    alive: Callable[[], bool] = lambda: True,
    job: str | None = None,
    node: str | None = None,
    pattern: str = "",
    by_job: bool = False,
) -> None:
    session = Session(c.backend(), job)
    source = f"collector {c.collector}" if c.collector else str(c.db or "")
    try:
        if count or not (sys.stdin.isatty() and sys.stdout.isatty()):
            print_frames(session, refresh, count, alive, node, View(pattern=pattern, job=job, by_job=by_job))
        else:
            from ironsight.cli.top.app import TopApp  # Textual loads only for the live view

            TopApp(
                session, refresh, node, View(pattern=pattern, job=job, source=source, by_job=by_job), alive
            ).run()
    except KeyboardInterrupt:
        pass
    finally:
        session.close()


def print_frames(
    session: Session, refresh: float, count: int, alive: Callable[[], bool], node: str | None, view: View
) -> None:
    """The views as text, every row: for scripts, logs and pipes."""
    console = Console(no_color="NO_COLOR" in os.environ)
    shown = 0
    while alive():
        now = datetime.now(UTC).replace(tzinfo=None)
        try:
            snap = session.snapshot(node)
            view.width = console.width
            console.print(node_view(snap, node, view, now) if node else fleet_view(snap, view, now))
        except QueryError as exc:
            if count:  # a script asked for frames it cannot have: one line and a failing exit
                raise click.ClickException(str(exc)) from exc
            console.print(Text(f"waiting for data: {exc}", style="yellow"))
        shown += 1
        if count and shown >= count:
            break
        time.sleep(refresh)


COMMANDS = (top,)
