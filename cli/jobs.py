"""`ironsight jobs`: which jobs ran where, how busy their GPUs were, and what the detector found on them."""

from __future__ import annotations

from datetime import datetime

import click

from ironsight.cli.backend import QueryError, name_job, quote
from ironsight.cli.common import Ctx, emit, format_option, time_arg
from ironsight.collector.detect.sql import ts
from ironsight.core.unixtime import to_ns
from ironsight.v1 import telemetry_pb2 as pb


def jobs_sql(since: datetime, until: datetime, job: str | None) -> str:
    """Per job (or, for one job, per node and GPU): span, GPUs, mean utilization, findings."""
    # A span still open ends "now" for overlap; a finding counts where it overlaps the
    # span on the job's GPU, or on its node when it names no GPU (a port, the node).
    spans = f"""SELECT * FROM job_spans
        WHERE start_time <= {ts(until)} AND (end_time IS NULL OR end_time >= {ts(since)})
        {"" if job is None else f"AND job = {quote(job)}"}"""
    key = "s.job" if job is None else "s.job, s.node, s.gpu"
    return f"""
    WITH spans AS ({spans}),
    util AS (
        SELECT {key}, avg(g.util_gpu_percent) AS util
        FROM spans s JOIN gpu g ON g.node = s.node AND g.device = s.gpu
            AND g.time >= greatest(s.start_time, {ts(since)})
            AND g.time < least(coalesce(s.end_time, {ts(until)}), {ts(until)})
        GROUP BY ALL
    ),
    found AS (
        SELECT {key}, count(DISTINCT e.id) AS findings, string_agg(DISTINCT e.kind, ',') AS kinds
        FROM spans s JOIN events e ON e.node = s.node
            AND (e.device = s.gpu OR NOT regexp_matches(e.device, '^[0-9]+$'))
            AND e.start_time < coalesce(s.end_time, {ts(until)})
            AND coalesce(e.end_time, {ts(until)}) > s.start_time
        GROUP BY ALL
    ),
    per AS (
        SELECT {key}, any_value(s.source) AS source, count(DISTINCT s.node) AS nodes,
            count(DISTINCT (s.node, s.gpu)) AS gpus, min(s.start_time) AS start_time,
            CASE WHEN count(s.end_time) = count(*) THEN max(s.end_time) END AS end_time,
            any_value(s.attrs) AS attrs
        FROM spans s GROUP BY ALL
    )
    SELECT per.*, round(util.util, 1) AS gpu_util_mean_pct, coalesce(found.findings, 0) AS findings,
        found.kinds AS finding_kinds
    FROM per LEFT JOIN util USING ({key.replace("s.", "")}) LEFT JOIN found USING ({key.replace("s.", "")})
    ORDER BY per.start_time DESC, {key.replace("s.", "per.")}"""


@click.group(invoke_without_command=True)
@click.option(
    "--since", default="24h", show_default=True, help="jobs running since: 10m, 24h, 7d or an ISO time"
)
@click.option("--until", default="now", show_default=True, help="and before")
@click.option("--job", "job", help="one job: its nodes and GPUs, one row each")
@format_option
@click.pass_context
def jobs(ctx: click.Context, since: str, until: str, job: str | None) -> None:
    """Jobs and where they ran: nodes, GPUs, span, mean GPU utilization, findings.

    A job is what the agents found on each GPU (a Slurm job id, a Kubernetes
    pod, a systemd service, a mapping folder's id or --job NAME), or a name
    given by hand (`ironsight jobs name`); one that spans nodes is one job.
    An empty end_time: still running.

    \b
    Examples:
      ironsight jobs --since 7d
      ironsight jobs --job 4242 --format json
      ironsight jobs name llm-eval --node 'gpu-b*' --since 2026-12-01T08:00 --until 2026-12-01T20:00
    """
    if ctx.invoked_subcommand is not None:
        return
    c: Ctx = ctx.obj
    start, end = _range(since, until)
    emit(c.run(jobs_sql(start, end, job)), c.fmt, "jobs" if job is None else f"job {job}")


