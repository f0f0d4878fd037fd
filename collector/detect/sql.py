"""SQL building blocks shared by the detectors, retention and the CLI: counter increments and step windows."""

from __future__ import annotations

from datetime import datetime


def ts(value: datetime) -> str:
    return f"TIMESTAMP '{value.isoformat(sep=' ')}'"


def counter_increase(col: str, prev: str) -> str:
    """A counter's increase from prev to col: the one place counter resets are handled.

    A counter that went down was reset (agent or driver restart, 32-bit wrap):
    like Prometheus, the new value counts as the increase since the reset. No
    previous value (the first sample) is no increase.
    """
    return f"CASE WHEN {prev} IS NULL THEN 0 WHEN {col} >= {prev} THEN {col} - {prev} ELSE {col} END"


def increment(col: str, partition: str = "node, device") -> str:
    """A raw counter's increase since the previous sample of its device."""
    return counter_increase(col, f"lag({col}) OVER (PARTITION BY {partition} ORDER BY time)")


def rolling(expr: str, window_s: int, step_s: int) -> str:
    """expr summed over the window ending at each step bucket."""
    return (
        f"sum({expr}) OVER (PARTITION BY node, device ORDER BY bucket "
        f"RANGE BETWEEN INTERVAL {window_s - step_s} SECOND PRECEDING AND CURRENT ROW)"
    )


def bucket_last(col: str) -> str:
    """A counter's last value in each step bucket (pair with bucket_increment)."""
    return f"arg_max({col}, time) AS {col}"


def bucket_increment(col: str) -> str:
    """A counter's increase over each step bucket, from the buckets' last values.

    Cheaper than per-sample increments over long lookbacks (one lag per bucket,
    not per sample); a reset is seen at bucket resolution.
    """
    return counter_increase(col, f"lag({col}) OVER (PARTITION BY node, device ORDER BY bucket)")


def bucket_increments(table: str, cols: tuple[str, ...], step_s: int, where: str, extra: str = "") -> str:
    """A subquery: each device's counter increments per step bucket (node, device, bucket, extra..., cols).

    extra: more aggregates over each bucket's samples (e.g. "count(*) AS n"), carried through.
    """
    lasts = ", ".join(bucket_last(c) for c in cols)
    incs = ", ".join(f"coalesce({bucket_increment(c)}, 0) AS {c}" for c in cols)
    names = ", ".join(a.rsplit(" AS ", 1)[1] for a in extra.split(", ")) + ", " if extra else ""
    more = f"{extra}, " if extra else ""
    return f"""(SELECT node, device, bucket, {names}{incs} FROM (
        SELECT node, device, time_bucket(INTERVAL {step_s} SECOND, time) AS bucket, {more}{lasts}
        FROM {table} WHERE {where} GROUP BY ALL))"""


def pcie_link_bytes_per_s(gen: str = "pcie_link_gen", width: str = "pcie_link_width") -> str:
    """A PCIe link's payload ceiling in bytes a second: GT/s per lane by generation, line code, lanes."""
    gts = f"CASE {gen} WHEN 1 THEN 2.5 WHEN 2 THEN 5 WHEN 3 THEN 8 WHEN 4 THEN 16 WHEN 5 THEN 32 WHEN 6 THEN 64 END"
    return f"({gts}) * 1e9 * {width} * (CASE WHEN {gen} >= 3 THEN 128.0 / 130 ELSE 0.8 END) / 8"


def gpu_jobs(rows: str, since: str, until: str) -> str:
    """rows (a CTE with node, device, step_end) with `job`: the job on that GPU at that step.

    A GPU no job is known to own ('') is judged with the others like it, as
    before there were jobs: a node that never said (an older agent, a trace,
    discovery off), or a run its agent could not place (a training started
    from a login shell: no Slurm job, pod or service). An idle GPU holds no
    memory and is not judged anyway. Where two jobs share a GPU, the first by name.
    """
    return f"""(SELECT r.*, coalesce(s.job, '') AS job
        FROM {rows} r LEFT JOIN (
            SELECT node, gpu, start_time, end_time, job FROM job_spans
            WHERE start_time <= {until} AND (end_time IS NULL OR end_time > {since})
        ) s ON s.node = r.node AND s.gpu = r.device AND s.start_time <= r.step_end
            AND (s.end_time IS NULL OR s.end_time > r.step_end)
        QUALIFY row_number() OVER (PARTITION BY r.node, r.device, r.step_end ORDER BY s.job) = 1)"""


def jobs_at(node: str, device: str, at: str) -> str:
    """A scalar subquery: the jobs (comma-separated, by name) where and when a finding is: on
    its GPU, or on any GPU of its node when it names none (a port, the node); NULL if none."""
    return f"""(SELECT string_agg(DISTINCT s.job, ',' ORDER BY s.job) FROM job_spans s
        WHERE s.node = {node} AND (s.gpu = {device} OR NOT regexp_matches({device}, '^[0-9]+$'))
            AND s.start_time <= {at} AND (s.end_time IS NULL OR s.end_time > {at}))"""


def node_jobs(rows: str, since: str, until: str) -> str:
    """rows (a CTE with node, step_end) with `job`: the job on most of the node's GPUs at that
    step ('' where none is known), for what belongs to the node, not a GPU (its NICs' ports)."""
    return f"""(SELECT r.*, coalesce(j.job, '') AS job FROM {rows} r LEFT JOIN (
            SELECT node, step_end, job FROM (
                SELECT k.node, k.step_end, s.job, count(*) AS gpus
                FROM (SELECT DISTINCT node, step_end FROM {rows}) k JOIN job_spans s ON s.node = k.node
                    AND s.start_time <= k.step_end AND (s.end_time IS NULL OR s.end_time > k.step_end)
                WHERE s.start_time <= {until} AND (s.end_time IS NULL OR s.end_time > {since})
                GROUP BY ALL)
            QUALIFY row_number() OVER (PARTITION BY node, step_end ORDER BY gpus DESC, job) = 1
        ) j ON j.node = r.node AND j.step_end = r.step_end)"""
