"""The wire contract: stubs are fresh, columnar tables round-trip, malformed batches are refused precisely."""

from __future__ import annotations

import math
import struct
import subprocess
import sys
import time
from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ironsight.core.columnar import (
    TableBuilder,
    _storable,
    as_text,
    decode_group,
    group_arrow,
    null_mask,
    storable,
    table_lists,
    to_arrow,
)
from ironsight.core.schema import TABLES
from ironsight.core.validate import InvalidBatch, check, validate
from ironsight.v1 import telemetry_pb2 as pb

from support.paths import ROOT


def test_generated_stubs_are_not_stale() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "genproto.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "columns"])
def test_columnar_round_trip_keeps_values_devices_and_nulls(packed: bool) -> None:
    b = TableBuilder("gpu")
    t0 = 1_700_000_000_000_000_000
    b.add(t0, "0", {"util_gpu_percent": 97.0, "memory_used_bytes": 2**34, "energy_joules": None})
    b.add(t0, "1", {"util_gpu_percent": None, "memory_used_bytes": 5, "energy_joules": 1.5})
    b.add(t0 + 10**9, "0", {"util_gpu_percent": 3.5, "memory_used_bytes": None, "energy_joules": 2.0})
    wire = pb.Table.FromString(b.to_proto(packed).SerializeToString())
    devices, packed_names, wrong = table_lists(wire)
    assert (devices, wrong) == (("0", "1"), "")
    # The packed layout lists devices and columns as text, the first layout as lists of strings.
    assert (wire.devices_text, list(wire.devices)) == ((b"0\n1\n", []) if packed else (b"", ["0", "1"]))
    assert bool(wire.packed_names_text) == packed and not wire.packed_names
    names = set(packed_names) if packed else {c.name for c in wire.columns}
    assert names == {
        "util_gpu_percent",
        "memory_used_bytes",
        "energy_joules",
    }  # all-NULL columns are not sent
    assert (len(wire.packed_values), len(wire.packed_nulls)) == ((3 * 3 * 8, 3) if packed else (0, 0))
    rows = to_arrow("n1", wire).to_pylist()
    assert [r["device"] for r in rows] == ["0", "1", "0"]
    assert [r["util_gpu_percent"] for r in rows] == [97.0, None, 3.5]
    assert [r["memory_used_bytes"] for r in rows] == [2**34, 5, None]
    assert [r["energy_joules"] for r in rows] == [None, 1.5, 2.0]
    assert all(r["power_watts"] is None for r in rows)
    assert rows[2]["time"].timestamp() == pytest.approx((t0 + 10**9) / 1e9)
    assert [r["node"] for r in rows] == ["n1"] * 3


def good_batch(now_ns: int, packed: bool = False) -> pb.Batch:
    b = TableBuilder("load")
    b.add(now_ns, "", {"load1": 0.5, "context_switches": 10})
    batch = pb.Batch(node_id="n1", boot_id="boot", seq=7, interval_s=1.0)
    batch.tables.append(b.to_proto(packed))
    return batch


def test_a_group_of_both_layouts_and_different_columns_decodes_row_for_row() -> None:
    """Agents of three releases (packed with text lists, packed with lists of strings, a Column per
    column), and nodes that lack a column, in one commit group."""
    t0 = 1_700_000_000_000_000_000
    parts = []
    layouts: list[tuple[str, dict[str, float | int | None]]] = [
        ("text", {"load1": 1.0, "context_switches": 10}), ("columns", {"load1": 2.0, "context_switches": None}),
        ("text", {"load1": 3.0}), ("lists", {"load1": 4.0, "context_switches": 40}), ("columns", {"load5": 0.5}),
    ]  # fmt: skip
    for i, (layout, row) in enumerate(layouts):
        b = TableBuilder("load")
        b.add(t0 + i, "", row)
        b.add(t0 + i + 100, "", {k: (None if v is None else v + 0.5 if isinstance(v, float) else v + 1)
                                 for k, v in row.items()})  # fmt: skip
        wire = b.to_proto(layout != "columns")
        if layout == "lists":  # as agents sent packed tables before text lists
            devices, names, _ = table_lists(wire)
            wire.devices.extend(devices)
            wire.packed_names.extend(names)
            wire.devices_text = wire.packed_names_text = b""
        parts.append((f"n{i}", pb.TableView.FromString(wire.SerializeToString())))
    rows = group_arrow(decode_group("load", parts)).to_pylist()
    got = sorted(
        (r["node"], r["time"].timestamp(), r["load1"], r["context_switches"], r["load5"]) for r in rows
    )
    assert [(g[0], g[2], g[3], g[4]) for g in got] == [
        ("n0", 1.0, 10, None), ("n0", 1.5, 11, None), ("n1", 2.0, None, None), ("n1", 2.5, None, None),
        ("n2", 3.0, None, None), ("n2", 3.5, None, None), ("n3", 4.0, 40, None), ("n3", 4.5, 41, None),
        ("n4", None, None, 0.5), ("n4", None, None, 1.0),
    ]  # fmt: skip


