"""`ironsight detect`, `events`, `explain` and `eval`: the bottleneck detector from the command line."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import pyarrow as pa
from rich.console import Console
from rich.table import Table

from ironsight.cli.backend import QueryError, RemoteBackend, quote
from ironsight.cli.common import Ctx, emit, format_option, time_arg
from ironsight.collector.detect.thresholds import Thresholds, with_overrides

threshold_option = click.option(
    "--threshold",
    "thresholds",
    multiple=True,
    metavar="KEY=VALUE",
    help="override a detector threshold or window (repeatable), e.g. window_s=120",
)


def _thresholds(items: tuple[str, ...]) -> Thresholds:
    try:
        return with_overrides(items)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


@click.command()
@click.option(
    "--since", default="24h", show_default=True, help="start of the range: 10m, 24h, 7d or an ISO time (UTC)"
)
@click.option("--until", default="now", show_default=True, help="end of the range")
@click.option("--job", help="show only the findings that hit this job (all are stored)")
@threshold_option
@format_option
@click.pass_obj
def detect(c: Ctx, since: str, until: str, job: str | None, thresholds: tuple[str, ...]) -> None:
    """Run the detector over a stored range.

    Finds data starvation (with its cause), network jitter, stragglers,
    thermal throttling (graded pre-warning, warning, critical), power capping,
    XID events and hardware faults on every node and GPU at once. On the file
    (--db, which no collector may hold) the findings replace those of the same
    range in the events table. With --collector the collector runs it over
    what it stores and returns the findings without storing them (its live
    detector keeps the events table there).

    \b
    Examples:
      ironsight --db ./data/ironsight.duckdb detect --since 24h
      ironsight --collector 10.0.0.5:7070 detect --since 2h --threshold starved_peer_ratio=0.6
    """
    from ironsight.collector.database import StoreLocked, connect
    from ironsight.collector.detect.findings import detect as run_detect
    from ironsight.collector.detect.findings import store as store_findings
    from ironsight.collector.migrations import migrate

    start, end = time_arg(since), time_arg(until)
    if start >= end:
        raise click.UsageError("--since must be before --until")
    t = _thresholds(thresholds)
    if c.collector:
        remote = RemoteBackend(c.collector, c.tls)
        try:
            found = remote.detect(start, end, list(thresholds))
        except QueryError as exc:
            raise click.ClickException(str(exc)) from exc
        finally:
            remote.close()
    else:
        path = c.db or Path("data/ironsight.duckdb")
        if not path.exists():
            raise click.ClickException(f"no database at {path}")
        try:
            con = connect(path)
        except StoreLocked as exc:
            raise click.ClickException(f"{exc}; ask it with --collector HOST:PORT instead") from exc
        try:
            migrate(con)
            found = run_detect(con, start, end, t)
            store_findings(con, found, start, end)
        finally:
            con.close()
    if job is not None:
        hit = [job in (j or "").split(",") for j in found.column("job").to_pylist()]
        found = found.filter(pa.array(hit, pa.bool_()))
    emit(found.drop_columns(["evidence"]), c.fmt, f"{found.num_rows} findings")
    _coarse_notes(c)


def _coarse_notes(c: Ctx) -> None:
    """On stderr: the nodes sampled too coarsely for some findings (remote-written at 15 s, say)."""
    from ironsight.collector.detect.resolution import COARSE_SQL, notes

    rows = c.run(COARSE_SQL).to_pylist()
    for line in notes((r["node"], float(r["interval_s"])) for r in rows):
        click.echo(line, err=True)


@click.command()
@click.option("--open", "only_open", is_flag=True, help="only findings still open")
@click.option(
    "--kind", help="data_starvation, network_jitter, straggler, thermal, power_cap, xid, hardware_fault"
)
@click.option("--node", help="only this node")
@click.option("--job", help="only findings that hit this job (see: ironsight jobs)")
@click.option("--evidence", is_flag=True, help="include each finding's evidence (JSON)")
@format_option
@click.pass_obj
def events(
    c: Ctx, only_open: bool, kind: str | None, node: str | None, job: str | None, evidence: bool
) -> None:
    """List the detector's findings, newest first.

    \b
    Examples:
      ironsight events --open
      ironsight events --kind thermal --node gpu-017 --evidence --format json
      ironsight events --job 4242
    """
    where = ["TRUE"]
    if only_open:
        where.append("end_time IS NULL")
    if kind:
        where.append(f"kind = {quote(kind)}")
    if node:
        where.append(f"node = {quote(node)}")
    if job:
        where.append(f"list_contains(string_split(job, ','), {quote(job)})")
    cols = "id, kind, severity, node, device, job, start_time, end_time, cause" + (
        ", evidence" if evidence else ""
    )
    emit(
        c.run(f"SELECT {cols} FROM events WHERE {' AND '.join(where)} ORDER BY start_time DESC, id"),
        c.fmt,
        "findings",
    )
    _coarse_notes(c)


@click.command()
@click.argument("finding_id", metavar="ID", type=int)
@click.option("--no-plot", is_flag=True, help="evidence only, no plots")
@format_option
@click.pass_obj
def explain(c: Ctx, finding_id: int, no_plot: bool) -> None:
    """One finding: what, where, when, the numbers that triggered it, and its metrics plotted.

    The plots cover the finding's interval and some context either side
    (half its length, 1 to 10 minutes), with its start and end marked.
    With --format json: the finding and its evidence as one object.

    \b
    Examples:
      ironsight events --open
      ironsight explain 42
    """
    from ironsight.offline import explain as ex

    backend = c.backend()
    try:
        f = ex.finding(backend, finding_id)
        if f is None:
            raise click.ClickException(f"no finding with id {finding_id} (see: ironsight events)")
        if c.fmt != "table":
            f["evidence"] = json.loads(f["evidence"] or "{}")
            click.echo(json.dumps(f, default=str))
            return
        now = datetime.now(UTC).replace(tzinfo=None)
        plots = [] if no_plot else ex.plots(backend, f, now)
    except QueryError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        backend.close()
    lines, evidence = explanation(f, now)
    for line in lines:
        click.echo(line)
    Console().print(evidence)
    for p in plots:
        click.echo(p)


def explanation(f: dict[str, Any], now: datetime) -> tuple[list[str], Table]:
    """What `explain` says of one finding: what, where and when (lines), and its evidence at its peak."""
    evidence = json.loads(f["evidence"] or "{}")
    end = f["end_time"]
    lasted = ((end or now) - f["start_time"]).total_seconds()
    head = (
        f"finding {f['id']}: {f['kind']} ({f['severity']}) on {f['node']}"
        + (f" device {f['device']}" if f["device"] else "")
        + (f", cause {f['cause']}" if f["cause"] else "")
    )
    when = (
        f"  {f['start_time']:%Y-%m-%d %H:%M:%S} to "
        + (f"{end:%H:%M:%S} ({lasted:.0f} s)" if end else f"now, open ({lasted:.0f} s so far)")
        + f", {evidence.get('steps', '?')} steps flagged"
    )
    job = f"  job: {f['job']}" if f.get("job") else "  job: none known"
    peak = evidence.get("peak") or {}
    out = Table(title=f"evidence at its peak (window ending {evidence.get('peak_window_end', '?')})")
    out.add_column("figure")
    out.add_column("value", justify="right")
    for key, value in peak.items():
        out.add_row(key, "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value))
    return [head, when, job], out


@click.command("eval")
@click.argument("traces", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--by-job", is_flag=True, help="a row per job and kind (a label in the job its GPUs were in)")
@threshold_option
@format_option
@click.pass_obj
def eval_(c: Ctx, traces: tuple[Path, ...], by_job: bool, thresholds: tuple[str, ...]) -> None:
    """Score the detector on labelled traces: range-based precision and recall, and latency, per kind.

    Precision and recall are range-based (Tatbul et al., NeurIPS 2018; flat
    bias, cardinality 1/x, no existence reward), never point-adjusted F1.
    Latency runs from a label's start to the end of the first window that
    alerted. Findings on traces without labels count against precision.

    \b
    Examples:
      ironsight simulate --scenario mixed --nodes 4 --gpus 8 --seed 9 --out m.trace
      ironsight eval m.trace tests/traces/healthy-2n2g.trace
      ironsight eval *.trace --format json
      ironsight eval cluster.trace --by-job
    """
    from ironsight.core.trace import TraceError
    from ironsight.offline.evaluate import evaluate, table

    t = _thresholds(thresholds)
    try:
        scores = evaluate(list(traces), t, by_job)
    except TraceError as exc:
        raise click.ClickException(str(exc)) from exc
    emit(pa.Table.from_pylist(table(scores, t.step_s, by_job)), c.fmt, "detector accuracy")


COMMANDS = (detect, events, explain, eval_)
