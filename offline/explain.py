"""`ironsight explain ID`: one finding, its evidence, and the metrics behind it plotted over its interval."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ironsight.cli.backend import Backend, quote
from ironsight.collector.detect.activity import ACTIVITY
from ironsight.collector.detect.sql import increment, pcie_link_bytes_per_s, ts
from ironsight.offline.plot import Series, render

WIDTH = 72


@dataclass(frozen=True)
class Scope:
    node: str
    device: str
    start: datetime
    end: datetime
    bucket_s: int

    def where(self, devices: bool = True, others: bool = False) -> str:
        node = f"node <> {quote(self.node)}" if others else f"node = {quote(self.node)}"
        dev = f" AND device = {quote(self.device)}" if devices and self.device and not others else ""
        return f"{node}{dev} AND time >= {ts(self.start)} AND time <= {ts(self.end)}"

    @property
    def bucket(self) -> str:
        return f"time_bucket(INTERVAL {self.bucket_s} SECOND, time)"


Query = Callable[[Scope], str]  # SQL returning (t TIMESTAMP, v DOUBLE)


def gauge(table: str, expr: str, devices: bool = True, others: bool = False) -> Query:
    return lambda s: (
        f"SELECT {s.bucket} AS t, avg({expr}) AS v FROM {table} "
        f"WHERE {s.where(devices, others)} GROUP BY 1 ORDER BY 1"
    )


def bucket_rate(table: str, expr: str, devices: bool = True, scale: float = 1.0) -> Query:
    """A counter's increase per second in each plot bucket, the largest over the scope's devices."""
    inc = increment(f"({expr})")
    return lambda s: (
        f"SELECT t, max(v) AS v FROM (SELECT {s.bucket} AS t, device, {scale} * sum(inc) / {s.bucket_s} AS v "
        f"FROM (SELECT time, device, {inc} AS inc FROM {table} WHERE {s.where(devices)}) "
        "GROUP BY 1, 2) GROUP BY 1 ORDER BY 1"
    )


def cores_busy(s: Scope) -> str:
    """The share of all the node's cores busy: one pegged core per rank is healthy, most of them is not."""
    busy = "user_seconds + nice_seconds + system_seconds + irq_seconds + softirq_seconds"
    total = f"{busy} + idle_seconds + coalesce(iowait_seconds, 0)"
    busy_inc, total_inc = increment(f"({busy})"), increment(f"({total})")
    return (
        f"SELECT {s.bucket} AS t, 100 * sum(b) / nullif(sum(a), 0) AS v "
        f"FROM (SELECT time, device, {busy_inc} AS b, {total_inc} AS a FROM cpu "
        f"WHERE {s.where(False)}) GROUP BY 1 ORDER BY 1"
    )


LOSS = "out_of_sequence + coalesce(packet_seq_err, 0) + coalesce(local_ack_timeout_err, 0)"
UTIL = ("this GPU's utilization %", gauge("gpu", "util_gpu_percent"))
CLOCK = ("SM clock (MHz)", [("SM clock", gauge("gpu", "sm_clock_hertz / 1e6"))])
PANELS: dict[str, list[tuple[str, list[tuple[str, Query]]]]] = {
    "thermal": [
        (
            "GPU temperature (C)",
            [
                ("temperature", gauge("gpu", "temperature_celsius")),
                ("slowdown threshold", gauge("gpu", "temperature_slowdown_celsius")),
            ],
        ),
        CLOCK,
    ],
    "power_cap": [
        (
            "power (W)",
            [("power", gauge("gpu", "power_watts")), ("limit", gauge("gpu", "power_limit_watts"))],
        ),
        CLOCK,
    ],
    "data_starvation": [
        (
            "GPU utilization (%)",
            [UTIL, ("other nodes' GPUs (mean)", gauge("gpu", "util_gpu_percent", others=True))],
        ),
        (
            "host (%)",
            [
                ("busiest disk busy", bucket_rate("disk", "io_time_seconds", devices=False, scale=100)),
                ("all cores busy", cores_busy),
                (
                    "CPU pressure (some)",
                    bucket_rate("pressure", "cpu_some_seconds", devices=False, scale=100),
                ),
                ("io pressure (full)", bucket_rate("pressure", "io_full_seconds", devices=False, scale=100)),
            ],
        ),
        (
            "PCIe receive (GB/s)",
            [
                ("this GPU", bucket_rate("gpu", "pcie_rx_bytes", scale=1e-9)),
                ("its link's ceiling", gauge("gpu", f"{pcie_link_bytes_per_s()} / 1e9")),
            ],
        ),
    ],
    "network_jitter": [
        (
            "RDMA port, per second",
            [
                (
                    "loss (out of seq + seq err + ack timeout)",
                    bucket_rate(
                        "rdma",
                        "out_of_sequence + coalesce(packet_seq_err, 0) + coalesce(local_ack_timeout_err, 0)",
                    ),
                ),
                ("CNP sent", bucket_rate("rdma", "np_cnp_sent")),
            ],
        ),
    ],
    "straggler": [
        (
            "GPU activity (% SM active, or power of limit)",
            [
                ("this node (mean of its GPUs)", gauge("gpu", f"100 * {ACTIVITY}", devices=False)),
                ("other nodes (mean)", gauge("gpu", f"100 * {ACTIVITY}", others=True)),
            ],
        ),
        (
            # In lock-step, peers busy to NVML but idle on their SMs are waiting at the barrier.
            "GPU utilization (%, NVML)",
            [
                ("this node (mean of its GPUs)", gauge("gpu", "util_gpu_percent", devices=False)),
                ("other nodes (mean)", gauge("gpu", "util_gpu_percent", others=True)),
            ],
        ),
    ],
    "xid": [
        (
            "GPU",
            [UTIL, ("memory used (GB)", gauge("gpu", "memory_used_bytes / 1e9"))],
        )
    ],
}
PANELS["hardware_fault"] = PANELS["xid"]

FINDING_SQL = "SELECT id, kind, severity, node, device, start_time, end_time, cause, evidence, job FROM events WHERE id = {id}"


def finding(backend: Backend, finding_id: int) -> dict[str, Any] | None:
    rows = backend.sql(FINDING_SQL.format(id=int(finding_id))).to_pylist()
    return rows[0] if rows else None


def scope(f: dict[str, Any], now: datetime) -> Scope:
    start: datetime = f["start_time"]
    evidence = json.loads(f["evidence"] or "{}")
    last = f["end_time"] or datetime.fromisoformat(evidence.get("last_window_end", now.isoformat()))
    context = timedelta(seconds=min(600.0, max(60.0, 0.5 * (last - start).total_seconds())))
    lo, hi = start - context, last + context
    bucket = max(1, round((hi - lo).total_seconds() / WIDTH))
    return Scope(f["node"], f["device"], lo, hi, bucket)


def plots(backend: Backend, f: dict[str, Any], now: datetime) -> list[str]:
    s = scope(f, now)
    zero: datetime = f["start_time"]
    marks = [(0.0, "start")]
    if f["end_time"] is not None:
        marks.append(((f["end_time"] - zero).total_seconds(), "end"))
    out = []
    for title, queries in PANELS.get(f["kind"], []):
        series = []
        for label, q in queries:
            rows = backend.sql(q(s)).to_pylist()
            series.append(
                Series(label, [(r["t"] - zero).total_seconds() for r in rows], [r["v"] for r in rows])
            )
        heading = f"{title}, {s.bucket_s} s per column, seconds from the finding's start"
        out.append(render(heading, series, marks, width=WIDTH))
    return out
