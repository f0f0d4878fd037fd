"""Queries over stored telemetry, through a running collector or straight from the DuckDB file.

DuckDB allows one writer: while a collector holds the file, the CLI asks it
over gRPC (RemoteBackend); otherwise it opens the file read-only
(LocalBackend). Both return Arrow tables, so every command works on either.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import duckdb
import grpc
import pyarrow as pa

from ironsight.collector.database import StoreLocked, connect, run_query
from ironsight.collector.detect.sql import counter_increase, last_looks
from ironsight.collector.jobnames import NamingError
from ironsight.collector.jobnames import apply as apply_naming
from ironsight.collector.migrations import migrate
from ironsight.core.flags import parse_duration
from ironsight.core.schema import TABLES
from ironsight.core.transport import Tls, channel
from ironsight.core.unixtime import to_ns
from ironsight.v1 import telemetry_pb2 as pb
from ironsight.v1 import telemetry_pb2_grpc as pb_grpc

DEFAULT_MAX_ROWS = 100_000
QUERY_DEADLINE_S = 30.0
DETECT_DEADLINE_S = 600.0  # a day of a large fleet takes a while


class QueryError(Exception):
    """A user-facing problem: one line that says what is wrong and what to do."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code  # the collector's gRPC status name, when it refused


class Backend(Protocol):
    truncated: bool  # the last sql() stopped at max_rows with more rows left

    def sql(self, query: str, max_rows: int = DEFAULT_MAX_ROWS) -> pa.Table: ...

    def close(self) -> None: ...


class LocalBackend:
    def __init__(self, path: Path) -> None:
        try:
            self.con = connect(path, read_only=True)
        except StoreLocked as exc:
            raise QueryError(f"{exc}; ask it instead with --collector HOST:PORT") from exc
        except FileNotFoundError as exc:
            raise QueryError(f"{exc}; start a collector with --db {path} first") from exc

    truncated = False  # the last sql() stopped at max_rows with more rows left

    def sql(self, query: str, max_rows: int = DEFAULT_MAX_ROWS) -> pa.Table:
        try:
            table, self.truncated = run_query(self.con, query, max_rows)
        except ValueError as exc:
            raise QueryError(str(exc)) from exc
        return table

    def close(self) -> None:
        self.con.close()


class RemoteBackend:
    truncated = False  # the last sql() stopped at max_rows with more rows left

    def __init__(self, target: str, tls: Tls | None = None) -> None:
        self.target = target
        self.channel = channel(target, tls)
        self.stub = pb_grpc.QueryStub(self.channel)

    def sql(self, query: str, max_rows: int = DEFAULT_MAX_ROWS) -> pa.Table:
        return self._call(self.stub.Sql, pb.QueryRequest(sql=query, max_rows=max_rows), QUERY_DEADLINE_S)

    def detect(self, start: datetime, end: datetime, thresholds: list[str]) -> pa.Table:
        """The collector's detector over [start, end] (naive UTC); findings are returned, not stored."""
        req = pb.DetectRequest(start_ns=to_ns(start), end_ns=to_ns(end), thresholds=thresholds)
        return self._call(self.stub.Detect, req, DETECT_DEADLINE_S)

    def name_job(self, request: pb.NameJobRequest) -> pa.Table:
        return self._call(self.stub.NameJob, request, QUERY_DEADLINE_S)

    def _call(self, method: Any, request: Any, timeout: float) -> pa.Table:
        try:
            resp = method(request, timeout=timeout)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                raise QueryError(
                    f"collector {self.target} is unreachable; is ironsight-collector running?"
                ) from exc
            raise QueryError(f"{exc.details()}", exc.code().name) from exc
        self.truncated = bool(resp.truncated)
        return pa.ipc.open_stream(resp.arrow_ipc).read_all()

    def close(self) -> None:
        self.channel.close()


