"""Data starvation per GPU, with its cause: storage, CPU, host-to-device, or unknown.

A GPU holding memory and not throttled is starved when its mean utilization
over the window falls well under its job's other GPUs', or under a floor
while a host bottleneck coincides (thresholds and why: config.py). The cause
is what coincides on the same node in the same window, in this order: the
NVMe busy or io pressure (storage), a saturated core (CPU), PCIe RX near the
link's ceiling (host-to-device). All nodes in the store count as one job.
"""

from __future__ import annotations

from datetime import datetime

from ironsight.collector.detect.sql import bucket_increment, bucket_last, increment, rolling, ts
from ironsight.collector.detect.thresholds import Thresholds

# PCIe transfer rate per lane in GT/s by generation, and line-code efficiency.
PCIE_GTS = (
    "CASE gen WHEN 1 THEN 2.5 WHEN 2 THEN 5 WHEN 3 THEN 8 WHEN 4 THEN 16 WHEN 5 THEN 32 WHEN 6 THEN 64 END"
)


def _window(table: str, body: str, since: str, until: str) -> str:
    return f"FROM {table} WHERE time > {since} AND time <= {until} {body}"


def _gpu_windows(t: Thresholds, since: str, until: str) -> str:
    """CTEs g, gb, gw: each GPU's utilization, memory, PCIe receive rate and throttled time per window."""
    w, s = t.starvation_window_s, t.step_s

    def window(table: str, body: str) -> str:
        return _window(table, body, since, until)

    return f"""g AS (
        SELECT node, device, time, util_gpu_percent, memory_used_bytes, pcie_link_gen, pcie_link_width,
            {increment("pcie_rx_bytes")} AS rx,
            {increment("throttle_sw_power_seconds")} + {increment("throttle_sw_thermal_seconds")}
                + {increment("throttle_hw_thermal_seconds")} AS throttled
        {window("gpu", "")}
    ),
    gb AS (
        SELECT node, device, time_bucket(INTERVAL {s} SECOND, time) AS bucket, count(*) AS n,
            sum(util_gpu_percent) AS util_sum, count(util_gpu_percent) AS util_n,
            sum((util_gpu_percent < 50)::INT) AS low_n, max(memory_used_bytes) AS mem,
            sum(coalesce(rx, 0)) AS rx, sum(coalesce(throttled, 0)) AS throttled,
            max(pcie_link_gen) AS gen, max(pcie_link_width) AS width
        FROM g GROUP BY ALL
    ),
    gw AS (
        SELECT node, device, bucket + INTERVAL {s} SECOND AS step_end,
            {rolling("n", w, s)} AS samples,
            {rolling("util_sum", w, s)} / nullif({rolling("util_n", w, s)}, 0) AS util,
            {rolling("low_n", w, s)} / {rolling("n", w, s)} AS low_fraction,
            util_sum / nullif(util_n, 0) AS step_util,
            max(mem) OVER win AS mem, {rolling("rx", w, s)} / {w} AS rx_bps,
            {rolling("throttled", w, s)} / {w} AS throttled_fraction,
            ({PCIE_GTS}) * 1e9 * width * (CASE WHEN gen >= 3 THEN 128.0 / 130 ELSE 0.8 END) / 8 AS link_bps
        FROM gb
        WINDOW win AS (PARTITION BY node, device ORDER BY bucket
                       RANGE BETWEEN INTERVAL {w - s} SECOND PRECEDING AND CURRENT ROW)
    )"""


