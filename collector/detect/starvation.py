"""Data starvation per GPU, with its cause: host-to-device, storage, CPU, or unknown.

A GPU holding memory (not still filling it) and not throttled is starved
when its mean utilization over the window falls well under its job's busier
GPUs', or under a floor while the host's evidence points at input
(thresholds and why: thresholds.py). A phase the whole job goes through
together (checkpoint saves, evaluation, warm-up, its end) has no busier
peers and no input evidence, so it is not starvation.

The cause is what points at input on the same node in the same window, in
this order: the GPU's own PCIe link receiving near its ceiling in most
seconds (host-to-device: a degraded link shows here); reads stalling the
loader (the NVMe busy with reads rather than checkpoint writes, or io
pressure without a write flood: shared storage); the loader's CPU not
keeping up (CPU pressure with most cores busy or a run queue over the
cores; one pegged core per rank is the healthy state of a training job and
counts for nothing). Each GPU is judged against its own job's GPUs (sql.gpu_jobs).
"""

from __future__ import annotations

from datetime import datetime

from ironsight.collector.detect.sql import (
    bucket_increments,
    gpu_jobs,
    increment,
    pcie_link_bytes_per_s,
    rolling,
    ts,
)
from ironsight.collector.detect.thresholds import Thresholds


def _window(table: str, body: str, since: str, until: str) -> str:
    return f"FROM {table} WHERE time > {since} AND time <= {until} {body}"


def _gpu_windows(t: Thresholds, since: str, until: str) -> str:
    """CTEs g, gb, gw: each GPU's utilization, memory, PCIe receive rate and throttled time per window."""
    w, s = t.starvation_window_s, t.step_s

    def window(table: str, body: str) -> str:
        return _window(table, body, since, until)

    return f"""g0 AS (
        SELECT node, device, time, util_gpu_percent, memory_used_bytes, pcie_link_gen, pcie_link_width,
            {increment("pcie_rx_bytes")} AS rx, epoch(time - lag(time) OVER (PARTITION BY node, device ORDER BY time)) AS dt,
            {pcie_link_bytes_per_s()} AS link,
            {increment("throttle_sw_power_seconds")} + {increment("throttle_sw_thermal_seconds")}
                + {increment("throttle_hw_thermal_seconds")} AS throttled
        {window("gpu", "")}
    ),
    g AS (SELECT *, rx / nullif(dt, 0) >= {t.h2d_link_fraction} * link AS near_link FROM g0),
    gb AS (
        SELECT node, device, time_bucket(INTERVAL {s} SECOND, time) AS bucket, count(*) AS n,
            sum(util_gpu_percent) AS util_sum, count(util_gpu_percent) AS util_n,
            sum((util_gpu_percent < 50)::INT) AS low_n, max(memory_used_bytes) AS mem,
            min(memory_used_bytes) AS mem_min,
            sum(coalesce(rx, 0)) AS rx, sum(coalesce(throttled, 0)) AS throttled,
            sum(near_link::INT) AS near_n, count(near_link) AS rate_n, min(link) AS link
        FROM g GROUP BY ALL
    ),
    gw AS (
        SELECT node, device, bucket + INTERVAL {s} SECOND AS step_end,
            {rolling("n", w, s)} AS samples,
            {rolling("util_sum", w, s)} / nullif({rolling("util_n", w, s)}, 0) AS util,
            {rolling("low_n", w, s)} / {rolling("n", w, s)} AS low_fraction,
            util_sum / nullif(util_n, 0) AS step_util,
            max(mem) OVER win AS mem, min(mem_min) OVER win AS mem_min, {rolling("rx", w, s)} / {w} AS rx_bps,
            {rolling("throttled", w, s)} / {w} AS throttled_fraction,
            {rolling("near_n", w, s)} / nullif({rolling("rate_n", w, s)}, 0) AS near_link_fraction,
            min(link) OVER win AS link_bps
        FROM gb
        WINDOW win AS (PARTITION BY node, device ORDER BY bucket
                       RANGE BETWEEN INTERVAL {w - s} SECOND PRECEDING AND CURRENT ROW)
    )"""


def _host_windows(t: Thresholds, since: str, until: str) -> str:
    """CTEs disk_w, cpu_w, psi_w, load_w: each node's disks, cores, pressure and run queue per window."""
    w, s = t.starvation_window_s, t.step_s

    def window(table: str, body: str) -> str:
        return _window(table, body, since, until)

    def per_bucket(table: str, cols: tuple[str, ...]) -> str:
        return bucket_increments(table, cols, s, f"time > {since} AND time <= {until}")

    busy = (
        "user_seconds",
        "nice_seconds",
        "system_seconds",
        "irq_seconds",
        "softirq_seconds",
        "steal_seconds",
    )
    idle = ("idle_seconds", "iowait_seconds")
    disk = ("io_time_seconds", "read_bytes", "written_bytes")
    psi = ("io_full_seconds", "cpu_some_seconds")

    def node_rolling(expr: str) -> str:
        return rolling(expr, w, s).replace("PARTITION BY node, device", "PARTITION BY node")

    return f"""
    disk_w AS (
        SELECT node, step_end, max(busy) AS storage_busy, sum(rd) AS read_bytes, sum(wr) AS written_bytes FROM (
            SELECT node, device, bucket + INTERVAL {s} SECOND AS step_end, {rolling("io_time_seconds", w, s)} / {w} AS busy,
                {rolling("read_bytes", w, s)} AS rd, {rolling("written_bytes", w, s)} AS wr
            FROM {per_bucket("disk", disk)}
        ) GROUP BY ALL
    ),
    cpu_b AS (
        SELECT node, bucket, sum({" + ".join(busy)}) AS busy, sum({" + ".join((*busy, *idle))}) AS total,
            count(*) AS cores
        FROM {per_bucket("cpu", (*busy, *idle))} GROUP BY ALL
    ),
    cpu_w AS (
        SELECT node, bucket + INTERVAL {s} SECOND AS step_end,
            {node_rolling("busy")} / nullif({node_rolling("total")}, 0) AS cores_busy, cores
        FROM cpu_b
    ),
    psi_w AS (
        SELECT node, bucket + INTERVAL {s} SECOND AS step_end,
            {rolling("io_full_seconds", w, s)} / {w} AS io_full, {rolling("cpu_some_seconds", w, s)} / {w} AS cpu_some
        FROM {per_bucket("pressure", psi)}
    ),
    load_w AS (
        SELECT node, bucket + INTERVAL {s} SECOND AS step_end,
            {rolling("run_sum", w, s)} / nullif({rolling("run_n", w, s)}, 0) AS run_queue
        FROM (SELECT node, '' AS device, time_bucket(INTERVAL {s} SECOND, time) AS bucket,
                  sum(procs_running) AS run_sum, count(procs_running) AS run_n {window("load", "GROUP BY ALL")})
    )"""


