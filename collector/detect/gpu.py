"""GPU findings from the gpu and gpu_xid tables: thermal throttling, power capping, hardware faults.

Like every detector, returns one row per (node, device, step) whose window
meets a rule: kind, severity, cause, a score (which step of an incident is
its peak) and the step's evidence as JSON; ironsight.collector.detect.findings merges
them into incidents.
"""

from __future__ import annotations

from datetime import datetime

from ironsight.collector.detect.sql import bucket_increment, bucket_last, rolling, ts
from ironsight.collector.detect.thresholds import Thresholds

COUNTERS = (
    "throttle_sw_thermal_seconds",
    "throttle_hw_thermal_seconds",
    "throttle_hw_power_brake_seconds",
    "throttle_sw_power_seconds",
    "ecc_dbe_volatile",
    "pcie_replays",
    "nvlink_crc_errors",
    "nvlink_replay_errors",
    "nvlink_recovery_errors",
    "remapped_rows_uncorrectable",
)
THERMAL_REASONS = 0x20 | 0x40  # SW thermal slowdown | HW thermal slowdown
XID_GPU_LOST = 79  # "GPU has fallen off the bus"


def flagged_sql(start: datetime, end: datetime, t: Thresholds) -> str:
    """(node, device, step_end, kind, severity, cause, evidence...) for every window that meets a rule."""
    w, s = t.window_s, t.step_s
    lookback = f"{ts(start)} - INTERVAL {w} SECOND"
    lasts = ",\n            ".join(bucket_last(c) for c in COUNTERS)
    incs = ", ".join(f"coalesce({bucket_increment(c)}, 0) AS {c}" for c in COUNTERS)
    rolls = ",\n            ".join(f"{rolling(c, w, s)} AS {c}_w" for c in COUNTERS)
    return f"""
    WITH lasts AS (
        SELECT node, device, time_bucket(INTERVAL {s} SECOND, time) AS bucket, count(*) AS n,
            max(temperature_celsius) AS temp_max, max(temperature_slowdown_celsius) AS slowdown,
            min(sm_clock_hertz) FILTER (util_gpu_percent >= 50) AS busy_clock_min,
            max(sm_clock_max_hertz) AS clock_max,
            bit_or(clocks_event_reasons) AS reasons,
            max(remapped_rows_pending) AS remap_pending,
            {lasts}
        FROM gpu WHERE time > {lookback} AND time <= {ts(end)} GROUP BY ALL
    ),
    -- Counter increments per bucket (from each bucket's last value), not per sample.
    buckets AS (SELECT * REPLACE ({incs}) FROM lasts),
    xids AS (
        SELECT node, device, time_bucket(INTERVAL {s} SECOND, time) AS bucket, list(DISTINCT xid) AS xids,
            min(time) AS xid_time
        FROM gpu_xid WHERE time > {lookback} AND time <= {ts(end)} GROUP BY ALL
    ),
    windows AS (
        SELECT b.node, b.device, b.bucket + INTERVAL {s} SECOND AS step_end,
            {rolling("n", w, s)} AS samples,
            max(temp_max) OVER win AS temp_max, max(slowdown) OVER win AS slowdown,
            min(busy_clock_min) OVER win AS busy_clock_min, max(clock_max) OVER win AS clock_max,
            bit_or(reasons) OVER win AS reasons, max(remap_pending) OVER win AS remap_pending,
            {rolls},
            x.xids, x.xid_time,
            -- Whether the rule holds within this step alone: an incident spans the
            -- steps where it did, not the trailing windows that still saw it.
            b.throttle_hw_thermal_seconds + b.throttle_hw_power_brake_seconds + b.throttle_sw_thermal_seconds > 0
                OR b.temp_max >= b.slowdown - {t.prewarn_margin_c}
                OR (b.busy_clock_min < {t.clock_fraction} * b.clock_max AND (b.reasons & {THERMAL_REASONS}) != 0)
                AS thermal_step,
            b.throttle_sw_power_seconds > 0 AS power_step
        FROM buckets b LEFT JOIN xids x USING (node, device, bucket)
        WINDOW win AS (PARTITION BY b.node, b.device ORDER BY b.bucket
                       RANGE BETWEEN INTERVAL {w - s} SECOND PRECEDING AND CURRENT ROW)
    ),
    judged AS (
        SELECT *,
            throttle_hw_thermal_seconds_w + throttle_hw_power_brake_seconds_w > 0 AS hw_slowdown,
            throttle_sw_thermal_seconds_w >= {t.sw_thermal_fraction} * {w} AS sw_thermal,
            busy_clock_min < {t.clock_fraction} * clock_max AND (reasons & {THERMAL_REASONS}) != 0 AS clock_thermal,
            temp_max >= slowdown - {t.prewarn_margin_c} AS near_slowdown,
            throttle_sw_power_seconds_w >= {t.power_cap_fraction} * {w} AS power_capped
        FROM windows WHERE samples >= {t.min_samples} AND step_end > {ts(start)}
    )
    {_findings(t)}
    """


