"""Checks a batch from the wire before anything of it is stored; says precisely what is wrong."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import numpy as np

from ironsight.columnar import Decoded, decode, view
from ironsight.schema import TABLES
from ironsight.v1 import telemetry_pb2 as pb

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
DEVICE = re.compile(r"^[\x20-\x7e]{0,256}$")
MAX_ROWS_PER_TABLE = 2_000_000
# Oldest accepted sample: far enough back for replaying a year of recorded
# traces without --shift-to-now; newest: small clock skew only.
MAX_AGE_NS = 400 * 24 * 3600 * 10**9
MAX_FUTURE_NS = 300 * 10**9


class InvalidBatch(ValueError):
    """The batch is malformed or inconsistent; the message says where."""


@dataclass(frozen=True)
class Limits:
    max_age_ns: int = MAX_AGE_NS
    max_future_ns: int = MAX_FUTURE_NS


@dataclass
class ValidBatch:
    """A batch that passed validation, with its tables already decoded for storage."""

    batch: pb.BatchView
    tables: list[Decoded]
    samples: int


def validate(
    batch: pb.BatchView | pb.Batch, limits: Limits = Limits(), now_ns: int | None = None
) -> ValidBatch:
    """Raises InvalidBatch naming the first problem; returns the batch decoded, with its sample (value) count."""
    if isinstance(batch, pb.Batch):
        batch = view(batch)
    where = f"batch seq {batch.seq}"
    if not NAME.match(batch.node_id):
        raise InvalidBatch(f"{where}: node_id {batch.node_id[:64]!r} must be 1-128 of A-Z a-z 0-9 . _ : @ -")
    if not batch.boot_id or len(batch.boot_id) > 128:
        raise InvalidBatch(f"{where}: boot_id must be 1-128 characters")
    if not 0 < batch.interval_s <= 3600 or not np.isfinite(batch.interval_s):
        raise InvalidBatch(f"{where}: interval_s {batch.interval_s!r} must be in (0, 3600]")
    now = time.time_ns() if now_ns is None else now_ns
    seen: set[str] = set()
    tables = []
    samples = 0
    for t in batch.tables:
        decoded, count = _table(t, f"{where} table {t.name!r}", seen, limits, now)
        tables.append(decoded)
        samples += count
    return ValidBatch(batch, tables, samples)


def _values(raw: bytes, width: int, what: str, where: str) -> int:
    if len(raw) % width:
        raise InvalidBatch(
            f"{where}: {what} is {len(raw)} bytes, not whole {width}-byte values (unpacked array?)"
        )
    return len(raw) // width


def _table(t: pb.TableView, where: str, seen: set[str], limits: Limits, now: int) -> tuple[Decoded, int]:
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
    if not t.devices:
        raise InvalidBatch(f"{where}: no devices listed")
    for d in t.devices:
        if not DEVICE.match(d):
            raise InvalidBatch(
                f"{where}: device name {d[:64]!r} must be printable ASCII, at most 256 characters"
            )
    names: set[str] = set()
    for col in t.columns:
        cw = f"{where} column {col.name!r}"
        if col.name in names:
            raise InvalidBatch(f"{cw}: appears twice")
        names.add(col.name)
        try:
            field = schema.field(col.name)
        except KeyError:
            raise InvalidBatch(f"{cw}: not a column of {t.name}") from None
        wrong, right = (col.f64, col.i64) if field.type == "int" else (col.i64, col.f64)
        if len(wrong):
            raise InvalidBatch(f"{cw}: is {field.type}, but values came in the other array")
        if (count := _values(right, 8, "its array", cw)) != n:
            raise InvalidBatch(f"{cw}: has {count} values for {n} rows")
        if col.nulls and len(col.nulls) != (n + 7) // 8:
            raise InvalidBatch(f"{cw}: nulls bitmap is {len(col.nulls)} bytes; {n} rows need {(n + 7) // 8}")
    decoded = decode(t)
    times = decoded.time_ns
    if times.min() < now - limits.max_age_ns or times.max() > now + limits.max_future_ns:
        raise InvalidBatch(
            f"{where}: time_ns outside [now - {limits.max_age_ns // 10**9}s, now + {limits.max_future_ns // 10**9}s]"
        )
    if int(decoded.device_index.max()) >= len(t.devices):
        raise InvalidBatch(f"{where}: device_index points past the {len(t.devices)} devices listed")
    # Checked a table at a time over all its columns (a few numpy calls, not a few
    # per column); only a failure goes back to find which column.
    floats, counters, samples = [], [], 0
    for name, (values, mask) in decoded.columns.items():
        field = schema.field(name)
        checked = values if mask is None else values[~mask]
        samples += len(checked)
        if field.type == "float":
            floats.append(checked)
        if field.kind == "counter":
            counters.append(checked.astype(np.float64, copy=False) if field.type == "int" else checked)
    bad_float = bool(floats) and not np.isfinite(np.concatenate(floats)).all()
    bad_counter = bool(counters) and bool((np.concatenate(counters) < 0).any())
    if bad_float or bad_counter:
        for name, (values, mask) in decoded.columns.items():
            field = schema.field(name)
            checked = values if mask is None else values[~mask]
            if field.type == "float" and not np.isfinite(checked).all():
                raise InvalidBatch(
                    f"{where} column {name!r}: NaN or infinity (send NULL for a missing value)"
                )
            if field.kind == "counter" and len(checked) and checked.min() < 0:
                raise InvalidBatch(f"{where} column {name!r}: negative counter value {checked.min()}")
    return decoded, samples
