"""`ironsight jobs`: which jobs ran where, how busy their GPUs were, and what the detector found on them."""

from __future__ import annotations

from datetime import datetime

import click

from ironsight.cli.backend import QueryError, parse_time, quote
from ironsight.cli.common import Ctx, emit, format_option
from ironsight.collector.detect.sql import ts


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


@click.command()
@click.option(
    "--since", default="24h", show_default=True, help="jobs running since: 10m, 24h, 7d or an ISO time"
)
@click.option("--until", default="now", show_default=True, help="and before")
@click.option("--job", "job", help="one job: its nodes and GPUs, one row each")
@format_option
@click.pass_obj
def jobs(c: Ctx, since: str, until: str, job: str | None) -> None:
    """Jobs and where they ran: nodes, GPUs, span, mean GPU utilization, findings.

    A job is what the agents found on each GPU (a Slurm job id, a Kubernetes
    pod, a systemd service, a mapping folder's id or --job NAME); one that
    spans nodes is one job. An empty end_time: still running.

    \b
    Examples:
      ironsight jobs --since 7d
      ironsight jobs --job 4242 --format json
    """
    try:
        start, end = parse_time(since), parse_time(until)
    except QueryError as exc:
        raise click.ClickException(str(exc)) from exc
    if start > end:
        raise click.UsageError("--since is after --until")
    emit(c.run(jobs_sql(start, end, job)), c.fmt, "jobs" if job is None else f"job {job}")


COMMANDS = (jobs,)
