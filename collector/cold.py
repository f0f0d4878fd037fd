"""The cold tier: whole days of raw samples moved out of DuckDB into Parquet files it reads in place.

DuckDB compresses a column a vector at a time in arrival order, where a
series' neighbours are other devices' samples, and keeps each float as a
float. A day of one table sorted by node, device and time, with every float
that is a decimal (CPU time in 0.01 s, watts and joules from milliwatts and
millijoules) stored as an integer times 10^-k, every integer column in the
encoding that comes out smallest (deltas for counters, mostly), then zstd in
large pages, takes about a ninth of the space (bench/run.py storage: 0.096
against 0.90 bytes a value). Nothing is rounded: a value goes in as an integer only if dividing
it back gives the very same double, bit for bit; any other keeps its double
in <column>__raw. So a reader gets exactly what was stored.

Files are <db>.cold/<table>/<day>.<seq>.parquet, listed in cold_files; seq
counts later files for rows of a day that arrived after it was moved. Ingest
writes <table>_hot; readers (CLI, detector, rollups, SQL) query <table>, a
view of the hot rows and the table's files, rebuilt whenever files come or
go. Any other engine (Spark, Trino, ClickHouse, pandas) reads the files as
they are: the columns are the table's, plus __div and __raw beside floats.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ironsight.core.schema import TABLES, Table

log = logging.getLogger("ironsight.collector")

_MINUS_ZERO = np.array(-0.0).view(np.int64)  # an integer 0 would come back as +0.0
MAX_DECIMALS = 9  # 10^-9: nanoseconds, the finest unit any source reports
ROWS_PER_BATCH = 1 << 20
ZSTD_LEVEL = 9  # 4 % smaller than 3, 20 % slower: a day is written once
# Each integer column is written in whichever of these comes out smallest on a sample of the day's first
# rows: counters as deltas, gauges that sit on a few values as a dictionary or plain for zstd to find
# the repeats (bench/run.py storage: 5 % smaller than deltas for every column). None: a dictionary.
ENCODINGS: tuple[str | None, ...] = ("DELTA_BINARY_PACKED", "PLAIN", "BYTE_STREAM_SPLIT", None)
SAMPLE_ROWS = 1 << 16
# zstd compresses a page at a time: pages of 256 Ki rows (2 MiB of values) instead of Arrow's 20,000
# give it the context to find a series' repeats (14 % smaller, as fast to write). Readers read whole row
# groups anyway (pruned by their node, device and time statistics).
PAGE_ROWS = 1 << 18
PAGE_BYTES = 8 * PAGE_ROWS
# Statistics (min, max a row group) only where readers filter: per value column they cost 3 % of the bytes.
STATISTICS = ["node", "device", "time"]


def cold_dir(db_path: str | Path) -> Path:
    # Absolute: the views name the files, and a reader's working directory is not the collector's.
    return Path(f"{db_path}.cold").absolute()


def columns(t: Table) -> list[str]:
    return ["node", "device", "time", *(f.name for f in t.fields)]


@dataclass
class Moved:
    files: int = 0
    rows: int = 0
    bytes: int = 0


# -- encoding


def decimal_ints(values: np.ndarray, valid: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """values as integers n with n / div == value exactly (div = 10^k, the k that fits the most values,
    the smallest among equals); returns div, the integers and which values fit."""
    best: tuple[int, int, np.ndarray, np.ndarray] | None = None
    bits = values.view(np.int64)
    for k in range(MAX_DECIMALS + 1):
        div = 10.0**k
        with np.errstate(over="ignore", invalid="ignore"):
            n = np.round(values * div)
            fits = valid & (np.abs(n) <= 2**53) & ((n / div).view(np.int64) == bits) & (bits != _MINUS_ZERO)
        count = int(fits.sum())
        if best is None or count > best[1]:
            best = (k, count, n, fits)
        if count == int(valid.sum()):
            break
    assert best is not None
    k, _, n, fits = best
    return 10.0**k, np.where(fits, n, 0).astype(np.int64), fits


def encode(batch: pa.RecordBatch, t: Table) -> pa.RecordBatch:
    """A batch of stored rows in the file layout: floats as <f> (int64), <f>__div and <f>__raw."""
    arrays: dict[str, pa.Array] = {
        "node": batch.column("node"),
        "device": batch.column("device"),
        "time": batch.column("time"),
    }
    for f in t.fields:
        col = batch.column(f.name)
        if f.type == "int":
            arrays[f.name] = col.cast(pa.int64())
            continue
        valid = pc.is_valid(col).to_numpy(zero_copy_only=False)
        values = np.asarray(pc.fill_null(col, 0.0).to_numpy(zero_copy_only=False), dtype=np.float64)
        div, ints, fits = decimal_ints(values, valid)
        arrays[f.name] = pa.array(ints, pa.int64(), mask=~fits)
        arrays[f"{f.name}__div"] = pa.array(np.full(len(values), div))
        raw = valid & ~fits  # rare: the doubles no decimal scale gives back exactly
        arrays[f"{f.name}__raw"] = pa.array(values, pa.float64(), mask=~raw)
    return pa.RecordBatch.from_pydict(arrays)


def _write(path: Path, batches: Any, t: Table) -> int:
    """Streams DuckDB's record batches into one Parquet file; returns its rows."""
    writer: pq.ParquetWriter | None = None
    rows = 0
    try:
        for batch in batches:
            if not batch.num_rows:
                continue
            out = encode(batch, t)
            if writer is None:
                encodings = {"time": "DELTA_BINARY_PACKED"} | {
                    n: _smallest(out.column(n)[:SAMPLE_ROWS])
                    for n, f in zip(out.schema.names, out.schema, strict=True)
                    if f.type == pa.int64() and n != "time"
                }
                dictionary = [n for n in out.schema.names if n in ("node", "device") or n.endswith("__div")]
                writer = pq.ParquetWriter(
                    path, out.schema, **_compression(),
                    use_dictionary=dictionary + [n for n, e in encodings.items() if e is None],
                    column_encoding={n: e for n, e in encodings.items() if e is not None},
                    write_statistics=STATISTICS,
                )  # fmt: skip
            writer.write_batch(out, row_group_size=ROWS_PER_BATCH)
            rows += batch.num_rows
    finally:
        if writer is not None:
            writer.close()
    return rows


