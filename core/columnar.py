"""Rows <-> columnar wire tables: the agent encodes, the collector decodes to Arrow.

Only this module knows how a Table message lays out values, devices and
NULLs, so the round trip is tested in one place. Encoding is plain Python:
the agent imports this module, and numpy with pyarrow would cost it about
55 MB of resident memory for nothing; only decoding (collector) needs them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from ironsight.core.schema import TABLES, device_name
from ironsight.v1 import telemetry_pb2 as pb

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

Value = float | int | None


class TableBuilder:
    """Accumulates rows of one table across ticks.

    Rows are kept as the samplers' dicts (never changed once added) and turned
    into columns at flush: per value that is one dict lookup in a comprehension,
    and a column with nothing to refuse is checked by min, max and sum in C
    instead of a Python call per value (measured: a batch of 10 ticks at 0.1 s
    1.3 -> 0.5 ms, the agent's main cost after sampling).
    """

    def __init__(self, name: str) -> None:
        self.schema = TABLES[name]
        self.time_ns: list[int] = []
        self.device_index: list[int] = []
        self.devices: dict[str, int] = {}
        self.rows: list[Mapping[str, Value]] = []

    def __len__(self) -> int:
        return len(self.time_ns)

    def add(self, time_ns: int, device: str, values: Mapping[str, Value]) -> None:
        self.time_ns.append(time_ns)
        idx = self.devices.get(device)
        if idx is None:
            idx = self.devices[device] = len(self.devices)
        self.device_index.append(idx)
        self.rows.append(values)

    def to_proto(self) -> pb.Table:
        devices = [device_name(d) for d in self.devices]
        table = pb.Table(name=self.schema.name, time_ns=self.time_ns, devices=devices)
        table.device_index.extend(self.device_index)
        names = [f.name for f in self.schema.fields]
        # One C-level map per row and one transpose, not a Python step per value.
        columns = zip(*[list(map(row.get, names)) for row in self.rows], strict=True)
        for f, column in zip(self.schema.fields, columns, strict=True):
            values = storable(column, f.type, f.kind)
            if values is None:
                continue  # an absent column means all NULL
            col = table.columns.add(name=f.name)
            if None in values:
                col.nulls = pack_nulls([v is None for v in values])
                values = [0 if v is None else v for v in values]
            # storable() made every value of the column's wire type (int or float).
            if f.type == "int":
                col.i64.extend(cast("Sequence[int]", values))
            else:
                col.f64.extend(cast("Sequence[float]", values))
        return table


INT64 = (-(2**63), 2**63 - 1)


def storable(values: Sequence[Value], type_: str, kind: str) -> Sequence[Value] | None:
    """The column as the collector will take it, each value of the wire's type or NULL (see
    _storable); None when every value is NULL."""
    nulls = values.count(None)
    if nulls == len(values):
        return None
    if not nulls:
        present = cast("Sequence[float]", values)  # no None among them
        types = set(map(type, present))
        try:
            low = min(present)
            if type_ == "int":
                clean = types == {int} and INT64[0] <= low and max(present) <= INT64[1]
            else:
                clean = types <= {float, int} and math.isfinite(
                    sum(present)
                )  # NaN or an infinity makes the sum one
        except (TypeError, OverflowError):
            clean = False
        if clean and (kind != "counter" or low >= 0):
            return values
    checked = [_storable(v, type_, kind) for v in values]
    return None if checked.count(None) == len(checked) else checked


def _storable(v: Value, type_: str, kind: str) -> Value:
    """A value the collector will take, or NULL: a garbled source file (a negative counter, NaN, a number
    past 64 bits) must cost that one value, not the whole batch the collector would refuse."""
    if v is None:
        return None
    try:
        if type_ == "int":
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if not INT64[0] <= v <= INT64[1]:
                return None
            v = int(v)
        else:
            v = float(v)
            if not math.isfinite(v):
                return None
    except (TypeError, ValueError, OverflowError):
        return None
    if kind == "counter" and v < 0:
        return None
    return v


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
class GroupColumns:
    """One table's rows from many batches (a commit group), as whole-group numpy arrays.

    Decoding a group at once costs one join and one numpy call per column, where
    decoding batch by batch cost several per column per batch: with agents' batches
    of a tick or ten, that per-batch work was most of the collector's time.
    """

    name: str
    rows: list[int]  # per part
    node: pa.Array
    device: pa.Array
    time_us: np.ndarray[Any, Any]
    # name -> (values, NULL mask or None); absent columns are all NULL
    columns: dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any] | None]]


def _as_view(table: pb.Table | pb.TableView) -> pb.TableView:
    return table if isinstance(table, pb.TableView) else pb.TableView.FromString(table.SerializeToString())


def decode_group(name: str, parts: Sequence[tuple[str, pb.Table | pb.TableView]]) -> GroupColumns:
    """Assumes each part passed ironsight.core.validate's structure checks (lengths, types)."""
    import numpy as np
    import pyarrow as pa

    schema = TABLES[name]
    views = [(node, _as_view(t)) for node, t in parts]
    rows = [len(t.time_ns) // 8 for _, t in views]
    total = sum(rows)
    starts = np.cumsum([0, *rows])
    nodes = sorted({node for node, _ in views})
    node_ids = {node: i for i, node in enumerate(nodes)}
    node_index = np.repeat(np.array([node_ids[node] for node, _ in views], dtype=np.int32), rows)
    devices: list[str] = []
    device_index = []
    for _, t in views:
        device_index.append(np.frombuffer(t.device_index, dtype="<u4").astype(np.int32) + len(devices))
        devices.extend(t.devices)
    by_name = [{c.name: c for c in t.columns} for _, t in views]
    columns: dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any] | None]] = {}
    for f in schema.fields:
        is_int = f.type == "int"
        present = [cols.get(f.name) for cols in by_name]
        if all(c is None for c in present):
            continue
        raw = b"".join(
            (c.i64 if is_int else c.f64) if c is not None else bytes(8 * n)
            for c, n in zip(present, rows, strict=True)
        )
        values = np.frombuffer(raw, dtype="<i8" if is_int else "<f8")
        mask = None
        if any(c is None or c.nulls for c in present):
            mask = np.zeros(total, dtype=bool)
            for i, c in enumerate(present):
                if c is None:
                    mask[starts[i] : starts[i + 1]] = True
                elif c.nulls:
                    mask[starts[i] : starts[i + 1]] = null_mask(c.nulls, rows[i])
        columns[f.name] = (values, mask)
    return GroupColumns(
        name,
        rows,
        pa.DictionaryArray.from_arrays(
            pa.array(node_index), pa.array(nodes, pa.string())
        ).dictionary_decode(),
        pa.DictionaryArray.from_arrays(
            pa.array(np.concatenate(device_index) if device_index else np.zeros(0, np.int32)),
            pa.array(devices, pa.string()),
        ).dictionary_decode(),
        # Stored at microsecond precision (DuckDB's TIMESTAMP); ticks are far coarser.
        np.frombuffer(b"".join(t.time_ns for _, t in views), dtype="<i8") // 1000,
        columns,
    )


