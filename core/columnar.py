"""Rows <-> columnar wire tables: the agent encodes, the collector decodes to Arrow.

Only this module knows how a Table message lays out values, devices and
NULLs, so the round trip is tested in one place. Encoding is plain Python:
the agent imports this module, and numpy with pyarrow would cost it about
55 MB of resident memory for nothing; only decoding (collector) needs them.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING, Any, cast

from ironsight.core.schema import TABLES, Field, device_name
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

    def to_proto(self, packed: bool = True) -> pb.Table:
        """The rows as a wire table: packed (every column in one array, what agents send), or a
        Column message per column (the first layout; the collector takes both)."""
        devices = [device_name(d) for d in self.devices]
        table = pb.Table(name=self.schema.name, time_ns=self.time_ns)
        if packed:
            table.devices_text = as_text(devices)
        else:
            table.devices.extend(devices)
        table.device_index.extend(self.device_index)
        names = [f.name for f in self.schema.fields]
        # One C-level map per row and one transpose, not a Python step per value.
        columns = zip(*[list(map(row.get, names)) for row in self.rows], strict=True)
        kept: list[tuple[Field, Sequence[Value]]] = []
        for f, column in zip(self.schema.fields, columns, strict=True):
            values = storable(column, f.type, f.kind)
            if values is not None:  # an absent column means all NULL
                kept.append((f, values))
        if packed:
            _pack(table, kept, len(self.time_ns))
            return table
        for f, values in kept:
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


def as_text(names: Sequence[str]) -> bytes:
    """A list of names as Table's devices_text and packed_names_text carry it."""
    return "".join(f"{name}\n" for name in names).encode()


# Lists sent as text, decoded: a fleet sends the same few in every batch. Bounded by their size, so a
# sender of ever new lists only makes the collector decode each (the cache starts again when full).
_TEXTS: dict[bytes, tuple[str, ...]] = {}
_TEXTS_BYTES = [0]
MAX_TEXTS_BYTES = 8 << 20


def text_list(text: bytes) -> tuple[str, ...] | None:
    """The names of a list sent as text, or None if it is not UTF-8 names each followed by a newline."""
    names = _TEXTS.get(text)
    if names is not None:
        return names
    try:
        decoded = text.decode()
    except UnicodeDecodeError:
        return None
    if not decoded.endswith("\n"):
        return None
    names = tuple(decoded[:-1].split("\n"))
    if len(text) > MAX_TEXTS_BYTES >> 4:  # a list that size is decoded each time, not kept
        return names
    if _TEXTS_BYTES[0] + len(text) > MAX_TEXTS_BYTES:
        _TEXTS.clear()
        _TEXTS_BYTES[0] = 0
    _TEXTS[text] = names
    _TEXTS_BYTES[0] += len(text)
    return names


def table_lists(t: pb.Table | pb.TableView) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """A wire table's devices and packed column names, from whichever form it sent each in, and
    what is wrong with how they were sent ("" when nothing)."""
    devices, wrong = _one_list(t.devices_text, t.devices, "devices", "devices")
    names, names_wrong = _one_list(t.packed_names_text, t.packed_names, "packed_names", "columns")
    return devices, names, wrong or names_wrong


def _one_list(text: bytes, listed: Sequence[str], field: str, what: str) -> tuple[tuple[str, ...], str]:
    """One list, sent as text (field + "_text") or as strings (field), and what is wrong with it."""
    if not text:
        return tuple(listed), ""
    names = text_list(text)
    if names is None:
        return (), f"{field}_text is not UTF-8 names each followed by a newline"
    if listed:
        return names, f"lists its {what} both in {field} and in {field}_text; send one"
    return names, ""


def values_in(table: pb.Table) -> int:
    """How many values the table carries, NULLs' places included, in either layout."""
    return len(table.packed_values) // 8 + sum(len(c.f64) + len(c.i64) for c in table.columns)


