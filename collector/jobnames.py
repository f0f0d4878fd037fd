"""Jobs named by hand: a job over some nodes' GPUs and a time range, laid over what the agents found.

`agent_jobs` keeps the agents' looks as sent; `gpu_jobs`, which everything
else reads, is those looks with the names laid over them, rebuilt for a node
whenever either changes (relook). A name wins where it lasts; the newest name
wins where two cover one GPU. Findings already stored get the job they hit
under the new names; the live detector judges with them from its next step.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from ironsight.collector.detect.sql import jobs_at, ts
from ironsight.core.unixtime import from_ns
from ironsight.v1 import telemetry_pb2 as pb

NODES = "relook_nodes"
MAX_JOB_CHARS = 200
CONFLICT_TRIES = 5  # the live detector may be updating the same findings: retry the transaction

# gpu_jobs for the nodes in NODES: a look wherever an agent looked or a name starts or ends,
# each GPU's job from the newest name covering it, else the agent's last look, else none.
LAID = f"""
WITH names AS (SELECT * FROM job_names WHERE node IN (SELECT node FROM {NODES})),
seen AS (SELECT DISTINCT node, time FROM agent_jobs WHERE node IN (SELECT node FROM {NODES})),
times AS (
    SELECT node, time FROM seen
    UNION SELECT node, start_time FROM names
    UNION SELECT node, end_time FROM names WHERE end_time IS NOT NULL
),
looks AS (
    SELECT t.node, t.time, s.time AS seen FROM times t
    ASOF LEFT JOIN seen s ON t.node = s.node AND t.time >= s.time
),
named AS (
    SELECT l.node, l.time, n.gpu, arg_max(n.job, n.named_at) AS job, arg_max(n.attrs, n.named_at) AS attrs
    FROM looks l JOIN names n ON n.node = l.node
        AND l.time >= n.start_time AND (n.end_time IS NULL OR l.time < n.end_time)
    GROUP BY ALL
),
found AS (
    SELECT l.node, l.time, j.gpu, j.job, j.source, j.attrs
    FROM looks l JOIN agent_jobs j ON j.node = l.node AND j.time = l.seen
),
unnamed AS (
    SELECT l.node, l.time, g.gpu FROM looks l JOIN (SELECT DISTINCT node, gpu FROM names) g USING (node)
)
SELECT node, time, gpu, job, 'manual' AS source, attrs FROM named
UNION ALL
SELECT * FROM found f
WHERE NOT EXISTS (SELECT 1 FROM named n WHERE n.node = f.node AND n.time = f.time AND n.gpu = f.gpu)
UNION ALL
SELECT u.node, u.time, u.gpu, NULL, NULL, NULL FROM unnamed u
WHERE NOT EXISTS (SELECT 1 FROM named n WHERE n.node = u.node AND n.time = u.time AND n.gpu = u.gpu)
  AND NOT EXISTS (SELECT 1 FROM found f WHERE f.node = u.node AND f.time = u.time AND f.gpu = u.gpu)