def _range(since: str, until: str) -> tuple[datetime, datetime]:
    start, end = time_arg(since), time_arg(until)
    if start > end:
        raise click.UsageError("--since is after --until")
    return start, end


def _send(c: Ctx, request: pb.NameJobRequest, title: str) -> None:
    try:
        done = name_job(c.db, c.collector, c.tls, request)
    except QueryError as exc:
        raise click.ClickException(str(exc)) from exc
    emit(done, c.fmt, title)


NODE_HELP = "a node id or a pattern ('gpu-b*', 'rack[12]-*'); give it again for more"


@jobs.command("name")
@click.argument("job")
@click.option("--node", "nodes", multiple=True, required=True, help=NODE_HELP)
@click.option(
    "--gpu", "gpus", multiple=True, help="a GPU index, again for more (default: every GPU each node reported)"
)
@click.option("--since", required=True, help="the job's start: 2h (ago) or an ISO time")
@click.option("--until", help="its end (default: until `ironsight jobs end`)")
@click.option(
    "--attr",
    "attrs",
    multiple=True,
    metavar="KEY=VALUE",
    help="kept with the job (user=alice); again for more",
)
@format_option
@click.pass_obj
def name_(
    c: Ctx, job: str, nodes: tuple[str, ...], gpus: tuple[str, ...], since: str, until: str | None,
    attrs: tuple[str, ...],
) -> None:  # fmt: skip
    """Names a job by hand over nodes' GPUs and a time range, for what no agent can place.

    A name wins over what the agents found on those GPUs while it lasts (the
    agents' looks stay stored); the newest name wins where two cover a GPU.
    Stored findings in the range take the job they hit; the live detector
    judges with the name from its next step (`ironsight detect` re-judges a
    past range). Through --collector it takes a reader's certificate.

    \b
    Examples:
      ironsight jobs name llm-eval --node 'gpu-b*' --since 2h
      ironsight jobs name 4242 --node n1 --node n2 --gpu 0 --gpu 1 --since 2026-12-01T08:00 --until 2026-12-01T20:00
    """
    if until is None and time_arg(since) > time_arg("now"):
        raise click.UsageError("--since is in the future; give --until too, or name it once it has started")
    start, end = _range(since, until or "now")
    pairs = dict(a.partition("=")[::2] for a in attrs)
    if any("=" not in a for a in attrs):
        raise click.UsageError("--attr takes KEY=VALUE")
    request = pb.NameJobRequest(
        action=pb.NameJobRequest.NAME, job=job, nodes=nodes, gpus=gpus, start_ns=to_ns(start),
        end_ns=to_ns(end) if until else 0, attrs=pairs,
    )  # fmt: skip
    _send(c, request, f"named {job}")


@jobs.command("end")
@click.argument("job")
@click.option("--at", default="now", show_default=True, help="when it ended: 10m (ago) or an ISO time")
@click.option("--node", "nodes", multiple=True, help=NODE_HELP + " (default: every node it is named on)")
@format_option
@click.pass_obj
def end_(c: Ctx, job: str, at: str, nodes: tuple[str, ...]) -> None:
    """Ends a job named by hand without an end (or with a later one).

    \b
    Examples:
      ironsight jobs end llm-eval
      ironsight jobs end llm-eval --at 10m --node gpu-b3
    """
    when = time_arg(at)
    request = pb.NameJobRequest(action=pb.NameJobRequest.END, job=job, nodes=nodes, end_ns=to_ns(when))
    _send(c, request, f"ended {job}")


@jobs.command("forget")
@click.argument("job")
@click.option("--node", "nodes", multiple=True, help=NODE_HELP + " (default: every node it is named on)")
@format_option
@click.pass_obj
def forget_(c: Ctx, job: str, nodes: tuple[str, ...]) -> None:
    """Removes a job's names given by hand: what the agents found shows again.

    \b
    Examples:
      ironsight jobs forget llm-eval
    """
    _send(c, pb.NameJobRequest(action=pb.NameJobRequest.FORGET, job=job, nodes=nodes), f"forgot {job}")


COMMANDS = (jobs,)