def bad_values(group: GroupColumns) -> bool:
    """Whether any non-NULL value is NaN or infinite, or any counter negative: one check per column."""
    import numpy as np

    schema = TABLES[group.name]
    for name, (values, mask) in group.columns.items():
        field = schema.field(name)
        checked = values if mask is None else values[~mask]
        if field.type == "float" and not np.isfinite(checked).all():
            return True
        if field.kind == "counter" and len(checked) and checked.min() < 0:
            return True
    return False


def group_arrow(group: GroupColumns) -> pa.Table:
    """The group as an Arrow table: node, device, time, then every schema column."""
    import pyarrow as pa

    total = len(group.time_us)
    arrays: dict[str, pa.Array] = {
        "node": group.node,
        "device": group.device,
        "time": pa.array(group.time_us, type=pa.timestamp("us")),
    }
    for f in TABLES[group.name].fields:
        arrow_type = pa.int64() if f.type == "int" else pa.float64()
        col = group.columns.get(f.name)
        if col is None:
            arrays[f.name] = pa.nulls(total, type=arrow_type)
        else:
            values, mask = col
            arrays[f.name] = pa.array(
                values, type=arrow_type, mask=mask if mask is not None and mask.any() else None
            )
    return pa.table(arrays)


def to_arrow(node: str, table: pb.Table | pb.TableView) -> pa.Table:
    """One wire table as Arrow with columns node, device, time, then every schema column."""
    return group_arrow(decode_group(table.name, [(node, table)]))


def view(batch: pb.Batch) -> pb.BatchView:
    """The collector's reading of a batch: the same bytes, arrays as raw bytes."""
    return pb.BatchView.FromString(batch.SerializeToString())