def _cause(t: Thresholds) -> str:
    """What points at input, most specific first; one pegged core per rank is not evidence."""
    reads = "coalesce(d.read_bytes, 0) >= coalesce(d.written_bytes, 0)"
    return f"""CASE
        WHEN a.near_link_fraction >= 0.5 THEN 'host_to_device'
        WHEN (d.storage_busy >= {t.storage_busy_fraction} AND {reads})
            OR (p.io_full >= {t.io_full_fraction} AND ({reads} OR coalesce(d.storage_busy, 0) < {t.storage_busy_fraction}))
            THEN 'storage'
        WHEN (p.cpu_some >= {t.cpu_pressure_fraction}
                AND (c.cores_busy >= {t.cores_busy_fraction} OR l.run_queue >= c.cores))
            OR (p.cpu_some IS NULL AND c.cores_busy >= {t.cores_busy_fraction} AND l.run_queue >= c.cores)
            THEN 'cpu'
        ELSE 'unknown'
    END"""


def flagged_sql(start: datetime, end: datetime, t: Thresholds) -> str:
    """Each GPU's steps in (start, end] where it waits for data while its job's others compute, with the cause."""
    since, until = f"{ts(start)} - INTERVAL {t.starvation_window_s} SECOND", ts(end)
    return f"""
    WITH {_gpu_windows(t, since, until)},
    holding AS (
        SELECT * FROM gw WHERE samples >= {t.min_samples} AND util IS NOT NULL
            -- Holding memory, and not still filling it (a job loading its resume checkpoint).
            AND mem_min > {t.active_memory_bytes} AND mem - mem_min < {t.active_memory_bytes}
    ),
    -- Each GPU against its own job's (those no job is known to own: among themselves).
    active AS (SELECT * FROM {gpu_jobs("holding", until)}),
    -- The job's median GPU: starved ones (under half the job) do not drag it down, and a
    -- minority running hotter (a straggler's GPUs through an evaluation pass) do not lift it.
    job AS (
        SELECT step_end, job, quantile_cont(util, 0.5) AS peer_util, count(*) AS gpus
        FROM active GROUP BY step_end, job
    ),
    {_host_windows(t, since, until)},
    judged AS (
        SELECT a.*, j.peer_util, j.gpus, d.storage_busy, d.read_bytes, d.written_bytes, c.cores_busy, c.cores,
            p.io_full, p.cpu_some, l.run_queue, {_cause(t)} AS cause
        FROM active a JOIN job j USING (step_end, job)
        LEFT JOIN disk_w d USING (node, step_end) LEFT JOIN cpu_w c USING (node, step_end)
        LEFT JOIN psi_w p USING (node, step_end) LEFT JOIN load_w l USING (node, step_end)
        WHERE a.step_end > {ts(start)} AND a.throttled_fraction < {t.sw_thermal_fraction}
    )
    SELECT node, device, step_end, 'data_starvation' AS kind,
        CASE WHEN util < 0.5 * greatest(peer_util, {t.starved_util_percent}) THEN 'critical' ELSE 'warning' END
            AS severity,
        cause, peer_util - util AS score,
        step_util < {t.starved_peer_ratio} * peer_util
            OR (step_util < {t.starved_util_percent} AND cause <> 'unknown') AS active, NULL::TIMESTAMP AS onset,
        json_object('job', nullif(job, ''), 'gpu_util_mean_pct', util, 'job_gpu_util_median_pct', peer_util,
            'job_gpus', gpus,
            'seconds_under_50pct_fraction', low_fraction, 'storage_busy_fraction', storage_busy,
            'read_share_of_disk_bytes', read_bytes / nullif(read_bytes + written_bytes, 0),
            'io_full_pressure_fraction', io_full, 'cpu_pressure_fraction', cpu_some,
            'cores_busy_fraction', cores_busy, 'run_queue', run_queue, 'cores', cores,
            'pcie_rx_gbps', rx_bps / 1e9, 'pcie_link_gbps', link_bps / 1e9,
            'seconds_near_link_fraction', near_link_fraction) AS evidence
    FROM judged
    WHERE (gpus >= 2 AND peer_util >= {t.job_busy_percent} AND util < {t.starved_peer_ratio} * peer_util)
       OR (util < {t.starved_util_percent} AND cause <> 'unknown')
    """
