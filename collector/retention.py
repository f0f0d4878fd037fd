"""Retention: raw samples for a while (default 7 days), one-minute rollups for longer (default 90 days), and
an optional cap on the database's size that prunes the oldest raw samples first. With a cold tier, the same
pass moves whole days of raw samples to Parquet files (collector/cold.py); retention then removes those a
day at a time.

A background thread rolls up each finished minute (two minutes behind the
clock, for batches in flight), then deletes raw rows that are both older than
the raw retention and rolled up, and rollups older than theirs. Each pass is
its own short transactions beside the ingest writer (DuckDB's MVCC), so
ingest never waits for it. DuckDB reuses the space of deleted rows rather
than shrinking the file: the size cap counts used blocks, not file bytes.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ironsight.collector import cold
from ironsight.collector.changes import Changes
from ironsight.collector.detect.sql import increment, ts
from ironsight.core.schema import TABLES
from ironsight.core.unixtime import to_ns
from ironsight.core.worker import Worker

log = logging.getLogger("ironsight.collector")

DELAY = timedelta(minutes=2)  # minutes this recent may still receive batches: not rolled up yet
CHUNK = timedelta(hours=6)  # rolled up per transaction when catching up


@dataclass(frozen=True)
class Policy:
    raw: timedelta = timedelta(days=7)
    rollups: timedelta = timedelta(days=90)
    max_bytes: int = 0  # 0: no cap
    cold_after: timedelta | None = None  # move whole days this long after they end; None: no cold tier


@dataclass
class Stats:
    rollup_rows: int = 0
    deleted: Counter[str] = field(default_factory=Counter)  # rows by reason: age, rollup_age, size
    used_bytes: int = 0  # the database's used blocks and the cold tier's files
    cold_bytes: int = 0
    cold_rows: int = 0  # moved to the cold tier
    last_error: str = ""


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def rollup_sql(table: str, start: datetime, end: datetime, missing_only: bool = False) -> str:
    """missing_only: just the (node, device, minute)s without a rollup yet, e.g. a spool resent after an
    outage longer than DELAY, whose minutes had been rolled up without it."""
    fields = TABLES[table].fields
    counters = [f.name for f in fields if f.kind == "counter"]
    cols = ", ".join(f"{f.name}::DOUBLE AS {f.name}" for f in fields)
    is_counter = f"col IN ({', '.join(repr(c) for c in counters)})" if counters else "false"
    missing = (
        f"AND NOT EXISTS (SELECT 1 FROM rollups_1m r WHERE r.tbl = '{table}' AND r.node = x.node "
        "AND r.device = x.device AND r.time = time_bucket(INTERVAL 1 MINUTE, x.time))"
        if missing_only
        else ""
    )
    # One minute of look-behind, so each series' first increase in the range has its previous sample.
    return f"""
    INSERT INTO rollups_1m
    SELECT '{table}', col, node, device, time_bucket(INTERVAL 1 MINUTE, time) AS minute,
           min(v), max(v), avg(v), arg_max(v, time),
           CASE WHEN {is_counter} THEN sum(inc) END, count(v)
    FROM (
        SELECT *, {increment("v", "node, device, col")} AS inc
        FROM (UNPIVOT (SELECT node, device, time, {cols} FROM {table}
                       WHERE time >= {ts(start - timedelta(minutes=1))} AND time < {ts(end)})
              ON COLUMNS(* EXCLUDE (node, device, time)) INTO NAME col VALUE v)
    ) x
    WHERE time >= {ts(start)} {missing}
    GROUP BY col, node, device, minute"""


def rollup(con: Any, start: datetime, end: datetime, missing_only: bool = False) -> int:
    """Rolls up [start, end) (whole minutes) in one transaction; returns the rows written."""
    rows = 0
    con.execute("BEGIN TRANSACTION")
    try:
        for table in TABLES:
            rows += con.execute(rollup_sql(table, start, end, missing_only)).fetchall()[0][0]
        if not missing_only:
            con.execute("INSERT OR REPLACE INTO retention_state VALUES ('rollup', ?)", [end])
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return rows


def rolled_until(con: Any) -> datetime | None:
    row = con.execute("SELECT rolled_until FROM retention_state WHERE name = 'rollup'").fetchall()
    return row[0][0] if row else None


def oldest_raw(con: Any) -> datetime | None:
    times = [con.execute(f"SELECT min(time) FROM {t}").fetchall()[0][0] for t in TABLES]
    times = [t for t in times if t is not None]
    return min(times) if times else None


def used_bytes(con: Any) -> int:
    row = con.execute("SELECT used_blocks, block_size FROM pragma_database_size()").fetchall()[0]
    return int(row[0]) * int(row[1])


def checkpoint(con: Any) -> bool:
    """Deleted blocks become reusable (and count as free) at a checkpoint; with a commit of the writer in
    progress DuckDB refuses one, and its own automatic checkpoint comes soon enough."""
    try:
        con.execute("CHECKPOINT")
    except Exception as exc:
        log.debug("retention: checkpoint deferred: %s", exc)
        return False
    return True


def delete_raw_before(
    con: Any, cutoff: datetime, oldest: datetime | None = None, db_path: str | Path | None = None
) -> int:
    """Raw rows before cutoff, after rolling up any of their minutes that arrived too late to be.
    oldest: the oldest raw sample, when the caller has just looked it up. With db_path, also the cold
    tier's files of days that ended by cutoff (a day at a time)."""
    oldest = oldest or oldest_raw(con)
    if oldest is None or oldest >= cutoff:
        return 0
    rollup(con, oldest.replace(second=0, microsecond=0), cutoff, missing_only=True)
    rows = 0
    for table in (*(f"{t}_hot" for t in TABLES), "gpu_processes"):
        rows += con.execute(f"DELETE FROM {table} WHERE time < {ts(cutoff)}").fetchall()[0][0]
    if db_path is not None:
        rows += cold.drop_before(con, db_path, cutoff)
    return rows


