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


def _looks(rows: str, until: str) -> str:
    """rows (node, step_end, ...) with `look`: the time of the node's last look at its GPUs' jobs
    at or before step_end (NULL: none yet). A look holds until the node's next one; the collector
    stores one on each change, so a long job's only look may be days old. An as-of join over the
    looks, where a view of every look's span (job_spans) cost each live step several times more."""
    return f"""(SELECT r.*, l.time AS look FROM {rows} r ASOF LEFT JOIN (
            SELECT DISTINCT node, time FROM gpu_jobs WHERE time <= {until}
        ) l ON r.node = l.node AND r.step_end >= l.time)"""


def last_looks(until: str | None = None) -> str:
    """A subquery: (node, gpu, job) of each node's last look at its GPUs' jobs at or before until
    (or ever), the GPUs it found in a job only: who owns each GPU now, as far as stored."""
    bound = f"WHERE time <= {until}" if until else ""
    return f"""(SELECT j.node, j.gpu, j.job FROM gpu_jobs j
        JOIN (SELECT node, max(time) AS time FROM gpu_jobs {bound} GROUP BY node) l
            ON j.node = l.node AND j.time = l.time
        WHERE j.job IS NOT NULL)"""


def _listed(until: str) -> str:
    return f"(SELECT node, time, gpu, job FROM gpu_jobs WHERE job IS NOT NULL AND time <= {until})"


def gpu_jobs(rows: str, until: str) -> str:
    """rows (a CTE with node, device, step_end, none after until) with `job`: the job on that GPU
    at that step.

    A GPU no job is known to own ('') is judged with the others like it, as
    before there were jobs: a node that never said (an older agent, a trace,
    discovery off), or a run its agent could not place (a training started
    from a login shell: no Slurm job, pod or service). An idle GPU holds no
    memory and is not judged anyway. Where two jobs share a GPU, the first by name.
    """
    return f"""(SELECT r.* EXCLUDE (look), coalesce(j.job, '') AS job
        FROM {_looks(rows, until)} r LEFT JOIN {_listed(until)} j
            ON j.node = r.node AND j.time = r.look AND j.gpu = r.device
        QUALIFY row_number() OVER (PARTITION BY r.node, r.device, r.step_end ORDER BY j.job) = 1)"""


def node_jobs(rows: str, until: str) -> str:
    """rows (a CTE with node, step_end, none after until) with `job`: the job on most of the
    node's GPUs at that step ('' where none is known), for what belongs to the node, not a GPU
    (its NICs' ports)."""
    keys = f"(SELECT DISTINCT node, step_end FROM {rows})"
    return f"""(SELECT r.*, coalesce(j.job, '') AS job FROM {rows} r LEFT JOIN (
            SELECT k.node, k.step_end, g.job, count(*) AS gpus
            FROM {_looks(keys, until)} k JOIN {_listed(until)} g ON g.node = k.node AND g.time = k.look
            GROUP BY k.node, k.step_end, g.job
            QUALIFY row_number() OVER (PARTITION BY k.node, k.step_end ORDER BY count(*) DESC, g.job) = 1
        ) j ON j.node = r.node AND j.step_end = r.step_end)"""


def jobs_at(node: str, device: str, at: str, until: str) -> str:
    """A scalar subquery: the jobs (comma-separated, by name) where and when a finding is: on
    its GPU, or on any GPU of its node when it names none (a port, the node); NULL if none.
    until: no `at` is later (the end of the range judged)."""
    return f"""(SELECT string_agg(DISTINCT j.job, ',' ORDER BY j.job) FROM {_listed(until)} j
        WHERE j.node = {node} AND (j.gpu = {device} OR NOT regexp_matches({device}, '^[0-9]+$'))
            AND j.time = (SELECT max(time) FROM gpu_jobs WHERE node = {node} AND time <= {at}))"""