def _compression() -> dict[str, Any]:
    """How a day file's pages are cut and compressed: the same for _smallest's trials as for the file."""
    return {"compression": "zstd", "compression_level": ZSTD_LEVEL, "data_page_size": PAGE_BYTES,
            "max_rows_per_page": PAGE_ROWS}  # fmt: skip


def _smallest(sample: pa.Array) -> str | None:
    """The encoding (ENCODINGS) that writes this sample of a column smallest."""
    sizes = {}
    for encoding in ENCODINGS:
        buf = pa.BufferOutputStream()
        pq.write_table(
            pa.table({"x": sample}), buf, **_compression(),
            use_dictionary=encoding is None, column_encoding=None if encoding is None else {"x": encoding},
            write_statistics=False,
        )  # fmt: skip
        sizes[encoding] = buf.getvalue().size
    return min(ENCODINGS, key=sizes.__getitem__)


def _durable(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- the views


def view_sql(table: str, files: list[str]) -> str:
    """CREATE OR REPLACE VIEW for table: its hot rows, and its files' rows decoded."""
    t = TABLES[table]
    hot = f"SELECT {', '.join(columns(t))} FROM {table}_hot"
    if not files:
        return f"CREATE OR REPLACE VIEW {table} AS {hot}"
    present: set[str] = set()
    for path in files:
        present.update(pq.read_schema(path).names)
    exprs = ["node", "device", "time"]
    for f in t.fields:
        kind = "BIGINT" if f.type == "int" else "DOUBLE"
        if f.name not in present:  # a column added after these files were written
            exprs.append(f"NULL::{kind} AS {f.name}")
        elif f.type == "int":
            exprs.append(f"{f.name}::BIGINT AS {f.name}")
        else:
            exprs.append(f"COALESCE({f.name}::DOUBLE / {f.name}__div, {f.name}__raw) AS {f.name}")
    listed = ", ".join("'" + p.replace("'", "''") + "'" for p in files)
    cold = f"SELECT {', '.join(exprs)} FROM read_parquet([{listed}], union_by_name = true)"
    return f"CREATE OR REPLACE VIEW {table} AS {hot} UNION ALL {cold}"


def files_of(con: Any, db_path: str | Path, table: str) -> list[str]:
    """The table's files that are there (paths are kept relative to the cold folder, which moves with
    the database file)."""
    root = cold_dir(db_path)
    rows = con.execute("SELECT path FROM cold_files WHERE tbl = ? ORDER BY day, seq", [table]).fetchall()
    return [str(root / r[0]) for r in rows if (root / r[0]).is_file()]


def rebuild_views(con: Any, db_path: str | Path) -> None:
    """At start: files of a move that crashed before its commit go (their rows are still hot); files
    listed but gone are said once and left out, so the rest stays readable."""
    root = cold_dir(db_path)
    listed = {r[0] for r in con.execute("SELECT path FROM cold_files").fetchall()}
    if root.is_dir():
        for path in root.glob("*/*.parquet*"):
            if str(path.relative_to(root)) not in listed:
                log.warning(
                    "cold tier: removing %s, a file no move finished (its rows are still stored)", path
                )
                path.unlink()
    missing = sorted(p for p in listed if not (root / p).is_file())
    if missing:  # kept listed: put back, they are read again
        log.error("cold tier: %d files are missing from %s (their rows cannot be read), e.g. %s",
                  len(missing), root, missing[0])  # fmt: skip
    for table in TABLES:
        con.execute(view_sql(table, files_of(con, db_path, table)))


# -- moving days out, and retention


def move_day(con: Any, db_path: str | Path, table: str, day: date) -> Moved:
    """One table's rows of one UTC day into a new file, in one transaction with their removal from the hot
    table: rows that arrive meanwhile are not in its snapshot, so they stay hot for the next move."""
    t = TABLES[table]
    folder = cold_dir(db_path) / table
    folder.mkdir(parents=True, exist_ok=True)
    start = datetime(day.year, day.month, day.day)
    end = start + timedelta(days=1)
    con.execute("BEGIN TRANSACTION")
    path: Path | None = None
    try:
        seq = con.execute("SELECT coalesce(max(seq) + 1, 0) FROM cold_files WHERE tbl = ? AND day = ?",
                          [table, day]).fetchall()[0][0]  # fmt: skip
        path = folder / f"{day.isoformat()}.{seq:04d}.parquet"
        tmp = path.with_name(path.name + ".tmp")
        reader = con.sql(
            f"SELECT {', '.join(columns(t))} FROM {table}_hot WHERE time >= $1 AND time < $2 "
            "ORDER BY node, device, time", params=[start, end],
        ).to_arrow_reader(ROWS_PER_BATCH)  # fmt: skip
        rows = _write(tmp, reader, t)
        if not rows:
            con.execute("ROLLBACK")
            return Moved()
        _durable(tmp)
        tmp.rename(path)
        _durable(folder)
        gone = con.execute(f"DELETE FROM {table}_hot WHERE time >= ? AND time < ?", [start, end]).fetchall()[
            0
        ][0]
        if gone != rows:
            raise RuntimeError(f"cold tier: {table} {day}: wrote {rows} rows but would remove {gone}")
        size = path.stat().st_size
        con.execute("INSERT INTO cold_files VALUES (?, ?, ?, ?, ?, ?, now()::TIMESTAMP)",
                    [table, day, seq, f"{table}/{path.name}", rows, size])  # fmt: skip
        con.execute(view_sql(table, files_of(con, db_path, table)))
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        if path is not None:
            path.unlink(missing_ok=True)
            path.with_name(path.name + ".tmp").unlink(missing_ok=True)
        raise
    return Moved(1, rows, size)


def move_before(con: Any, db_path: str | Path, before: datetime, stopping: Any = None) -> Moved:
    """Every whole UTC day that ended at or before `before`, table by table."""
    last = before.date()  # days before this one have ended by `before`
    out = Moved()
    for table in TABLES:
        days = con.execute(f"SELECT DISTINCT time::DATE FROM {table}_hot WHERE time < ? ORDER BY 1",
                           [datetime(last.year, last.month, last.day)]).fetchall()  # fmt: skip
        for (day,) in days:
            if stopping is not None and stopping():
                return out
            moved = move_day(con, db_path, table, day)
            out.files += moved.files
            out.rows += moved.rows
            out.bytes += moved.bytes
            log.info("cold tier: moved %s %s (%d rows, %d bytes)", table, day, moved.rows, moved.bytes)
    return out


def drop_before(con: Any, db_path: str | Path, cutoff: datetime) -> int:
    """Removes the files of days that ended at or before cutoff (retention); returns their rows."""
    last = cutoff.date()
    doomed = con.execute("SELECT tbl, path, rows FROM cold_files WHERE day < ?", [last]).fetchall()
    if not doomed:
        return 0
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute("DELETE FROM cold_files WHERE day < ?", [last])
        for table in sorted({tbl for tbl, _, _ in doomed}):
            con.execute(view_sql(table, files_of(con, db_path, table)))
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    for _, path, _ in doomed:  # after the commit: no view names them any more
        (cold_dir(db_path) / path).unlink(missing_ok=True)
    return sum(rows for _, _, rows in doomed)


def cold_bytes(con: Any) -> int:
    return int(con.execute("SELECT coalesce(sum(bytes), 0) FROM cold_files").fetchall()[0][0])


def oldest_day(con: Any) -> date | None:
    row = con.execute("SELECT min(day) FROM cold_files").fetchall()
    return row[0][0] if row else None
