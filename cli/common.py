"""What every `ironsight` subcommand shares: the backend it asks, and how it prints a table."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click
import pyarrow as pa
from rich.console import Console
from rich.table import Table

from ironsight.cli.backend import Backend, QueryError, open_backend, parse_time
from ironsight.core.transport import Tls

FORMATS = ["table", "json", "csv"]


class Ctx:
    def __init__(
        self, db: Path | None, collector: str | None, fmt: str, tls: Tls | None = None, insecure: bool = False
    ) -> None:
        self.db, self.collector, self.fmt, self.tls, self.insecure = db, collector, fmt, tls, insecure

    def backend(self) -> Backend:
        try:
            return open_backend(self.db, self.collector, self.tls)
        except QueryError as exc:
            raise click.ClickException(str(exc)) from exc

    def run(self, sql: str, max_rows: int = 100_000, what: str = "") -> pa.Table:
        """what: how to get fewer rows, said on stderr when the result stops at max_rows."""
        backend = self.backend()
        try:
            table = backend.sql(sql, max_rows)
        except QueryError as exc:
            raise click.ClickException(str(exc)) from exc
        finally:
            backend.close()
        if backend.truncated:
            click.echo(f"ironsight: stopped at --limit {max_rows} rows, more are in range{what}", err=True)
        return table


def step_ms(text: str) -> int:
    """A --step value (15s, 1m, 0.5) in milliseconds; ValueError says what is wrong with it. Imported
    here: the query engine (numpy, the PromQL parser) loads only for the commands that take a step."""
    from ironsight.collector.promql.api import parse_duration
    from ironsight.collector.promql.values import QueryError as PromQLError

    try:
        step = parse_duration(text, "step")
    except PromQLError as exc:
        raise ValueError(f"--step {text}: {exc}") from exc
    if step <= 0:
        raise ValueError(f"--step {text}: must be positive")
    return step


def time_arg(value: str) -> datetime:
    """A --since/--until/--at value, or the one line saying how to write one."""
    try:
        return parse_time(value)
    except QueryError as exc:
        raise click.ClickException(str(exc)) from exc


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


F = TypeVar("F", bound=Callable[..., Any])


def format_option(f: F) -> F:
    """--format on a subcommand too (`ironsight eval x.trace --format json`), overriding the group's."""

    def apply(ctx: click.Context, _: click.Parameter, value: str | None) -> None:
        obj = ctx.find_object(Ctx)
        if value and obj is not None:
            obj.fmt = value

    return click.option(
        "--format",
        "fmt_here",
        type=click.Choice(FORMATS),
        expose_value=False,
        callback=apply,
        help="table, json or csv (same as the global --format)",
    )(f)
