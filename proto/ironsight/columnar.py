"""Rows <-> columnar wire tables: the agent encodes, the collector decodes to Arrow.

Only this module knows how a Table message lays out values, devices and
NULLs, so the round trip is tested in one place. Encoding is plain Python:
the agent imports this module, and numpy with pyarrow would cost it about
55 MB of resident memory for nothing; only decoding (collector) needs them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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


@dataclass
class Decoded:
    """One wire table as numpy arrays: converted from protobuf once, then shared by
    validation and storage (each conversion costs microseconds per column)."""

    name: str
    time_ns: np.ndarray[Any, Any]
    device_index: np.ndarray[Any, Any]
    devices: list[str]
    # Only the columns that came: name -> (values, null mask or None).
    columns: dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any] | None]]

    @property
    def rows(self) -> int:
        return len(self.time_ns)


def decode(table: pb.Table | pb.TableView) -> Decoded:
    """Converts the arrays; assumes the lengths and column types were checked (collector.validate).

    A TableView (the collector's parse of the same bytes) maps its packed arrays
    straight into numpy; a Table's repeated fields are converted value by value.
    """
    import numpy as np

    schema = TABLES[table.name]
    columns = {}
    if isinstance(table, pb.TableView):
        n = len(table.time_ns) // 8
        for col_view in table.columns:
            is_int = schema.field(col_view.name).type == "int"
            raw = col_view.i64 if is_int else col_view.f64
            columns[col_view.name] = (
                np.frombuffer(raw, dtype="<i8" if is_int else "<f8"),
                null_mask(col_view.nulls, n),
            )
        times = np.frombuffer(table.time_ns, dtype="<i8")
        index = np.frombuffer(table.device_index, dtype="<u4").astype(np.int64)
    else:
        n = len(table.time_ns)
        for col in table.columns:
            is_int = schema.field(col.name).type == "int"
            values: Sequence[Any] = col.i64 if is_int else col.f64
            columns[col.name] = (
                np.asarray(values, dtype=np.int64 if is_int else np.float64),
                null_mask(col.nulls, n),
            )
        times = np.asarray(table.time_ns, dtype=np.int64)
        index = np.asarray(table.device_index, dtype=np.int64)
    return Decoded(table.name, times, index, list(table.devices), columns)


def view(batch: pb.Batch) -> pb.BatchView:
    """The collector's reading of a batch: the same bytes, arrays as raw bytes."""
    return pb.BatchView.FromString(batch.SerializeToString())


def arrow_table(name: str, parts: Sequence[tuple[str, Decoded]]) -> pa.Table:
    """Decoded parts of one table (from many batches and nodes) as one Arrow table with
    columns node, device, time, then every schema column: one pa.array per column, not per part."""
    import numpy as np
    import pyarrow as pa

    schema = TABLES[name]
    sizes = [d.rows for _, d in parts]
    total = sum(sizes)
    nodes = sorted({node for node, _ in parts})
    node_ids = {node: i for i, node in enumerate(nodes)}
    node_index = np.repeat(np.array([node_ids[node] for node, _ in parts], dtype=np.int32), sizes)
    devices: list[str] = []
    device_index = []
    for _, d in parts:
        device_index.append(d.device_index + len(devices))
        devices.extend(d.devices)
    arrays: dict[str, pa.Array] = {
        "node": pa.DictionaryArray.from_arrays(
            pa.array(node_index), pa.array(nodes, pa.string())
        ).dictionary_decode(),
        "device": pa.DictionaryArray.from_arrays(
            pa.array(np.concatenate(device_index).astype(np.int32)), pa.array(devices, pa.string())
        ).dictionary_decode(),
        # Stored at microsecond precision (DuckDB's TIMESTAMP); ticks are far coarser.
        "time": pa.array(np.concatenate([d.time_ns for _, d in parts]) // 1000, type=pa.timestamp("us")),
    }
    starts = np.cumsum([0, *sizes])
    for f in schema.fields:
        is_int = f.type == "int"
        arrow_type = pa.int64() if is_int else pa.float64()
        present = [d.columns.get(f.name) for _, d in parts]
        if all(p is None for p in present):
            arrays[f.name] = pa.nulls(total, type=arrow_type)
            continue
        dtype = np.int64 if is_int else np.float64
        values = [
            col[0] if col is not None else np.zeros(size, dtype=dtype)
            for col, size in zip(present, sizes, strict=True)
        ]
        mask = None
        if any(col is None or col[1] is not None for col in present):
            # NULLs only where they are: an absent column is all NULL for its part.
            mask = np.zeros(total, dtype=bool)
            for i, col in enumerate(present):
                if col is None:
                    mask[starts[i] : starts[i + 1]] = True
                elif col[1] is not None:
                    mask[starts[i] : starts[i + 1]] = col[1]
        arrays[f.name] = pa.array(np.concatenate(values), type=arrow_type, mask=mask)
    return pa.table(arrays)


def to_arrow(node: str, table: pb.Table) -> pa.Table:
    """One wire table as Arrow with columns node, device, time, then every schema column."""
    return arrow_table(table.name, [(node, decode(table))])