def _packed(batch: pb.Batch) -> pb.Table:
    """The batch's packed table with its columns as a list of strings, as agents before text lists
    sent them (the collector takes both)."""
    t = batch.tables[0]
    if t.packed_names_text:
        t.packed_names.extend(table_lists(t)[1])
        t.packed_names_text = b""
    return t


TEXT_BAD = {
    "not UTF-8": (lambda t: setattr(t, "devices_text", b"\xff\n"), "devices_text is not UTF-8 names"),
    "no last newline": (
        lambda t: setattr(t, "packed_names_text", b"load1\ncontext_switches"),
        "packed_names_text is not UTF-8 names",
    ),
    "devices both ways": (
        lambda t: t.devices.append(""),
        "lists its devices both in devices and in devices_text",
    ),
    "columns both ways": (
        lambda t: t.packed_names.extend(["load1", "context_switches"]),
        "lists its columns both in packed_names and in packed_names_text",
    ),
    "control character": (lambda t: setattr(t, "devices_text", b"a\tb\n"), "has the control character '\\t'"),
    "unknown column": (
        lambda t: setattr(t, "packed_names_text", as_text(["load1", "load2"])),
        "column 'load2': not a column of load",
    ),
}


@pytest.mark.parametrize("case", sorted(TEXT_BAD))
def test_a_table_listing_its_names_as_text_wrongly_is_refused_saying_how(case: str) -> None:
    batch = good_batch(NOW, packed=True)
    assert (batch.tables[0].devices_text, batch.tables[0].packed_names_text) == (
        b"\n",
        b"load1\ncontext_switches\n",
    )
    fn, message = TEXT_BAD[case]
    fn(batch.tables[0])
    with pytest.raises(InvalidBatch) as err:
        validate(batch, now_ns=NOW)
    assert message in str(err.value)
    assert "batch seq 7 table 'load'" in str(err.value)


def test_a_text_list_is_decoded_once_and_the_cache_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from ironsight.core import columnar

    monkeypatch.setattr(columnar, "_TEXTS", {})
    monkeypatch.setattr(columnar, "_TEXTS_BYTES", [0])
    monkeypatch.setattr(columnar, "MAX_TEXTS_BYTES", 16 * 64)
    first = columnar.text_list(as_text(["cpu0", "cpu1", "ñ"]))
    assert first == ("cpu0", "cpu1", "ñ")
    assert columnar.text_list(as_text(["cpu0", "cpu1", "ñ"])) is first  # from the cache, not decoded again
    assert columnar.text_list(b"\n") == ("",)  # one host-wide device
    big = as_text([f"d{i}" for i in range(40)])  # over a sixteenth of the bound: decoded, never kept
    assert columnar.text_list(big) == tuple(f"d{i}" for i in range(40)) and big not in columnar._TEXTS
    for i in range(200):  # ever new lists: the cache starts again rather than grow
        columnar.text_list(as_text([f"node-{i}-gpu"]))
        assert columnar._TEXTS_BYTES[0] == sum(len(k) for k in columnar._TEXTS) <= 16 * 64
    assert columnar.text_list(b"cpu0") is None and columnar.text_list(b"\xff\n") is None


PACKED_BAD = {
    "unknown column": (
        lambda t: t.packed_names.__setitem__(0, "load2"),
        "column 'load2': not a column of load",
    ),
    "twice": (lambda t: t.packed_names.__setitem__(1, t.packed_names[0]), "appears twice"),
    "too many": (lambda t: t.packed_names.extend(["load1"] * 64), "66 columns; load has"),
    "short values": (lambda t: setattr(t, "packed_values", t.packed_values[:-8]), "packed_values is 8 bytes"),
    "nulls size": (lambda t: setattr(t, "packed_nulls", b"\x00"), "packed_nulls is 1 bytes"),
    "both layouts": (lambda t: t.columns.add(name="load5", f64=[1.0]), "both packed values and columns"),
    "NaN": (lambda t: setattr(t, "packed_values", struct.pack("<dq", math.nan, 10)), "NaN or infinity"),
    "negative counter": (
        lambda t: setattr(t, "packed_values", struct.pack("<dq", 0.5, -3)),
        "negative counter",
    ),
}