def parse_time(value: str, now: datetime | None = None) -> datetime:
    """'10m' (ago), 'now', or an ISO timestamp (UTC unless it says otherwise) -> naive UTC datetime."""
    now = now or datetime.now(UTC).replace(tzinfo=None)
    value = value.strip()
    if value == "now":
        return now
    if value[-1:].isalpha() and value[:-1].replace(".", "", 1).isdigit():
        try:
            return now - timedelta(seconds=parse_duration(value))
        except ValueError:
            pass
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise QueryError(f"{value!r} is not a time: use e.g. 10m, 2h, 1d or 2026-11-23T10:00:00") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class Metric:
    table: str
    column: str
    counter: bool


def parse_metric(name: str) -> Metric:
    """'gpu.temperature_celsius' -> the table and column, with a helpful error for typos."""
    table, _, column = name.partition(".")
    schema = TABLES.get(table)
    if schema is None:
        raise QueryError(f"unknown table {table!r} in {name!r}; tables: {', '.join(sorted(TABLES))}")
    try:
        f = schema.field(column)
    except KeyError:
        near = [
            c for c in schema.field_names if column and (column in c or c.startswith(column.split("_")[0]))
        ]
        hint = f"; did you mean {', '.join(table + '.' + c for c in near[:4])}?" if near else ""
        raise QueryError(
            f"{table} has no column {column!r}{hint} (columns: ironsight series --list)"
        ) from None
    return Metric(table, column, f.kind == "counter")


def series_sql(
    metric: Metric,
    node: str | None,
    device: str | None,
    since: datetime,
    until: datetime,
    rate: bool,
    job: str | None = None,
    step_ms: int = 0,
) -> str:
    """step_ms: one row per node, device and step from `since`: a gauge's mean, a counter's mean rate."""
    where = [
        f"time >= TIMESTAMP {quote(since.isoformat(sep=' '))}",
        f"time <= TIMESTAMP {quote(until.isoformat(sep=' '))}",
    ]
    if node:
        where.append(f"node = {quote(node)}")
    if device is not None:
        where.append(f"device = {quote(device)}")
    cond = " AND ".join(where)
    if job is not None:
        cond += f" AND {_while_job(job, metric.table)}"
    col = metric.column
    if not rate:
        # A row without this column (another device's, a scrape that lacked it) is no sample of it.
        raw = (f"SELECT time, node, device, {col} AS value, 'raw' AS source FROM {metric.table} "
               f"WHERE {cond} AND {col} IS NOT NULL")  # fmt: skip
    else:
        raw = f"""
        SELECT time, node, device, {counter_rate(col)} AS value, 'raw' AS source
        FROM {metric.table} WHERE {cond}
        WINDOW w AS (PARTITION BY node, device ORDER BY time)
        QUALIFY value IS NOT NULL"""
    # Where the raw samples have been pruned, the one-minute rollups answer: the mean of a gauge, a
    # counter's increase per second. Both parts together, each minute once.
    value = "increase / 60" if rate else "mean"
    rolled = f"""
        SELECT time, node, device, {value} AS value, 'rollup 1m' AS source FROM rollups_1m
        WHERE tbl = {quote(metric.table)} AND col = {quote(col)}
          AND {cond.replace(f"{metric.table}.", "rollups_1m.")} AND {value} IS NOT NULL
          AND time + INTERVAL 1 MINUTE <= coalesce((SELECT min(time) FROM {metric.table}), TIMESTAMP '9999-01-01')"""
    if step_ms:
        bucket = f"time_bucket(to_microseconds({step_ms * 1000}), time, TIMESTAMP {quote(since.isoformat(sep=' '))})"
        return f"""SELECT {bucket} AS time, node, device, avg(value) AS value, min(source) AS source
            FROM ({raw} UNION ALL {rolled}) GROUP BY ALL ORDER BY node, device, time"""
    return f"SELECT * FROM ({raw} UNION ALL {rolled}) ORDER BY node, device, time"