def _pack(table: pb.Table, kept: list[tuple[Field, Sequence[Value]]], rows: int) -> None:
    """The packed layout: the names, all values in one struct.pack, all NULL bitmaps in one run."""
    table.packed_names_text = as_text([f.name for f, _ in kept])
    holes = [None in values for _, values in kept]
    if any(holes):
        empty = bytes((rows + 7) // 8)
        table.packed_nulls = b"".join(
            pack_nulls([v is None for v in values]) if hole else empty
            for (_, values), hole in zip(kept, holes, strict=True)
        )
        kept = [(f, [0 if v is None else v for v in values]) if hole else (f, values)
                for (f, values), hole in zip(kept, holes, strict=True)]  # fmt: skip
    layout = "<" + "".join(f"{rows}{'q' if f.type == 'int' else 'd'}" for f, _ in kept)
    table.packed_values = struct.pack(layout, *chain.from_iterable(values for _, values in kept))


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


@dataclass(slots=True)
class Part:
    """One batch's wire table with every field read once: reading a field of a parsed message makes
    a new Python object each time, and a list of strings (device and column names) costs about half
    a microsecond a name; a batch's tables hold some 180 of them."""

    node: str
    table: pb.TableView
    name: str
    rows: int
    time: bytes
    index: bytes
    devices: tuple[str, ...]
    names: tuple[str, ...]  # packed layout: its columns; () for the Column-per-column layout
    values: bytes  # packed layout: every column's values, column after column
    nulls: bytes  # packed layout: every column's NULL bitmap, or nothing
    wrong: str  # what is wrong with how its lists were sent (table_lists), or ""

    @property
    def key(self) -> tuple[object, ...]:
        """Parts with one key join with one call: same columns, same rows (a packed layout)."""
        return (self.names, self.rows) if self.names else (id(self),)


def read_part(node: str, wire: pb.Table | pb.TableView) -> Part:
    t = _as_view(wire)
    time_ns = t.time_ns
    devices, names, wrong = table_lists(t)
    return Part(node, t, t.name, len(time_ns) >> 3, time_ns, t.device_index, devices, names,
                t.packed_values, t.packed_nulls, wrong)  # fmt: skip


def _block(parts: list[Part]) -> tuple[tuple[str, ...], np.ndarray[Any, Any], np.ndarray[Any, Any] | None]:
    """The parts' columns as one (columns, rows) array of 8-byte values (int64 bits; float
    columns are reinterpreted later) and their NULLs as bools of that shape, or None."""
    import numpy as np

    first = parts[0]
    if not first.names:  # the first layout, one part: a Column message per column
        return _columns_block(first)
    k, n, p = len(first.names), first.rows, len(parts)
    raw = b"".join([part.values for part in parts])
    values = np.frombuffer(raw, dtype="<i8").reshape(p, k, n).transpose(1, 0, 2).reshape(k, p * n)
    holes = [part.nulls for part in parts]
    if not any(holes):
        return first.names, values, None
    width = (n + 7) // 8
    empty = bytes(k * width)
    bits = np.frombuffer(b"".join([h or empty for h in holes]), dtype=np.uint8).reshape(p, k, width)
    nulls = np.unpackbits(bits, axis=2, count=n, bitorder="little").astype(bool)
    return first.names, values, nulls.transpose(1, 0, 2).reshape(k, p * n)


def _columns_block(part: Part) -> tuple[tuple[str, ...], np.ndarray[Any, Any], np.ndarray[Any, Any] | None]:
    import numpy as np

    schema = TABLES[part.name]
    cols = list(part.table.columns)
    names = tuple(c.name for c in cols)
    ints = [schema.field(n).type == "int" for n in names]
    joined = b"".join(c.i64 if is_int else c.f64 for c, is_int in zip(cols, ints, strict=True))
    values = np.frombuffer(joined, dtype="<i8").reshape(len(names), part.rows)
    nulls = None
    if any(c.nulls for c in cols):
        nulls = np.zeros((len(names), part.rows), dtype=bool)
        for j, c in enumerate(cols):
            if c.nulls:
                nulls[j] = null_mask(c.nulls, part.rows)
    return names, values, nulls


def decode_group(name: str, parts: Sequence[tuple[str, pb.Table | pb.TableView]]) -> GroupColumns:
    """Assumes each part passed ironsight.core.validate's structure checks (lengths, types)."""
    return decode_parts(name, [read_part(node, wire) for node, wire in parts])


def decode_parts(name: str, read: Sequence[Part]) -> GroupColumns:
    """Parts of one table, each read once (read_part), as one group; assumes they passed
    ironsight.core.validate's structure checks (lengths, types).

    Packed parts with the same columns and rows (a fleet's agents send the same ones) are
    joined with a few numpy calls for all of them; the group's rows follow the parts in the
    order of those kinds. Nothing here is a numpy call per part.
    """
    import numpy as np
    import pyarrow as pa

    kinds: dict[tuple[object, ...], list[Part]] = {}
    for part in read:
        kinds.setdefault(part.key, []).append(part)
    ordered = [part for members in kinds.values() for part in members] if len(kinds) > 1 else list(read)
    blocks = []
    for members in kinds.values():
        names, values, nulls = _block(members)
        blocks.append(({n: j for j, n in enumerate(names)}, values, nulls, values.shape[1]))
    counts = np.array([part.rows for part in ordered])
    devices_per = np.array([len(part.devices) for part in ordered])
    node_names = sorted({part.node for part in ordered})
    node_ids = {node: i for i, node in enumerate(node_names)}
    node_index = np.repeat(np.array([node_ids[part.node] for part in ordered], dtype=np.int32), counts)
    offsets = np.repeat(np.cumsum(devices_per) - devices_per, counts).astype(np.int32)
    device_index = (
        np.frombuffer(b"".join([part.index for part in ordered]), dtype="<u4").astype(np.int32) + offsets
    )
    devices = list(chain.from_iterable([part.devices for part in ordered]))
    return GroupColumns(
        name,
        counts.tolist(),
        pa.DictionaryArray.from_arrays(
            pa.array(node_index), pa.array(node_names, pa.string())
        ).dictionary_decode(),
        pa.DictionaryArray.from_arrays(
            pa.array(device_index), pa.array(devices, pa.string())
        ).dictionary_decode(),
        # Stored at microsecond precision (DuckDB's TIMESTAMP); ticks are far coarser.
        np.frombuffer(b"".join([part.time for part in ordered]), dtype="<i8") // 1000,
        _columns(TABLES[name], blocks),
    )


Block = tuple[dict[str, int], "np.ndarray[Any, Any]", "np.ndarray[Any, Any] | None", int]


def _columns(
    schema: Any, blocks: list[Block]
) -> dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any] | None]]:
    """Each schema column over all blocks: values of its type, and its NULLs (None: none)."""
    import numpy as np

    columns: dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any] | None]] = {}
    for f in schema.fields:
        if not any(f.name in index for index, _, _, _ in blocks):
            continue
        dtype = "<i8" if f.type == "int" else "<f8"
        values_parts, mask_parts, holes = [], [], False
        for index, values, nulls, n in blocks:
            j = index.get(f.name)
            if j is None:  # these parts lack the column: NULL
                values_parts.append(np.zeros(n, "<i8"))
                mask_parts.append(np.ones(n, bool))
                holes = True
            else:
                values_parts.append(values[j])
                mask_parts.append(nulls[j] if nulls is not None else np.zeros(n, bool))
                holes = holes or nulls is not None
        joined = values_parts[0] if len(values_parts) == 1 else np.concatenate(values_parts)
        mask = (mask_parts[0] if len(mask_parts) == 1 else np.concatenate(mask_parts)) if holes else None
        columns[f.name] = (np.ascontiguousarray(joined).view(dtype), mask)
    return columns


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
