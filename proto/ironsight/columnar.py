"""Rows <-> columnar wire tables: the agent encodes, the collector decodes to Arrow.

Only this module knows how a Table message lays out values, devices and
NULLs, so the round trip is tested in one place. Encoding is plain Python:
the agent imports this module, and numpy with pyarrow would cost it about
55 MB of resident memory for nothing; only decoding (collector) needs them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ironsight.schema import TABLES
from ironsight.v1 import telemetry_pb2 as pb

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

Value = float | int | None


class TableBuilder:
    """Accumulates rows of one table across ticks."""

    def __init__(self, name: str) -> None:
        self.schema = TABLES[name]
        self.time_ns: list[int] = []
        self.device_index: list[int] = []
        self.devices: dict[str, int] = {}
        self.columns: dict[str, list[Value]] = {f.name: [] for f in self.schema.fields}

    def __len__(self) -> int:
        return len(self.time_ns)

    def add(self, time_ns: int, device: str, values: Mapping[str, Value]) -> None:
        self.time_ns.append(time_ns)
        idx = self.devices.get(device)
        if idx is None:
            idx = self.devices[device] = len(self.devices)
        self.device_index.append(idx)
        for name, column in self.columns.items():
            column.append(values.get(name))

    def to_proto(self) -> pb.Table:
        table = pb.Table(name=self.schema.name, time_ns=self.time_ns, devices=list(self.devices))
        table.device_index.extend(self.device_index)
        for f in self.schema.fields:
            values = self.columns[f.name]
            nulls = [v is None for v in values]
            if all(nulls):
                continue  # an absent column means all NULL
            col = table.columns.add(name=f.name)
            if any(nulls):
                col.nulls = pack_nulls(nulls)
            if f.type == "int":
                col.i64.extend([0 if v is None else int(v) for v in values])
            else:
                col.f64.extend([0.0 if v is None else float(v) for v in values])
        return table


def encode(rows_by_table: dict[str, Iterable[tuple[int, str, dict[str, Value]]]]) -> list[pb.Table]:
    out = []
    for name, rows in rows_by_table.items():
        builder = TableBuilder(name)
        for time_ns, device, values in rows:
            builder.add(time_ns, device, values)
        if len(builder):
            out.append(builder.to_proto())
    return out


def pack_nulls(nulls: list[bool]) -> bytes:
    """Bit i set (little-endian bit order, as Arrow's validity bitmaps) when row i is NULL."""
    out = bytearray((len(nulls) + 7) // 8)
    for i, is_null in enumerate(nulls):
        if is_null:
            out[i >> 3] |= 1 << (i & 7)
    return bytes(out)


def null_mask(nulls: bytes, n: int) -> np.ndarray[Any, np.dtype[np.bool_]] | None:
    import numpy as np

    if not nulls:
        return None
    return np.unpackbits(np.frombuffer(nulls, dtype=np.uint8), count=n, bitorder="little").astype(bool)


def to_arrow(node: str, table: pb.Table) -> pa.Table:
    """One wire table as Arrow with columns node, device, time, then every schema column."""
    import numpy as np
    import pyarrow as pa

    schema = TABLES[table.name]
    n = len(table.time_ns)
    by_name = {c.name: c for c in table.columns}
    devices = pa.array(list(table.devices), type=pa.string())
    index = pa.array(np.asarray(table.device_index, dtype=np.int32))
    arrays: dict[str, pa.Array] = {
        "node": pa.array([node] * n, type=pa.string()),
        "device": pa.DictionaryArray.from_arrays(index, devices).dictionary_decode(),
        # Stored at microsecond precision (DuckDB's TIMESTAMP); ticks are far coarser.
        "time": pa.array(np.asarray(table.time_ns, dtype=np.int64) // 1000, type=pa.timestamp("us")),
    }
    for f in schema.fields:
        col = by_name.get(f.name)
        arrow_type = pa.int64() if f.type == "int" else pa.float64()
        if col is None:
            arrays[f.name] = pa.nulls(n, type=arrow_type)
            continue
        raw: Sequence[Any] = col.i64 if f.type == "int" else col.f64
        values = np.asarray(raw, dtype=np.int64 if f.type == "int" else np.float64)
        arrays[f.name] = pa.array(values, type=arrow_type, mask=null_mask(col.nulls, n))
    return pa.table(arrays)
