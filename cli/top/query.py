"""The one query `ironsight top` sends per refresh: the fleet, its open findings and one node's detail.

Everything comes back as a single row of list columns, so a refresh costs one
round trip to the collector however many nodes there are. "Latest" is relative
to the newest stored sample (not the wall clock), so a replayed trace reads as
it did live; rates come from each device's last two samples in the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ironsight.cli.backend import JOBS_NOW_SQL, counter_rate, quote
from ironsight.collector.detect.sql import counter_increase

LOOKS_S = timedelta(minutes=3)
HISTORY_S = 300  # the GPU sparklines' span
HISTORY_STEP_S = 5  # a sparkline cell
HISTORY_POINTS = HISTORY_S // HISTORY_STEP_S


@dataclass(frozen=True)
class Ask:
    """What one refresh asks for: the node in detail (or none), a job, and where to look."""

    node: str | None = None
    job: str | None = None
    window_s: float = 300.0  # how far back the latest two samples of a device may lie
    since: datetime | None = None  # no newer sample than the last one found lies before this
    floor: datetime | None = None  # the last newest sample less window_s: a constant the scans can prune on
    history_from: datetime | None = None  # the sparklines are known before this (None: read them whole)


def _ts(t: datetime) -> str:
    return f"TIMESTAMP '{t.isoformat(sep=' ')}'"


def _recent(table: str, ask: Ask) -> str:
    # Rows newer than the floor are all kept (a device's last two are picked later), so a floor
    # from the last refresh is as good as this one's and lets DuckDB skip the older row groups.
    floor = _ts(ask.floor) if ask.floor else f"(SELECT t FROM ref) - INTERVAL {int(ask.window_s)} SECOND"
    return f"(SELECT * FROM {table} WHERE time >= {floor})"


def _last_two(table: str, ask: Ask, where: str = "") -> str:
    return f"""(SELECT * FROM {_recent(table, ask)} {where}
        QUALIFY row_number() OVER (PARTITION BY node, device ORDER BY time DESC) <= 2)"""


def _rates(table: str, cols: dict[str, str], ask: Ask, where: str = "") -> str:
    """Per (node, device): the per-second rate of each counter over its last two samples."""
    rated = ", ".join(f"{counter_rate(col)} AS {name}" for name, col in cols.items())
    return f"""(SELECT node, device, time, {rated} FROM {_last_two(table, ask, where)}
        WINDOW w AS (PARTITION BY node, device ORDER BY time)
        QUALIFY row_number() OVER (PARTITION BY node, device ORDER BY time DESC) = 1)"""


_BUSY = "user_seconds + nice_seconds + system_seconds + irq_seconds + softirq_seconds + coalesce(steal_seconds, 0)"
_TOTAL = f"{_BUSY} + idle_seconds + coalesce(iowait_seconds, 0)"


def _latest_gpus(ask: Ask, node: str | None = None) -> str:
    """Each GPU's latest values (of one node's, with node)."""
    only = f"WHERE node = {quote(node)}" if node else ""
    return f"""(
        SELECT node, device AS gpu, max(time) AS time,
               arg_max(util_gpu_percent, time) AS util_pct,
               arg_max(memory_used_bytes, time) AS mem_used_bytes,
               arg_max(memory_total_bytes, time) AS mem_total_bytes,
               arg_max(power_watts, time) AS power_w, arg_max(power_limit_watts, time) AS power_limit_w,
               arg_max(temperature_celsius, time) AS temp_c,
               arg_max(temperature_slowdown_celsius, time) AS slowdown_c,
               arg_max(sm_clock_hertz, time) / 1e6 AS sm_mhz, arg_max(sm_clock_max_hertz, time) / 1e6 AS sm_max_mhz,
               arg_max(clocks_event_reasons, time) AS reasons
        FROM {_recent("gpu", ask)} {only} GROUP BY node, device)"""


def _ctes(ask: Ask) -> str:
    since = f"WHERE time >= {_ts(ask.since)}" if ask.since else ""
    only_job = f"WHERE list_contains(string_split(job, ','), {quote(ask.job)})" if ask.job else ""
    busy = counter_increase("busy", "prev_busy")
    total = counter_increase("total", "prev_total")
    disk = _rates(
        "disk", {"read_bps": "read_bytes", "write_bps": "written_bytes", "busy": "io_time_seconds"}, ask
    )
    nic = _rates("nic", {"rx_bps": "rx_bytes", "tx_bps": "tx_bytes"}, ask, "WHERE device <> 'lo'")
    rdma = _rates(
        "rdma", {"rx_bps": "port_data_received_bytes", "tx_bps": "port_data_transmitted_bytes"}, ask
    )
    return f"""
    ref AS (SELECT greatest((SELECT max(time) FROM memory {since}), (SELECT max(time) FROM gpu {since})) AS t),
    jobs AS (SELECT * FROM ({JOBS_NOW_SQL}) {only_job}),
    g AS {_latest_gpus(ask)},
    gj AS (SELECT g.*, j.job FROM g LEFT JOIN jobs j ON j.node = g.node AND j.gpu = g.gpu
           {"WHERE j.job IS NOT NULL" if ask.job else ""}),
    cpu_t AS (
        SELECT node, time, sum({_BUSY}) AS busy, sum({_TOTAL}) AS total, count(*) AS cores
        FROM {_recent("cpu", ask)} GROUP BY node, time),
    cpu AS (
        -- Summed over the node's cores before the rate: a thousand nodes of 128 cores stay cheap.
        SELECT node, cores, 100 * {busy} / nullif({total}, 0) AS cpu_pct
        FROM (SELECT *, lag(busy) OVER w AS prev_busy, lag(total) OVER w AS prev_total FROM cpu_t
              WINDOW w AS (PARTITION BY node ORDER BY time))
        QUALIFY row_number() OVER (PARTITION BY node ORDER BY time DESC) = 1),
    mem AS (
        SELECT node, max(time) AS time, arg_max(mem_total_bytes, time) AS mem_total_bytes,
               arg_max(mem_total_bytes - coalesce(mem_available_bytes, mem_free_bytes), time) AS mem_used_bytes
        FROM {_recent("memory", ask)} GROUP BY node),
    ld AS (SELECT node, arg_max(load1, time) AS load1 FROM {_recent("load", ask)} GROUP BY node),
    dk AS {disk},
    nc AS {nic},
    rd AS {rdma},
    ev AS (SELECT id, kind, severity, node, device, start_time, cause, job FROM events WHERE end_time IS NULL),
    {_fleet(ask)}"""


def _fleet(ask: Ask) -> str:
    """A row per node: its GPUs summed up (mean utilization, total power, the hottest), its host."""
    return f"""
    fleet AS (
        SELECT n.node, n.hostname, n.last_seen, n.interval_s,
               gs.gpus, gs.util_pct, gs.power_w, gs.power_limit_w, gs.temp_c, gs.slowdown_c,
               gs.mem_used_bytes AS gpu_mem_used_bytes, gs.mem_total_bytes AS gpu_mem_total_bytes,
               gs.reasons, gs.jobs, greatest(gs.time, mem.time) AS time,
               cpu.cpu_pct, cpu.cores, ld.load1, mem.mem_used_bytes, mem.mem_total_bytes,
               d.read_bps + d.write_bps AS disk_bps, coalesce(x.rx_bps, 0) + coalesce(r.rx_bps, 0) AS net_rx_bps,
               coalesce(x.tx_bps, 0) + coalesce(r.tx_bps, 0) AS net_tx_bps
        FROM nodes n
        LEFT JOIN (SELECT node, count(*) AS gpus, avg(util_pct) AS util_pct, sum(power_w) AS power_w,
                          sum(power_limit_w) AS power_limit_w, arg_max(temp_c, temp_c) AS temp_c,
                          arg_max(slowdown_c, temp_c) AS slowdown_c, sum(mem_used_bytes)::DOUBLE AS mem_used_bytes,
                          sum(mem_total_bytes)::DOUBLE AS mem_total_bytes, bit_or(reasons) AS reasons,
                          list(DISTINCT job ORDER BY job) FILTER (job IS NOT NULL) AS jobs, max(time) AS time
                   FROM gj GROUP BY node) gs USING (node)
        LEFT JOIN cpu USING (node) LEFT JOIN ld USING (node) LEFT JOIN mem USING (node)
        LEFT JOIN (SELECT node, sum(read_bps) AS read_bps, sum(write_bps) AS write_bps FROM dk GROUP BY node) d
            USING (node)
        LEFT JOIN (SELECT node, sum(rx_bps) AS rx_bps, sum(tx_bps) AS tx_bps FROM nc GROUP BY node) x USING (node)
        LEFT JOIN (SELECT node, sum(rx_bps) AS rx_bps, sum(tx_bps) AS tx_bps FROM rd GROUP BY node) r USING (node)
        {"WHERE gs.gpus IS NOT NULL" if ask.job else ""})"""


def _history(node: str, ask: Ask) -> str:
    """The node's GPUs' utilization in HISTORY_STEP_S buckets (numbered from the epoch, so a session
    can add each refresh's to what it has): since ask.history_from, or the last HISTORY_S seconds."""
    since = (
        _ts(ask.history_from) if ask.history_from else f"(SELECT t FROM ref) - INTERVAL {HISTORY_S} SECOND"
    )
    prune = f"time >= {_ts(ask.floor - timedelta(seconds=HISTORY_S))} AND " if ask.floor else ""
    return f"""(SELECT device AS gpu, list(util ORDER BY bucket) AS util, list(bucket ORDER BY bucket) AS buckets
        FROM (SELECT device, floor(epoch(time) / {HISTORY_STEP_S})::BIGINT AS bucket, avg(util_gpu_percent) AS util
              FROM gpu WHERE {prune}node = {quote(node)} AND time >= {since} GROUP BY ALL)
        GROUP BY device)"""


def _detail(node: str, ask: Ask) -> str:
    """Columns about one node: its GPUs with history, processes, disks, NICs, RDMA ports and host figures."""
    n = quote(node)
    # The agent looks at its processes at least once a minute: its last look is in the last few.
    recent = f"time >= {_ts(ask.floor - LOOKS_S)} AND " if ask.floor else ""
    procs = f"""(SELECT gpu, pid, name, job, used_memory_bytes, sm_util_percent FROM gpu_processes
        WHERE node = {n} AND time = (SELECT max(time) FROM gpu_processes WHERE {recent}node = {n}))"""
    # Each from this node's rows only: the fleet's CTEs, used again here, would be computed again whole.
    mine = f"WHERE node = {n}"
    psi = _rates(
        "pressure",
        {"cpu": "cpu_some_seconds", "io": "io_some_seconds", "mem": "memory_some_seconds"},
        ask,
        mine,
    )
    disk = _rates(
        "disk", {"read_bps": "read_bytes", "write_bps": "written_bytes", "busy": "io_time_seconds"}, ask, mine
    )
    nic = _rates("nic", {"rx_bps": "rx_bytes", "tx_bps": "tx_bytes"}, ask, f"{mine} AND device <> 'lo'")
    rdma = _rates(
        "rdma", {"rx_bps": "port_data_received_bytes", "tx_bps": "port_data_transmitted_bytes"}, ask, mine
    )
    return f""",
        (SELECT list(x ORDER BY try_cast(x.gpu AS INTEGER), x.gpu) FROM (
            SELECT g.* EXCLUDE (node), j.job, h.util AS history, h.buckets AS history_buckets
            FROM {_latest_gpus(ask, node)} g LEFT JOIN jobs j USING (node, gpu)
            LEFT JOIN {_history(node, ask)} h USING (gpu)
            {"WHERE j.job IS NOT NULL" if ask.job else ""}) x) AS gpus,
        (SELECT list(p ORDER BY try_cast(p.gpu AS INTEGER), p.gpu, p.pid) FROM {procs} p) AS processes,
        (SELECT list(d ORDER BY d.device) FROM (SELECT * EXCLUDE (node, time) FROM {disk}) d) AS disks,
        (SELECT list(d ORDER BY d.device) FROM (
            SELECT x.device, x.rx_bps, x.tx_bps, l.up, l.speed_bytes_per_second AS speed_bps FROM {nic} x
            LEFT JOIN (SELECT device, arg_max(up, time) AS up, arg_max(speed_bytes_per_second, time)
                       AS speed_bytes_per_second FROM {_recent("nic", ask)} {mine} GROUP BY device) l
                USING (device)) d) AS nics,
        (SELECT list(d ORDER BY d.device) FROM (SELECT * EXCLUDE (node, time) FROM {rdma}) d) AS rdma,
        (SELECT p FROM (
            SELECT 100 * cpu AS psi_cpu_pct, 100 * io AS psi_io_pct, 100 * mem AS psi_mem_pct FROM {psi}) p) AS psi"""


def snapshot_sql(ask: Ask) -> str:
    """One row: ref (newest sample), fleet (a struct per node), findings (open ones), jobs (a struct
    per job holding GPUs now: its nodes, GPUs, their mean utilization, power, hottest), and with
    ask.node its gpus (with a utilization history), processes, disks, nics, rdma and psi."""
    return f"""WITH {_ctes(ask)}
    SELECT (SELECT t FROM ref) AS ref,
        (SELECT list(f ORDER BY f.node) FROM fleet f) AS fleet,
        (SELECT list(e ORDER BY e.node, e.id) FROM ev e) AS findings,
        (SELECT list(j ORDER BY j.job) FROM (
            SELECT job, count(DISTINCT node) AS nodes, count(*) AS gpus, avg(util_pct) AS util_pct,
                   sum(power_w) AS power_w, max(temp_c) AS temp_c, list(DISTINCT node ORDER BY node) AS members
            FROM (SELECT * EXCLUDE (job), unnest(string_split(job, ',')) AS job FROM gj WHERE job IS NOT NULL)
            GROUP BY job) j) AS jobs
        {_detail(ask.node, ask) if ask.node else ""}"""