@pytest.mark.parametrize("case", sorted(PACKED_BAD))
def test_a_malformed_packed_table_is_refused_saying_where(case: str) -> None:
    batch = good_batch(NOW, packed=True)
    assert list(_packed(batch).packed_names) == ["load1", "context_switches"]
    fn, message = PACKED_BAD[case]
    fn(_packed(batch))
    with pytest.raises(InvalidBatch, match=message) as err:
        validate(batch, now_ns=NOW)
    assert "batch seq 7 table 'load'" in str(err.value)


def test_a_packed_table_counts_its_samples_without_its_nulls() -> None:
    batch = good_batch(NOW, packed=True)
    assert check(batch, now_ns=NOW).samples == 2
    t = _packed(batch)
    t.packed_nulls = b"\x01\x00"  # load1 NULL
    assert check(batch, now_ns=NOW).samples == 1


NOW = time.time_ns()


def mutate(fn: object) -> pb.Batch:
    batch = good_batch(NOW)
    fn(batch)
    return batch


def _col(batch: pb.Batch, name: str) -> pb.Column:
    return next(c for c in batch.tables[0].columns if c.name == name)


BAD = {
    "unknown table": (lambda b: setattr(b.tables[0], "name", "gpus"), "unknown table"),
    "unknown column": (lambda b: setattr(b.tables[0].columns[0], "name", "load2"), "not a column of load"),
    "too few values": (lambda b: _col(b, "load1").f64.append(1.0), "has 2 values for 1 rows"),
    "wrong array": (lambda b: _col(b, "load1").i64.append(1), "values came in the other array"),
    "NaN": (lambda b: _col(b, "load1").f64.__setitem__(0, math.nan), "NaN or infinity"),
    "infinity": (lambda b: _col(b, "load1").f64.__setitem__(0, math.inf), "NaN or infinity"),
    "negative counter": (lambda b: _col(b, "context_switches").i64.__setitem__(0, -1), "negative counter"),
    "device index": (lambda b: b.tables[0].device_index.__setitem__(0, 3), "points past"),
    "index count": (lambda b: b.tables[0].device_index.append(0), "device_index has 2 entries"),
    "future": (lambda b: b.tables[0].time_ns.__setitem__(0, NOW + 3600 * 10**9), "time_ns outside"),
    "past": (lambda b: b.tables[0].time_ns.__setitem__(0, 10**9), "time_ns outside"),
    "node id": (lambda b: setattr(b, "node_id", "bad node\n"), "node_id"),
    "no boot id": (lambda b: setattr(b, "boot_id", ""), "boot_id"),
    "interval": (lambda b: setattr(b, "interval_s", -1.0), "interval_s"),
    "twice": (lambda b: b.tables.append(b.tables[0]), "appears twice"),
    "nulls size": (lambda b: setattr(_col(b, "load1"), "nulls", b"\x00\x00"), "nulls bitmap"),
    "device name": (lambda b: b.tables[0].devices.__setitem__(0, "\x00evil"), "control character"),
}


values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    st.lists(values, min_size=1, max_size=12),
    st.sampled_from(["int", "float"]),
    st.sampled_from(["counter", "gauge"]),
)
def test_the_whole_column_check_refuses_what_the_per_value_check_does(
    column: list[float | int | None], type_: str, kind: str
) -> None:
    """storable's C-level fast path (min, max, sum) must keep exactly what the per-value rule keeps."""
    expected = [_storable(v, type_, kind) for v in column]
    got = storable(column, type_, kind)
    if all(v is None for v in expected):
        assert got is None
        return
    assert got is not None
    assert [None if v is None else (type(v), v) for v in got] == [
        None if v is None else (type(v), v) for v in expected
    ] or (type_ == "float" and list(map(float, cast(list[float], got))) == expected)
    if type_ == "int":  # the wire's int64 array takes ints only, never bools or floats
        assert all(v is None or type(v) is int for v in got)


def test_good_batch_counts_its_samples() -> None:
    assert validate(good_batch(NOW), now_ns=NOW).samples == 2
    assert check(good_batch(NOW), now_ns=NOW).samples == 2


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_batches_are_refused_with_a_precise_message(case: str) -> None:
    fn, message = BAD[case]
    with pytest.raises(InvalidBatch, match=message) as err:
        validate(mutate(fn), now_ns=NOW)
    assert "batch seq 7" in str(err.value)