def _findings(t: Thresholds) -> str:
    """From the judged windows: one row per kind that holds (thermal, power cap, XID, hardware faults)."""
    return f"""
    SELECT node, device, step_end, 'thermal' AS kind,
        CASE WHEN hw_slowdown THEN 'critical' WHEN sw_thermal OR clock_thermal THEN 'warning' ELSE 'pre-warning' END
            AS severity, NULL AS cause,
        1000 * (throttle_hw_thermal_seconds_w + throttle_hw_power_brake_seconds_w)
            + throttle_sw_thermal_seconds_w + temp_max / 100 AS score, thermal_step AS active,
        NULL::TIMESTAMP AS onset,
        json_object('temperature_max_c', temp_max, 'slowdown_c', slowdown,
            'busy_sm_clock_min_mhz', busy_clock_min / 1e6, 'sm_clock_max_mhz', clock_max / 1e6,
            'sw_thermal_s', throttle_sw_thermal_seconds_w,
            'hw_slowdown_s', throttle_hw_thermal_seconds_w + throttle_hw_power_brake_seconds_w) AS evidence
    FROM judged WHERE hw_slowdown OR sw_thermal OR clock_thermal OR near_slowdown
    UNION ALL
    SELECT node, device, step_end, 'power_cap', 'warning', NULL, throttle_sw_power_seconds_w, power_step, NULL,
        json_object('sw_power_cap_s', throttle_sw_power_seconds_w, 'busy_sm_clock_min_mhz', busy_clock_min / 1e6,
            'sm_clock_max_mhz', clock_max / 1e6, 'temperature_max_c', temp_max)
    FROM judged WHERE power_capped AND NOT (hw_slowdown OR sw_thermal OR clock_thermal)
    UNION ALL
    SELECT node, device, step_end, 'xid', 'critical', 'xid ' || array_to_string(xids, ','), len(xids), TRUE,
        xid_time,
        json_object('xids', xids)
    FROM judged WHERE xids IS NOT NULL
    UNION ALL
    SELECT node, device, step_end, 'hardware_fault', c.severity, c.cause, c.count, TRUE,
        -- A lost GPU starts when its XID came, as the xid finding does; counters, at their step.
        CASE WHEN c.cause = 'gpu_lost' THEN xid_time END,
        json_object('cause', c.cause, 'count_in_window', c.count)
    FROM judged, LATERAL (VALUES
        ('ecc_dbe', 'critical', ecc_dbe_volatile_w),
        ('remapped_rows_uncorrectable', 'critical', remapped_rows_uncorrectable_w),
        ('remapped_rows_pending', 'warning', CASE WHEN remap_pending > 0 THEN remap_pending ELSE 0 END),
        ('nvlink_errors', 'warning', nvlink_crc_errors_w + nvlink_replay_errors_w + nvlink_recovery_errors_w),
        ('pcie_replays', 'warning', CASE WHEN pcie_replays_w >= {t.pcie_replays_per_window} THEN pcie_replays_w ELSE 0 END),
        -- XID 79: the GPU fell off the bus (or NVML found it lost, which the agent records as 79).
        ('gpu_lost', 'critical', CASE WHEN list_contains(xids, {XID_GPU_LOST}) THEN 1 ELSE 0 END)
    ) AS c(cause, severity, count)
    WHERE c.count > 0
    """
