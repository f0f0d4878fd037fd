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


@dataclass
class Reading:
    """What one run of one sampler saw: rows per table, each row a device and its values."""

    tables: dict[str, list[Row]] = field(default_factory=dict)

    def add(self, table: str, device: str, values: dict[str, Value]) -> None:
        if table not in TABLES:
            raise KeyError(f"unknown table {table!r}")
        self.tables.setdefault(table, []).append((device, values))

    def rows(self, table: str) -> list[Row]:
        return self.tables.get(table, [])

    def merge(self, other: Reading) -> None:
        for name, rows in other.tables.items():
            self.tables.setdefault(name, []).extend(rows)
