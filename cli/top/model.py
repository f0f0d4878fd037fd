"""What `ironsight top` shows, as plain data: the snapshot one query returns, in attention order."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa

Row = dict[str, Any]

SEVERITY_RANK = {"critical": 3, "warning": 2, "pre-warning": 1}
SHORT_KIND = {
    "thermal": "thermal",
    "power_cap": "power cap",
    "xid": "XID",
    "hardware_fault": "hw fault",
    "data_starvation": "starved",
    "network_jitter": "jitter",
    "straggler": "straggler",
}
STALE_INTERVALS = 5  # a node this many sampling intervals behind the newest sample has gone quiet
STALE_MIN_S = 10.0


@dataclass(frozen=True)
class Finding:
    id: int
    kind: str
    severity: str
    node: str
    device: str
    start_time: datetime
    cause: str | None
    job: str | None

    @property
    def rank(self) -> int:
        return SEVERITY_RANK.get(self.severity, 1)

    @property
    def short(self) -> str:
        return SHORT_KIND.get(self.kind, self.kind)


@dataclass
class Snapshot:
    """One refresh: every node's row, the open findings, and the node asked for in detail."""

    ref: datetime | None  # the newest stored sample: "now" as far as the data goes
    nodes: list[Row]
    findings: list[Finding]
    detail: Row | None = None  # gpus, processes, disks, nics, rdma, psi of the node asked for
    asked: str | None = None  # that node
    jobs: list[Row] = field(default_factory=list)  # a row per job holding GPUs now, with its members
    by_node: dict[str, list[Finding]] = field(default_factory=dict)
    by_job: dict[str, list[Finding]] = field(default_factory=dict)
    newest_seen: datetime | None = field(default=None, init=False)  # when the collector last heard from any

    def __post_init__(self) -> None:
        self.newest_seen = max((n["last_seen"] for n in self.nodes if n.get("last_seen")), default=None)
        for f in sorted(self.findings, key=lambda f: (-f.rank, f.start_time, f.id)):
            self.by_node.setdefault(f.node, []).append(f)
            if f.job:
                self.by_job.setdefault(f.job, []).append(f)

    @classmethod
    def from_arrow(cls, table: pa.Table, asked: str | None = None) -> Snapshot:
        row = table.to_pylist()[0]
        findings = [Finding(**f) for f in row.get("findings") or []]
        detail = {k: row[k] for k in ("gpus", "processes", "disks", "nics", "rdma", "psi") if k in row}
        return cls(
            row["ref"],
            row.get("fleet") or [],
            findings,
            detail if asked else None,
            asked,
            row.get("jobs") or [],
        )

    def node(self, name: str) -> Row | None:
        return next((n for n in self.nodes if n["node"] == name), None)

    def stale_s(self, node: Row) -> float | None:
        """How long before the fleet's last the collector last heard from the node, when that is past
        its interval's allowance (None: it is current). Relative to the fleet, not the wall clock: a
        replayed store's nodes were all heard from at once, however long ago."""
        seen = node.get("last_seen")
        if seen is None or self.newest_seen is None:
            return None
        behind = (self.newest_seen - seen).total_seconds()
        allowance = max(STALE_MIN_S, STALE_INTERVALS * (node.get("interval_s") or 1.0))
        return behind if behind > allowance else None

    def job_attention(self) -> list[Row]:
        """The jobs worst first: the open findings that hit them by severity and count, then lowest
        GPU utilization."""

        def key(j: Row) -> tuple[Any, ...]:
            found = self.by_job.get(j["job"], [])
            return (-max((f.rank for f in found), default=0), -len(found), j.get("util_pct") or 0.0, j["job"])

        return sorted(self.jobs, key=key)

    def members(self, job: str) -> set[str]:
        return next((set(j["members"]) for j in self.jobs if j["job"] == job), set())

    def attention(self, pattern: str = "", job: str | None = None) -> list[Row]:
        """The nodes matching pattern (and holding GPUs of job, if given), worst first: open findings
        by severity and count, then quiet nodes, then lowest GPU utilization (nodes without GPUs
        last), then by name."""
        held = self.members(job) if job else None

        def key(n: Row) -> tuple[Any, ...]:
            found = self.by_node.get(n["node"], [])
            worst = max((f.rank for f in found), default=0)
            util = n.get("util_pct")
            return (-worst, -len(found), self.stale_s(n) is None, util is None, util or 0.0, n["node"])

        shown = (n for n in self.nodes if matches(n["node"], pattern) and (held is None or n["node"] in held))
        return sorted(shown, key=key)


def matches(node: str, pattern: str) -> bool:
    """A glob (gpu-0[1-4]*) when the pattern has wildcards, else a substring; empty matches all."""
    if not pattern:
        return True
    if any(ch in pattern for ch in "*?["):
        return fnmatch.fnmatchcase(node, pattern)
    return pattern in node
