"""What a sampler saw and what a node has: the types the agent sends and the collector renders."""

from __future__ import annotations

from dataclasses import dataclass, field

from ironsight.core.schema import TABLES

Value = float | int | None
Row = tuple[str, dict[str, Value]]


@dataclass(frozen=True)
class DeviceInfo:
    """Static facts about one device, sent to the collector as the node's inventory."""

    kind: str
    name: str
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GpuOwner:
    """A job running on a GPU, and which source said so (attrs: pod, namespace, user, ...)."""

    gpu: str
    job: str
    source: str
    attrs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class GpuProc:
    """A process holding a context on a GPU, and its job ("" when none is known)."""

    gpu: str
    pid: int
    name: str
    job: str
    used_memory_bytes: int | None
    sm_util_percent: float | None = None


@dataclass(frozen=True)
class Owners:
    """Who runs on each GPU at one moment: every GPU looked at, the jobs on them, their processes."""

    gpus: tuple[str, ...]
    jobs: tuple[GpuOwner, ...]
    processes: tuple[GpuProc, ...] = ()

    def key(self) -> tuple[object, ...]:
        """What counts as a change: GPUs, jobs and which processes (not their memory from tick to tick)."""
        return (self.gpus, self.jobs, tuple((p.gpu, p.pid, p.job) for p in self.processes))


@dataclass
class Reading:
    """What one run of one sampler saw: rows per table, each row a device and its values."""

    tables: dict[str, list[Row]] = field(default_factory=dict)
    owners: Owners | None = None  # set by the jobs sampler on the ticks it looks

    def add(self, table: str, device: str, values: dict[str, Value]) -> None:
        if table not in TABLES:
            raise KeyError(f"unknown table {table!r}")
        self.tables.setdefault(table, []).append((device, values))

    def rows(self, table: str) -> list[Row]:
        return self.tables.get(table, [])

    def merge(self, other: Reading) -> None:
        for name, rows in other.tables.items():
            self.tables.setdefault(name, []).extend(rows)
        if other.owners is not None:
            self.owners = other.owners