"""

NAMED = pa.schema(
    [("job", pa.string()), ("node", pa.string()), ("gpu", pa.string()),
     ("start_time", pa.timestamp("us")), ("end_time", pa.timestamp("us"))]
)  # fmt: skip


class NamingError(ValueError):
    """A name that cannot be given (bad job name, no such node, an empty range): one line, nothing stored."""


@dataclass(frozen=True)
class Naming:
    job: str
    nodes: tuple[str, ...]  # node ids or glob patterns (*, ?, [...])
    start: datetime  # naive UTC
    end: datetime | None = None  # None: until ended (ironsight jobs end)
    gpus: tuple[str, ...] = ()  # GPU indexes; none: every GPU each node has reported
    attrs: dict[str, str] = field(default_factory=dict)


def check_job(job: str) -> str:
    """A job name as findings carry it: not empty, no comma (a finding lists several with commas)."""
    if not job.strip():
        raise NamingError("a job name must not be empty")
    if len(job) > MAX_JOB_CHARS:
        raise NamingError(f"a job name is at most {MAX_JOB_CHARS} characters (got {len(job)})")
    if "," in job or re.search(r"[\x00-\x1f\x7f]", job):
        raise NamingError(f"a job name holds no comma or control character: {job!r}")
    return job


def relook(con: Any, nodes: list[str]) -> None:
    """Rebuilds these nodes' gpu_jobs from agent_jobs and job_names (inside the caller's transaction)."""
    if not nodes:
        return
    con.register(NODES, pa.table({"node": pa.array(nodes, pa.string())}))
    try:
        con.execute(f"DELETE FROM gpu_jobs WHERE node IN (SELECT node FROM {NODES})")
        con.execute(f"INSERT INTO gpu_jobs {LAID}")
    finally:
        con.unregister(NODES)


def named_nodes(con: Any, nodes: list[str]) -> set[str]:
    """Which of these nodes a name has ever touched (their looks must be laid, not copied)."""
    if not nodes:
        return set()
    rows = con.execute("SELECT DISTINCT node FROM job_names WHERE list_contains(?, node)", [nodes]).fetchall()
    return {r[0] for r in rows}


def name(con: Any, n: Naming) -> pa.Table:
    """Stores the name on every GPU it covers; returns one row per node and GPU named."""
    check_job(n.job)
    if n.end is not None and not n.start < n.end:
        raise NamingError("the name's start must be before its end")
    if not n.nodes:
        raise NamingError("name at least one node (--node NODE or a pattern such as 'gpu-a*')")
    for key, value in n.attrs.items():
        if not key or "\x00" in key + value:
            raise NamingError(f"an attribute needs a key and no NUL: {key!r}={value!r}")

    def work(cur: Any) -> pa.Table:
        gpus = _gpus(cur, n)
        rows = pa.table({
            "job": [n.job] * len(gpus), "node": [g[0] for g in gpus], "gpu": [g[1] for g in gpus],
            "start_time": pa.array([n.start] * len(gpus), pa.timestamp("us")),
            "end_time": pa.array([n.end] * len(gpus), pa.timestamp("us")),
        }, schema=NAMED)  # fmt: skip
        cur.register("named_rows", rows)
        try:
            cur.execute(
                "INSERT INTO job_names SELECT job, node, gpu, start_time, end_time, ?::MAP(VARCHAR, VARCHAR),"
                " now()::TIMESTAMP FROM named_rows",
                [n.attrs],
            )
        finally:
            cur.unregister("named_rows")
        nodes = sorted({g[0] for g in gpus})
        relook(cur, nodes)
        _relabel(cur, nodes, n.start, n.end)
        return rows

    return _transaction(con, work)


def end(con: Any, job: str, at: datetime, nodes: tuple[str, ...] = ()) -> pa.Table:
    """Ends the job's names still lasting at `at` (on these node patterns, or all); the rows ended."""
    check_job(job)
    where = "job = $job AND start_time < $at AND (end_time IS NULL OR end_time > $at)" + _node_filter(nodes)

    def work(cur: Any) -> pa.Table:
        params = {"job": job, "at": at} | _patterns(nodes)
        ended = cur.sql(
            f"SELECT job, node, gpu, start_time FROM job_names WHERE {where}", params=params
        ).to_arrow_table()
        if not ended.num_rows:
            raise NamingError(f"no name of job {job!r} lasts at {at.isoformat(sep=' ')}")
        cur.execute(f"UPDATE job_names SET end_time = $at WHERE {where}", params)
        touched = sorted(set(ended.column("node").to_pylist()))
        relook(cur, touched)
        _relabel(cur, touched, at, None)
        return ended.append_column("end_time", pa.array([at] * ended.num_rows, pa.timestamp("us")))

    return _transaction(con, work)


def forget(con: Any, job: str, nodes: tuple[str, ...] = ()) -> pa.Table:
    """Removes the job's names (on these node patterns, or all); the agents' looks show again."""
    check_job(job)
    where = "job = $job" + _node_filter(nodes)

    def work(cur: Any) -> pa.Table:
        params = {"job": job} | _patterns(nodes)
        gone = cur.sql(
            f"SELECT job, node, gpu, start_time, end_time FROM job_names WHERE {where}", params=params
        ).to_arrow_table()
        if not gone.num_rows:
            raise NamingError(f"no job {job!r} was named by hand" + (" on those nodes" if nodes else ""))
        cur.execute(f"DELETE FROM job_names WHERE {where}", params)
        touched = sorted(set(gone.column("node").to_pylist()))
        relook(cur, touched)
        starts = [t for t in gone.column("start_time").to_pylist() if t is not None]
        _relabel(cur, touched, min(starts), None)
        return gone

    return _transaction(con, work)


