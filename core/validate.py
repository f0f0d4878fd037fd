"""Checks a batch from the wire before anything of it is stored; says precisely what is wrong."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ironsight.core.columnar import Part, bad_values, decode_group, read_part, table_lists, view
from ironsight.core.schema import TABLES, device_name_problem
from ironsight.v1 import telemetry_pb2 as pb

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
MAX_ROWS_PER_TABLE = 2_000_000
# Oldest accepted sample: far enough back for replaying a year of recorded
# traces without --shift-to-now; newest: small clock skew only.
MAX_AGE_NS = 400 * 24 * 3600 * 10**9
MAX_FUTURE_NS = 300 * 10**9


# How a collector names a refused batch and why, in the trailing metadata of the stream it ends: the agent
# takes that batch out of its spool (into the quarantine) instead of resending it forever.
REJECTED_SEQ_KEY = "ironsight-rejected-seq"
REJECTED_REASON_KEY = "ironsight-rejected-reason"


class InvalidBatch(ValueError):
    """The batch is malformed or inconsistent; the message says where."""

    def __init__(self, message: str, seq: int | None = None, reason: str = "malformed") -> None:
        super().__init__(message)
        self.seq = seq
        self.reason = reason  # for the rejected-batches metric: malformed, names, values, time, identity


@dataclass(frozen=True)
class Limits:
    max_age_ns: int = MAX_AGE_NS
    max_future_ns: int = MAX_FUTURE_NS


@dataclass
class ValidBatch:
    """A batch whose structure passed: names, lengths, types, times, devices.

    Its values (NaN, infinities, negative counters) are checked by the store for a
    whole commit group at once (ironsight.collector.store), or here by check_values.
    """

    batch: pb.BatchView
    samples: int  # its values (check), or at most that many (check_head: its size over 8)
    shift_ns: int = 0  # what its times were shifted by for the node's clock (collector.clocks)
    clock_offset_ns: int | None = None  # the node's clock offset as measured at its arrival
    # None: its tables' structure was checked too (check). Else (check_head) the store checks it, a
    # whole commit group's tables at once (check_group), within these limits.
    limits: Limits | None = None


def validate(
    batch: pb.BatchView | pb.Batch, limits: Limits = Limits(), now_ns: int | None = None
) -> ValidBatch:
    """Everything: structure and values. Raises InvalidBatch naming the first problem."""
    valid = check(batch, limits, now_ns)
    check_values(valid.batch)
    return valid


def check(batch: pb.BatchView | pb.Batch, limits: Limits = Limits(), now_ns: int | None = None) -> ValidBatch:
    """The structure of one batch; raises InvalidBatch naming the first problem."""
    if isinstance(batch, pb.Batch):
        batch = view(batch)
    now = time.time_ns() if now_ns is None else now_ns
    _check_head(batch, limits, now)
    where = f"batch seq {batch.seq}"
    try:
        samples = _fast(batch, now, limits)
        if samples is None:  # something new or wrong: the checks that say precisely what
            seen: set[str] = set()
            samples = sum(_table(t, f"{where} table {t.name!r}", seen, limits, now) for t in batch.tables)
    except InvalidBatch as exc:
        exc.seq = batch.seq
        raise
    return ValidBatch(batch, samples)


def check_head(batch: pb.BatchView, size: int, limits: Limits = Limits()) -> ValidBatch:
    """The batch's own fields (node, boot, interval, that it has tables, its look at GPU owners); its
    tables' structure is left to the store (check_group), which reads their fields anyway: checking
    each batch's here and reading them again there cost a fleet's collector a third of its time."""
    _check_head(batch, limits, time.time_ns())
    return ValidBatch(batch, size // 8, limits=limits)


def _check_head(batch: pb.BatchView, limits: Limits, now: int) -> None:
    where = f"batch seq {batch.seq}"
    try:
        if not NAME.match(batch.node_id):
            raise InvalidBatch(
                f"{where}: node_id {batch.node_id[:64]!r} must be 1-128 of A-Z a-z 0-9 . _ : @ -"
            )
        if not batch.boot_id or len(batch.boot_id) > 128:
            raise InvalidBatch(f"{where}: boot_id must be 1-128 characters")
        if not 0 < batch.interval_s <= 3600 or not np.isfinite(batch.interval_s):
            raise InvalidBatch(f"{where}: interval_s {batch.interval_s!r} must be in (0, 3600]")
        if not batch.tables:  # nothing to store; a flood of them would only fill the batches table
            raise InvalidBatch(f"{where}: has no table")
        if batch.HasField("ownership") and (problem := ownership_problem(batch.ownership, now, limits)):
            raise InvalidBatch(f"{where}: ownership: {problem}")
    except InvalidBatch as exc:
        exc.seq = batch.seq
        raise


def check_group(batches: Sequence[list[Part]], now: int, limits: Limits) -> list[bool]:
    """Each batch's tables (read once, columnar.read_part): whether they pass every structure check,
    tested with a few calls for all the batches at once. False where anything is new or wrong (a
    device or list of columns not seen before, the first layout): check() then looks and says what."""
    ok = [True] * len(batches)
    times, indexes, devices, rows, owners = [], [], [], [], []
    for i, parts in enumerate(batches):
        if not _parts_fit(parts):
            ok[i] = False
            continue
        for p in parts:
            times.append(p.time)
            indexes.append(p.index)
            devices.append(len(p.devices))
            rows.append(p.rows)
            owners.append(i)
    if not times:
        return ok
    stamps = np.frombuffer(b"".join(times), dtype="<i8")
    bad = (stamps < now - limits.max_age_ns) | (stamps > now + limits.max_future_ns)
    bad |= np.frombuffer(b"".join(indexes), dtype="<u4") >= np.repeat(devices, rows)
    if bad.any():
        for i in np.unique(np.repeat(owners, rows)[bad]).tolist():
            ok[i] = False
    return ok


def _parts_fit(parts: list[Part]) -> bool:
    """What _fast checks table by table, on tables read once."""
    seen: set[str] = set()
    for p in parts:
        name, names, n = p.name, p.names, p.rows
        if (
            p.wrong
            or name in seen
            or name not in TABLES
            or not names
            or _names_problem(name, names) is not None
        ):
            return False
        seen.add(name)
        if not 0 < n <= MAX_ROWS_PER_TABLE or len(p.time) & 7 or len(p.index) != 4 * n or p.table.columns:
            return False
        if not p.devices or not GOOD_DEVICES.issuperset(p.devices) or len(p.values) != 8 * len(names) * n:
            return False
        if p.nulls and len(p.nulls) != len(names) * ((n + 7) >> 3):
            return False
    return True


SOURCES = ("kubernetes", "mapping", "slurm", "systemd", "manual")
MAX_OWNERSHIP_ROWS = 4096


def ownership_problem(o: pb.Ownership, now_ns: int, limits: Limits = Limits()) -> str | None:
    """What is wrong with a batch's look at who owns each GPU, or None."""
    if not now_ns - limits.max_age_ns <= o.time_ns <= now_ns + limits.max_future_ns:
        return "time_ns out of range"
    if len(o.gpus) + len(o.jobs) + len(o.processes) > MAX_OWNERSHIP_ROWS:
        return f"more than {MAX_OWNERSHIP_ROWS} GPUs, jobs and processes"
    gpus = set(o.gpus)
    for g in o.gpus:
        if (problem := device_name_problem(g)) is not None:
            return f"GPU {g[:64]!r} {problem}"
    for j in o.jobs:
        if j.gpu not in gpus:
            return f"job {j.job[:64]!r} on GPU {j.gpu[:64]!r}, which is not among the GPUs listed"
        if not 1 <= len(j.job) <= 256 or not j.job.isprintable():
            return f"job id {j.job[:64]!r} must be 1-256 printable characters"
        if j.source not in SOURCES:
            return f"job source {j.source[:64]!r} is not one of {', '.join(SOURCES)}"
        if len(j.attrs) > 16 or any(len(k) > 64 or len(v) > 256 for k, v in j.attrs.items()):
            return f"job {j.job[:64]!r}: at most 16 attrs, names up to 64 and values up to 256 characters"
    for p in o.processes:
        if p.gpu not in gpus:
            return f"process {p.pid} on GPU {p.gpu[:64]!r}, which is not among the GPUs listed"
        if len(p.name) > 256 or len(p.job) > 256 or p.used_memory_bytes < -1:
            return f"process {p.pid}: name or job over 256 characters, or memory below -1"
    return None