def _host_windows(t: Thresholds, since: str, until: str) -> str:
    """CTEs disk_w, cpu_w, psi_w: each node's busiest disk, busiest core and io pressure per window."""
    w, s = t.starvation_window_s, t.step_s

    def window(table: str, body: str) -> str:
        return _window(table, body, since, until)

    busy_cols = (
        "user_seconds",
        "nice_seconds",
        "system_seconds",
        "irq_seconds",
        "softirq_seconds",
        "steal_seconds",
    )
    idle_cols = ("idle_seconds", "iowait_seconds")
    cpu_lasts = ", ".join(bucket_last(c) for c in (*busy_cols, *idle_cols))
    cpu_incs = ", ".join(f"coalesce({bucket_increment(c)}, 0) AS {c}" for c in (*busy_cols, *idle_cols))
    cpu_busy = " + ".join(busy_cols)
    cpu_idle = " + ".join(idle_cols)
    return f"""
    disk_w AS (
        SELECT node, step_end, max(busy) AS storage_busy FROM (
            SELECT node, device, bucket + INTERVAL {s} SECOND AS step_end, {rolling("io", w, s)} / {w} AS busy
            FROM (SELECT node, device, bucket, coalesce({bucket_increment("io_time_seconds")}, 0) AS io
                  FROM (SELECT node, device, time_bucket(INTERVAL {s} SECOND, time) AS bucket,
                            {bucket_last("io_time_seconds")} {window("disk", "GROUP BY ALL")}))
        ) GROUP BY ALL
    ),
    cpu_w AS (
        SELECT node, step_end, max(busy_w / nullif(total_w, 0)) AS core_busy FROM (
            SELECT node, device, bucket + INTERVAL {s} SECOND AS step_end,
                {rolling("busy", w, s)} AS busy_w, {rolling("total", w, s)} AS total_w
            FROM (SELECT node, device, bucket, {cpu_busy} AS busy, {cpu_busy} + {cpu_idle} AS total
                  FROM (SELECT node, device, bucket, {cpu_incs} FROM (
                      SELECT node, device, time_bucket(INTERVAL {s} SECOND, time) AS bucket, {cpu_lasts}
                      {window("cpu", "GROUP BY ALL")})))
        ) GROUP BY ALL
    ),
    psi_w AS (
        SELECT node, bucket + INTERVAL {s} SECOND AS step_end, {rolling("io_full", w, s)} / {w} AS io_full
        FROM (SELECT node, '' AS device, time_bucket(INTERVAL {s} SECOND, time) AS bucket,
                  sum(coalesce(io_full, 0)) AS io_full
              FROM (SELECT node, device, time, {increment("io_full_seconds")} AS io_full {window("pressure", "")})
              GROUP BY ALL)
    )"""


def flagged_sql(start: datetime, end: datetime, t: Thresholds) -> str:
    """Each GPU's steps in (start, end] where it waits for data while its job's others compute, with the cause."""
    since, until = f"{ts(start)} - INTERVAL {t.starvation_window_s} SECOND", ts(end)
    return f"""
    WITH {_gpu_windows(t, since, until)},
    active AS (
        SELECT * FROM gw WHERE samples >= {t.min_samples} AND mem > {t.active_memory_bytes} AND util IS NOT NULL
    ),
    -- The job's busier GPUs (75th percentile), so starved GPUs do not drag their own baseline down.
    job AS (SELECT step_end, quantile_cont(util, 0.75) AS peer_util, count(*) AS gpus FROM active GROUP BY step_end),
    {_host_windows(t, since, until)},
    judged AS (
        SELECT a.*, j.peer_util, j.gpus, d.storage_busy, c.core_busy, p.io_full,
            CASE
                WHEN d.storage_busy >= {t.storage_busy_fraction} OR p.io_full >= {t.io_full_fraction} THEN 'storage'
                WHEN c.core_busy >= {t.cpu_core_busy_fraction} THEN 'cpu'
                WHEN a.rx_bps >= {t.h2d_link_fraction} * a.link_bps THEN 'host_to_device'
                ELSE 'unknown'
            END AS cause
        FROM active a JOIN job j USING (step_end)
        LEFT JOIN disk_w d USING (node, step_end) LEFT JOIN cpu_w c USING (node, step_end)
        LEFT JOIN psi_w p USING (node, step_end)
        WHERE a.step_end > {ts(start)} AND a.throttled_fraction < {t.sw_thermal_fraction}
    )
    SELECT node, device, step_end, 'data_starvation' AS kind,
        CASE WHEN util < 0.5 * greatest(peer_util, {t.starved_util_percent}) THEN 'critical' ELSE 'warning' END
            AS severity,
        cause, peer_util - util AS score,
        step_util < {t.starved_peer_ratio} * peer_util
            OR (step_util < {t.starved_util_percent} AND cause <> 'unknown') AS active, NULL::TIMESTAMP AS onset,
        json_object('gpu_util_mean_pct', util, 'job_gpu_util_p75_pct', peer_util, 'job_gpus', gpus,
            'seconds_under_50pct_fraction', low_fraction, 'storage_busy_fraction', storage_busy,
            'io_full_pressure_fraction', io_full, 'busiest_core_fraction', core_busy,
            'pcie_rx_gbps', rx_bps / 1e9, 'pcie_link_gbps', link_bps / 1e9) AS evidence
    FROM judged
    WHERE (gpus >= 2 AND peer_util >= {t.job_busy_percent} AND util < {t.starved_peer_ratio} * peer_util)
       OR (util < {t.starved_util_percent} AND cause <> 'unknown')
    """