def _patterns(nodes: tuple[str, ...]) -> dict[str, Any]:
    return {"patterns": list(nodes)} if nodes else {}


def _node_filter(nodes: tuple[str, ...]) -> str:
    return " AND list_bool_or([node GLOB p FOR p IN $patterns])" if nodes else ""


def _gpus(con: Any, n: Naming) -> list[tuple[str, str]]:
    """(node, gpu) for each GPU named: the nodes matching the patterns, their GPUs as reported."""
    found = con.execute(
        "SELECT node FROM nodes WHERE list_bool_or([node GLOB p FOR p IN $p]) ORDER BY node",
        {"p": list(n.nodes)},
    ).fetchall()
    nodes = [r[0] for r in found]
    if not nodes:
        raise NamingError(f"no stored node matches {', '.join(n.nodes)} (see: ironsight nodes)")
    # The inventory, the agents' looks (they list every GPU, owned or not), or the samples.
    have = con.execute(
        """SELECT node, device FROM devices WHERE kind = 'gpu' AND list_contains($n, node)
           UNION SELECT node, gpu FROM agent_jobs WHERE list_contains($n, node)
           UNION SELECT DISTINCT node, device FROM gpu WHERE list_contains($n, node)""",
        {"n": nodes},
    ).fetchall()
    by_node: dict[str, list[str]] = {}
    for node, device in have:
        by_node.setdefault(node, []).append(device)
    out = []
    for node in nodes:
        gpus = sorted(by_node.get(node, []), key=lambda d: (len(d), d))
        if n.gpus:
            missing = [g for g in n.gpus if g not in gpus]
            if missing:
                raise NamingError(f"node {node} has no GPU {', '.join(missing)} (it reported: {_list(gpus)})")
            gpus = list(n.gpus)
        if not gpus:
            raise NamingError(f"node {node} has reported no GPU: nothing to name there")
        out += [(node, g) for g in gpus]
    return out


def _list(gpus: list[str]) -> str:
    return ", ".join(gpus) or "none"


def _relabel(con: Any, nodes: list[str], start: datetime, until: datetime | None) -> None:
    """Findings on these nodes from start (to until) carry the jobs they hit under the new looks."""
    bound = f"AND start_time < {ts(until)}" if until is not None else ""
    con.execute(
        f"""UPDATE events SET job = {jobs_at("events.node", "events.device", "events.start_time", "TIMESTAMP '9999-01-01'")}
            WHERE list_contains($n, node) AND coalesce(end_time, TIMESTAMP '9999-01-01') > {ts(start)} {bound}""",
        {"n": nodes},
    )


def _transaction(con: Any, work: Any) -> pa.Table:
    """Runs work(con) in one transaction, again if a concurrent writer (the live detector) conflicts."""
    for attempt in range(CONFLICT_TRIES):
        con.execute("BEGIN TRANSACTION")
        try:
            out: pa.Table = work(con)
            con.execute("COMMIT")
            return out
        except duckdb.TransactionException:
            con.execute("ROLLBACK")
            if attempt == CONFLICT_TRIES - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
        except Exception:
            con.execute("ROLLBACK")
            raise
    raise AssertionError("unreachable")


def apply(con: Any, request: pb.NameJobRequest) -> pa.Table:
    """A NameJob request (from `ironsight jobs name/end/forget`, local or through the collector)."""
    nodes, job = tuple(request.nodes), request.job
    if request.action == pb.NameJobRequest.END:
        return end(con, job, from_ns(request.end_ns), nodes)
    if request.action == pb.NameJobRequest.FORGET:
        return forget(con, job, nodes)
    return name(
        con,
        Naming(
            job, nodes, from_ns(request.start_ns), from_ns(request.end_ns) if request.end_ns else None,
            tuple(request.gpus), dict(request.attrs),
        ),
    )  # fmt: skip