def check_values(batch: pb.BatchView) -> None:
    """NaN or infinities in non-NULL floats, negative counters: raises InvalidBatch saying where."""
    for t in batch.tables:
        group = decode_group(t.name, [(batch.node_id, t)])
        if not bad_values(group):
            continue
        schema = TABLES[t.name]
        for name, (values, mask) in group.columns.items():
            field = schema.field(name)
            checked = values if mask is None else values[~mask]
            cw = f"batch seq {batch.seq} table {t.name!r} column {name!r}"
            if field.type == "float" and not np.isfinite(checked).all():
                raise InvalidBatch(
                    f"{cw}: NaN or infinity (send NULL for a missing value)", seq=batch.seq, reason="values"
                )
            if field.kind == "counter" and len(checked) and checked.min() < 0:
                raise InvalidBatch(
                    f"{cw}: negative counter value {checked.min()}", seq=batch.seq, reason="values"
                )


def _values(raw: bytes, width: int, what: str, where: str) -> int:
    if len(raw) % width:
        raise InvalidBatch(
            f"{where}: {what} is {len(raw)} bytes, not whole {width}-byte values (unpacked array?)"
        )
    return len(raw) // width


def _table(t: pb.TableView, where: str, seen: set[str], limits: Limits, now: int) -> int:
    schema = TABLES.get(t.name)
    if schema is None:
        raise InvalidBatch(f"{where}: unknown table (known: {', '.join(sorted(TABLES))})")
    if t.name in seen:
        raise InvalidBatch(f"{where}: appears twice in one batch")
    seen.add(t.name)
    n = _values(t.time_ns, 8, "time_ns", where)
    if n == 0 or n > MAX_ROWS_PER_TABLE:
        raise InvalidBatch(f"{where}: has {n} rows; expected 1 to {MAX_ROWS_PER_TABLE}")
    if (entries := _values(t.device_index, 4, "device_index", where)) != n:
        raise InvalidBatch(f"{where}: device_index has {entries} entries for {n} rows")
    devices, packed_names, wrong = table_lists(t)
    if wrong:
        raise InvalidBatch(f"{where}: {wrong}", reason="names")
    if not devices:
        raise InvalidBatch(f"{where}: no devices listed")
    for d in devices:
        if d not in GOOD_DEVICES and (problem := device_name_problem(d)) is not None:
            raise InvalidBatch(f"{where}: device name {d[:64]!r} {problem}", reason="names")
    if len(GOOD_DEVICES) < MAX_GOOD_DEVICES:
        GOOD_DEVICES.update(devices)
    times = np.frombuffer(t.time_ns, dtype="<i8")
    if times.min() < now - limits.max_age_ns or times.max() > now + limits.max_future_ns:
        raise InvalidBatch(
            f"{where}: time_ns outside [now - {limits.max_age_ns // 10**9}s, now + {limits.max_future_ns // 10**9}s]",
            reason="time",
        )
    if int(np.frombuffer(t.device_index, dtype="<u4").max()) >= len(devices):
        raise InvalidBatch(f"{where}: device_index points past the {len(devices)} devices listed")
    if packed_names or t.packed_values or t.packed_nulls:
        if t.columns:
            raise InvalidBatch(f"{where}: has both packed values and columns; send one layout")
        return _packed(t, packed_names, n, where)
    names: set[str] = set()
    samples = 0
    for col in t.columns:
        cw = f"{where} column {col.name!r}"
        if col.name in names:
            raise InvalidBatch(f"{cw}: appears twice")
        names.add(col.name)
        try:
            field = schema.field(col.name)
        except KeyError:
            raise InvalidBatch(f"{cw}: not a column of {t.name}") from None
        other, right = (col.f64, col.i64) if field.type == "int" else (col.i64, col.f64)
        if len(other):
            raise InvalidBatch(f"{cw}: is {field.type}, but values came in the other array")
        if (count := _values(right, 8, "its array", cw)) != n:
            raise InvalidBatch(f"{cw}: has {count} values for {n} rows")
        if col.nulls:
            if len(col.nulls) != (n + 7) // 8:
                raise InvalidBatch(
                    f"{cw}: nulls bitmap is {len(col.nulls)} bytes; {n} rows need {(n + 7) // 8}"
                )
            count -= (int.from_bytes(col.nulls, "little") & ((1 << n) - 1)).bit_count()
        samples += count
    return samples