def used_and_cold_bytes(con: Any) -> tuple[int, int]:
    files = cold.cold_bytes(con)
    return used_bytes(con) + files, files


class Retention(Worker):
    def __init__(
        self,
        con: Any,
        policy: Policy,
        every_s: float = 60.0,
        db_path: str | Path | None = None,
        changes: Changes | None = None,
    ) -> None:
        """db_path: the database file, beside which the cold tier's files are (none without it);
        changes: told the time before which raw samples are deleted, after each deletion."""
        super().__init__("retention")
        self.con, self.policy, self.every_s, self.db_path = con, policy, every_s, db_path
        self.changes = changes
        self.stats = Stats()

    def start(self) -> None:
        self._measure()
        super().start()

    def _measure(self) -> None:
        self.stats.used_bytes, self.stats.cold_bytes = used_and_cold_bytes(self.con)

    def run(self) -> None:
        # The first pass a minute after start: a collector started to look at a replayed old trace (or a
        # test) sees it whole before it is pruned.
        while not self.sleep(self.every_s):
            try:
                self.run_once(_now())
                self.stats.last_error = ""
            except Exception as exc:  # a failed pass (disk full...) is retried next time
                msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if msg != self.stats.last_error:
                    log.error("retention pass failed: %s", msg)
                self.stats.last_error = msg

    def catch_up(self, until: datetime) -> None:
        """Rolls up every whole minute before until that is not rolled up yet."""
        until = until.replace(second=0, microsecond=0)
        start = rolled_until(self.con)
        if start is None:
            first = oldest_raw(self.con)
            if first is None:
                return
            start = first.replace(second=0, microsecond=0)
        while start < until and not self.stopping:
            end = min(until, start + CHUNK)
            self.stats.rollup_rows += rollup(self.con, start, end)
            start = end

    def run_once(self, now: datetime) -> None:
        p = self.policy
        self.catch_up(now - DELAY)
        done = rolled_until(self.con) or now
        # Never what is not rolled up; whole minutes, so a minute is either raw or a rollup.
        cutoff = min(now - p.raw, done).replace(second=0, microsecond=0)
        if (gone := delete_raw_before(self.con, cutoff, db_path=self.db_path)) > 0:
            self._pruned(cutoff)
            self.stats.deleted["age"] += gone
            log.info(
                "retention: deleted %d raw rows older than %s",
                gone,
                cutoff.isoformat(sep=" ", timespec="seconds"),
            )
        # Refused remote-write samples (collector/receive/) go with the raw samples they would have been.
        self.con.execute(f"DELETE FROM received_refused WHERE received_at < {ts(now - p.raw)}")
        # So do the keys that deduplicate batches (a row a batch, for ever before): a batch resent after
        # its samples' time is up would be pruned again (collector/seen.py keeps the recent ones in memory).
        self.con.execute(f"DELETE FROM batches WHERE received_at < {ts(now - p.raw)}")
        gone = self.con.execute(f"DELETE FROM rollups_1m WHERE time < {ts(now - p.rollups)}").fetchall()[0][0]
        self.stats.deleted["rollup_age"] += gone
        if p.cold_after is not None and self.db_path is not None:
            # Only what is rolled up: a moved minute is never rolled up again.
            moved = cold.move_before(
                self.con, self.db_path, min(now - p.cold_after, done), lambda: self.stopping
            )
            self.stats.cold_rows += moved.rows
        checkpoint(self.con)
        self._measure()
        while p.max_bytes and self.stats.used_bytes > p.max_bytes:
            oldest = oldest_raw(self.con)
            if oldest is None or oldest >= done:
                log.warning("retention: database uses %d bytes, over its cap of %d, with no rolled-up raw data "
                            "left to delete", self.stats.used_bytes, p.max_bytes)  # fmt: skip
                break
            cutoff = min(done, self._next_cut(oldest)).replace(second=0, microsecond=0)
            gone = delete_raw_before(self.con, cutoff, oldest, self.db_path)
            self._pruned(cutoff)
            self.stats.deleted["size"] += gone
            settled = checkpoint(self.con)
            self._measure()
            log.warning("retention: over the %d-byte cap: deleted %d raw rows before %s (now %d bytes used)",
                        p.max_bytes, gone, cutoff.isoformat(sep=" ", timespec="seconds"), self.stats.used_bytes)  # fmt: skip
            if not settled or not gone:  # used_bytes is stale until a checkpoint: go on next pass
                break

    def _pruned(self, cutoff: datetime) -> None:
        if self.changes is not None:
            self.changes.pruned(to_ns(cutoff.replace(tzinfo=None)) // 1_000_000)

    def _next_cut(self, oldest: datetime) -> datetime:
        """An hour of raw data past the oldest, or the whole day when that is in the cold tier."""
        day = cold.oldest_day(self.con) if self.db_path is not None else None
        if day is not None and oldest < datetime(day.year, day.month, day.day) + timedelta(days=1):
            return datetime(day.year, day.month, day.day) + timedelta(days=1)
        return oldest + timedelta(hours=1)