def _while_job(job: str, table: str) -> str:
    """Rows of `table` where and while the job ran: on its GPUs for GPU tables, its nodes for the others."""
    gpu = f"s.gpu = {table}.device AND " if table.startswith("gpu") else ""
    return (
        f"EXISTS (SELECT 1 FROM job_spans s WHERE s.job = {quote(job)} AND s.node = {table}.node AND {gpu}"
        f"s.start_time <= {table}.time AND (s.end_time IS NULL OR s.end_time > {table}.time))"
    )


def counter_rate(col: str) -> str:
    """Per-second increase of a raw counter over window w (resets handled by counter_increase)."""
    dt = "epoch(time - lag(time) OVER w)"
    return f"CASE WHEN {dt} <= 0 THEN NULL ELSE ({counter_increase(col, f'lag({col}) OVER w')}) / {dt} END"


NODES_SQL = """
    SELECT n.node, n.hostname, n.kernel, n.agent_version, n.interval_s,
           coalesce(d.gpus, 0) AS gpus, coalesce(d.nvme, 0) AS nvme, coalesce(d.nics, 0) AS nics,
           coalesce(d.rdma_ports, 0) AS rdma_ports, n.first_seen, n.last_seen
    FROM nodes n LEFT JOIN (
        SELECT node, count(*) FILTER (kind = 'gpu') AS gpus, count(*) FILTER (kind = 'nvme') AS nvme,
               count(*) FILTER (kind = 'nic') AS nics, count(*) FILTER (kind = 'rdma') AS rdma_ports
        FROM devices GROUP BY node
    ) d USING (node)
    ORDER BY n.node"""


def _latest_two(table: str, columns: str, window_s: float) -> str:
    """The last two rows per (node, device) in a recent window: enough for a rate."""
    return f"""
        SELECT node, device, time, {columns}
        FROM {table}
        WHERE time >= (SELECT max(time) FROM {table}) - INTERVAL {int(window_s)} SECOND
        QUALIFY row_number() OVER (PARTITION BY node, device ORDER BY time DESC) <= 2"""


def top_host_sql(window_s: float = 30) -> str:
    """One row per node: CPU busy, load, memory, disk and network rates from the latest two samples."""
    busy = "user_seconds + nice_seconds + system_seconds + irq_seconds + softirq_seconds + coalesce(steal_seconds, 0)"
    total = f"{busy} + idle_seconds + coalesce(iowait_seconds, 0)"
    cpu_cols = f"{busy} AS busy, {total} AS total"
    return f"""
    WITH cpu2 AS ({_latest_two("cpu", cpu_cols, window_s)}),
    cpu AS (
        SELECT node, 100 * sum(busy - prev_busy) / nullif(sum(total - prev_total), 0) AS cpu_busy_pct,
               count(*) AS cores
        FROM (SELECT *, lag(busy) OVER w AS prev_busy, lag(total) OVER w AS prev_total FROM cpu2
              WINDOW w AS (PARTITION BY node, device ORDER BY time))
        WHERE prev_total IS NOT NULL GROUP BY node),
    load AS (SELECT node, arg_max(load1, time) AS load1 FROM load GROUP BY node),
    mem AS (SELECT node, arg_max(100.0 * (mem_total_bytes - coalesce(mem_available_bytes, mem_free_bytes))
                   / nullif(mem_total_bytes, 0), time) AS mem_used_pct,
                   arg_max(mem_total_bytes, time) AS mem_total_bytes FROM memory GROUP BY node),
    disk2 AS ({_latest_two("disk", "read_bytes, written_bytes", window_s)}),
    disk AS (
        SELECT node, sum(rd) AS disk_read_bps, sum(wr) AS disk_write_bps FROM (
            SELECT node, {counter_rate("read_bytes")} AS rd, {counter_rate("written_bytes")} AS wr FROM disk2
            WINDOW w AS (PARTITION BY node, device ORDER BY time))
        GROUP BY node),
    nic2 AS ({_latest_two("nic", "rx_bytes, tx_bytes", window_s)}),
    nic AS (
        SELECT node, sum(rx) AS net_rx_bps, sum(tx) AS net_tx_bps FROM (
            SELECT node, device, {counter_rate("rx_bytes")} AS rx, {counter_rate("tx_bytes")} AS tx FROM nic2
            WHERE device <> 'lo'
            WINDOW w AS (PARTITION BY node, device ORDER BY time))
        GROUP BY node)
    SELECT n.node, n.last_seen, cpu.cores, cpu.cpu_busy_pct, load.load1, mem.mem_used_pct, mem.mem_total_bytes,
           disk.disk_read_bps, disk.disk_write_bps, nic.net_rx_bps, nic.net_tx_bps
    FROM nodes n LEFT JOIN cpu USING (node) LEFT JOIN load USING (node) LEFT JOIN mem USING (node)
    LEFT JOIN disk USING (node) LEFT JOIN nic USING (node)
    ORDER BY n.node"""