def test_null_entries_may_hold_anything() -> None:
    batch = good_batch(NOW)
    col = _col(batch, "load1")
    col.f64[0] = math.nan
    col.nulls = b"\x01"  # row 0 is NULL: its placeholder is not checked
    assert validate(batch, now_ns=NOW).samples == 1


def test_schema_names_are_sql_identifiers() -> None:
    for t in TABLES.values():
        for name in (t.name, *t.field_names):
            assert name.isidentifier() and name == name.lower(), name


def test_the_collector_view_reads_the_same_bytes_as_arrays() -> None:
    from ironsight.core.columnar import view

    b = TableBuilder("disk")
    b.add(NOW, "nvme0n1", {"read_bytes": 2**40 + 3, "io_time_seconds": 1.5})
    b.add(NOW + 10**9, "sda", {"read_bytes": 7, "io_time_seconds": None})
    batch = pb.Batch(node_id="n1", boot_id="b", seq=1, interval_s=1.0)
    batch.tables.append(b.to_proto())
    slow, fast = to_arrow("n1", batch.tables[0]), to_arrow("n1", view(batch).tables[0])
    assert slow.equals(fast)
    rows = fast.to_pylist()
    assert [r["read_bytes"] for r in rows] == [2**40 + 3, 7]
    assert [r["io_time_seconds"] for r in rows] == [1.5, None]
    assert [r["device"] for r in rows] == ["nvme0n1", "sda"]


def test_an_unpacked_array_is_refused() -> None:
    # Hand-encode a Table whose time_ns is not packed: field 2, wire type 1 (fixed64), per value.
    import struct

    name = b"\x0a\x04load"
    times = b"".join(b"\x11" + struct.pack("<q", NOW + i) for i in range(2))
    raw_table = name + times + b"\x1a\x00" + b"\x25" + struct.pack("<I", 0) + b"\x25" + struct.pack("<I", 0)
    batch = pb.BatchView(node_id="n1", boot_id="b", seq=3, interval_s=1.0)
    try:
        batch.tables.append(pb.TableView.FromString(raw_table))
    except Exception:
        return  # the parser itself refuses: fine, nothing is stored
    with pytest.raises(InvalidBatch):
        validate(batch, now_ns=NOW)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_garbled_packed_table_is_refused_or_stored_as_sent(data: st.DataObject) -> None:
    """Whatever is done to the packed fields, the check refuses it with InvalidBatch, or what it
    passes decodes to exactly the values sent under the names sent (never a crash in decoding)."""
    b = TableBuilder("disk")
    for i in range(data.draw(st.integers(1, 5))):
        b.add(NOW + i, "nvme0n1", {"read_bytes": 10 + i, "io_time_seconds": 0.5 * i, "queue_depth": None})
    batch = pb.Batch(node_id="n1", boot_id="boot", seq=7, interval_s=1.0)
    batch.tables.append(b.to_proto())
    t = batch.tables[0]
    known = [f.name for f in TABLES["disk"].fields]
    change = data.draw(st.sampled_from(["names", "values", "nulls", "rows"]))
    if change == "names":
        t.packed_names_text = as_text(
            data.draw(st.lists(st.sampled_from([*known[:4], "nope", ""]), max_size=4))
        )
    elif change == "values":  # any bytes, often exactly as many as the columns need
        size = len(t.packed_values)
        t.packed_values = data.draw(
            st.one_of(st.binary(max_size=120), st.binary(min_size=size, max_size=size))
        )
    elif change == "nulls":
        t.packed_nulls = data.draw(st.binary(max_size=6))
    else:
        t.time_ns.append(NOW)
    try:
        validate(batch, now_ns=NOW)
    except InvalidBatch:
        return
    rows = to_arrow("n1", t).to_pylist()
    n, names = len(t.time_ns), list(table_lists(t)[1])
    sent = struct.unpack(f"<{len(names) * n}q", t.packed_values) if names else ()
    for j, name in enumerate(names):
        ints = [sent[j * n + i] for i in range(n)]
        got = [r[name] for r in rows]
        nulls = (
            null_mask(t.packed_nulls[j * ((n + 7) // 8) : (j + 1) * ((n + 7) // 8)], n)
            if t.packed_nulls
            else None
        )
        for i in range(n):
            if nulls is not None and nulls[i]:
                assert got[i] is None
            elif TABLES["disk"].field(name).type == "int":
                assert got[i] == ints[i]
            else:
                assert got[i] == struct.unpack("<d", struct.pack("<q", ints[i]))[0]