def _fast(batch: pb.BatchView, now: int, limits: Limits) -> int | None:
    """The samples of a batch like those before it (packed tables, column lists and device
    names seen good), checked with a few calls for the whole batch; None where anything is
    new or wrong, for _table to check and name."""
    parts = [read_part(batch.node_id, t) for t in batch.tables]
    if not check_group([parts], now, limits)[0]:
        return None
    return sum(
        len(p.names) * p.rows - (int.from_bytes(p.nulls, "little").bit_count() if p.nulls else 0)
        for p in parts
    )


def _packed(t: pb.TableView, names: tuple[str, ...], n: int, where: str) -> int:
    """A packed table: its names (checked once per table and list of names), then two lengths."""
    problem = _names_problem(t.name, names)
    if problem is not None:
        raise InvalidBatch(f"{where}: {problem}")
    values, nulls = len(t.packed_values), t.packed_nulls
    if values != len(names) * n * 8:
        raise InvalidBatch(
            f"{where}: packed_values is {values} bytes; {len(names)} columns of {n} rows need {len(names) * n * 8}"
        )
    if not nulls:
        return len(names) * n
    per = (n + 7) // 8
    if len(nulls) != len(names) * per:
        raise InvalidBatch(
            f"{where}: packed_nulls is {len(nulls)} bytes; {len(names)} columns of {n} rows need {len(names) * per}"
        )
    return len(names) * n - int(np.unpackbits(np.frombuffer(nulls, np.uint8).reshape(len(names), per), axis=1,
                                               count=n, bitorder="little").sum())  # fmt: skip


# Device names and lists of column names already found good: a fleet sends the same ones in every
# batch, and checking each again was most of a batch's structure check.
MAX_GOOD_DEVICES = 100_000
GOOD_DEVICES: set[str] = set()


def _names_problem(table: str, names: tuple[str, ...]) -> str | None:
    """What is wrong with a packed table's list of columns, or None. Lists no longer than the
    table's columns are remembered (a hostile sender cannot fill the cache with long ones)."""
    if len(names) > len(TABLES[table].fields):
        return f"{len(names)} columns; {table} has {len(TABLES[table].fields)}"
    return _short_names_problem(table, names)


@functools.lru_cache(maxsize=4096)
def _short_names_problem(table: str, names: tuple[str, ...]) -> str | None:
    schema = TABLES[table]
    known = set(schema.field_names)
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return f"column {name!r} appears twice"
        if name not in known:
            return f"column {name!r}: not a column of {table}"
        seen.add(name)
    return None