# Each GPU's job(s) now: the node's last look at them (stored on change, so it holds until the next).
JOBS_NOW_SQL = f"""
    SELECT node, gpu, string_agg(DISTINCT job, ',' ORDER BY job) AS job FROM {last_looks()} GROUP BY ALL"""


def top_gpu_sql(job: str | None = None) -> str:
    """Per GPU, its latest values and its job now; with job: that job's GPUs only."""
    only = f"WHERE list_contains(string_split(j.job, ','), {quote(job)})" if job else ""
    return f"""
    SELECT g.*, coalesce(j.job, '') AS job FROM (
        SELECT node, device AS gpu, arg_max(util_gpu_percent, time) AS util_pct,
               arg_max(100.0 * memory_used_bytes / nullif(memory_total_bytes, 0), time) AS mem_pct,
               arg_max(temperature_celsius, time) AS temp_c, arg_max(power_watts, time) AS power_w,
               arg_max(power_limit_watts, time) AS power_limit_w, arg_max(sm_clock_hertz, time) / 1e6 AS sm_mhz,
               arg_max(clocks_event_reasons, time) AS reasons
        FROM gpu WHERE time >= (SELECT max(time) FROM gpu) - INTERVAL 30 SECOND
        GROUP BY node, device
    ) g LEFT JOIN ({JOBS_NOW_SQL}) j ON j.node = g.node AND j.gpu = g.gpu
    {only}
    ORDER BY g.node, try_cast(g.gpu AS INTEGER), g.gpu"""


def job_nodes_sql(job: str) -> str:
    """The nodes the job holds a GPU on now."""
    return f"SELECT DISTINCT node FROM ({JOBS_NOW_SQL}) WHERE list_contains(string_split(job, ','), {quote(job)})"


def name_job(db: Path | None, collector: str | None, tls: Tls | None, request: pb.NameJobRequest) -> pa.Table:
    """Names (ends, forgets) a job by hand: through the collector, or in the file when none holds it."""
    if collector:
        remote = RemoteBackend(collector, tls)
        try:
            return remote.name_job(request)
        finally:
            remote.close()
    path = db or Path("data/ironsight.duckdb")
    if not path.exists():
        raise QueryError(f"no database at {path}; start a collector with --db {path} first")
    try:
        con = connect(path)
    except StoreLocked as exc:
        raise QueryError(f"{exc}; name the job through it with --collector HOST:PORT") from exc
    try:
        migrate(con)  # as the collector would on its next start
        return apply_naming(con, request)
    except NamingError as exc:
        raise QueryError(str(exc)) from exc
    except duckdb.Error as exc:
        raise QueryError(f"{path}: {str(exc).splitlines()[0]}") from exc
    finally:
        con.close()


def open_backend(db: Path | None, collector: str | None, tls: Tls | None = None) -> Backend:
    if collector:
        return RemoteBackend(collector, tls)
    return LocalBackend(db or Path("data/ironsight.duckdb"))
