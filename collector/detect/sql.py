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
