"""The DuckDB store: opens and migrates the file, commits batches in groups, answers read-only SQL.

One process writes (DuckDB's rule). All writes go through one Writer thread,
which takes whatever batches are waiting, stores them in one transaction
(dedupe by (node, boot id, seq) in that same transaction, rows inserted from
Arrow sorted by node, device, time) and only then acknowledges them.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from ironsight.collector.migrations import migrate
from ironsight.collector.validate import InvalidBatch, ValidBatch, check_values
from ironsight.core.columnar import GroupColumns, bad_values, decode_group, group_arrow, view
from ironsight.v1 import telemetry_pb2 as pb

log = logging.getLogger("ironsight.collector")

READ_ONLY_STATEMENTS = {"SELECT", "EXPLAIN"}


class StoreLocked(Exception):
    """Another process holds the database file."""


class QueryRejected(ValueError):
    """A query that is not read-only, or not valid SQL."""


def connect(path: str | Path, read_only: bool = False, sandboxed: bool = False) -> Any:
    """Opens the database file. sandboxed: no file or network access from SQL, for a
    server that runs queries sent by others (no read_csv('/etc/shadow'))."""
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.exists():
        raise FileNotFoundError(f"no database at {path}")
    try:
        config: dict[str, str | bool | int | float | list[str]] = (
            # A larger WAL before each checkpoint: fewer, larger checkpoints compress
            # better (measured 3.9 -> 2.5 bytes a value at 256 MB) and ingest ~10 %
            # faster; 64 MB keeps crash recovery short.
            {"enable_external_access": False, "lock_configuration": True, "checkpoint_threshold": "64MB"}
            if sandboxed
            else {}
        )
        return duckdb.connect(str(path), read_only=read_only, config=config)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise StoreLocked(f"{path} is held by another process (a running collector?)") from exc
        raise


def check_read_only(con: Any, sql: str) -> None:
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryRejected(str(exc).splitlines()[0]) from exc
    if len(statements) != 1:
        raise QueryRejected(f"expected one statement, got {len(statements)}")
    for st in statements:
        kind = str(st.type).rsplit(".", 1)[-1]
        if kind not in READ_ONLY_STATEMENTS:
            raise QueryRejected(f"only SELECT queries are allowed here, not {kind}")


def run_query(con: Any, sql: str, max_rows: int) -> tuple[pa.Table, bool]:
    """Runs read-only SQL; returns at most max_rows rows and whether more existed."""
    check_read_only(con, sql)
    try:
        reader = con.sql(sql).to_arrow_reader(min(max_rows + 1, 100_000))
        batches, rows = [], 0
        for rb in reader:
            batches.append(rb)
            rows += rb.num_rows
            if rows > max_rows:
                break
        table = (
            pa.Table.from_batches(batches, schema=reader.schema) if batches else reader.schema.empty_table()
        )
    except duckdb.Error as exc:
        raise QueryRejected(str(exc).splitlines()[0]) from exc
    truncated = table.num_rows > max_rows
    return table.slice(0, max_rows), truncated


@dataclass
class Pending:
    batch: ValidBatch
    done: Callable[[pb.Ack | None, BaseException | None], None]

    @property
    def samples(self) -> int:
        return self.batch.samples


@dataclass
class IngestStats:
    batches_stored: int = 0
    batches_duplicate: int = 0
    rows_stored: int = 0
    commits: int = 0
    failures: int = 0
    last_error: str = ""
    node_last_seen: dict[str, float] = field(default_factory=dict)
    node_newest_sample_ns: dict[str, int] = field(default_factory=dict)


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.con = connect(self.path, sandboxed=True)
        migrate(self.con)
        self.stats = IngestStats()
        self._queue: queue.Queue[Pending | None] = queue.Queue(maxsize=4096)
        self._thread = threading.Thread(target=self._writer, name="store-writer", daemon=True)
        self._closed = False
        # Last inventory stored per node: devices are upserted only when it changes.
        self._inventory: dict[str, bytes] = {}
        self._pending_inventory: dict[str, bytes] = {}
        self.max_group_samples = 4_000_000
        self.max_group_batches = 256
        # Called with each committed group's tables and node inventories (remote write).
        self.forward: Callable[[list[tuple[str, pa.Table]], list[tuple[str, pb.NodeInfo]]], None] | None = (
            None
        )
        self._seed_newest_samples()

    def _seed_newest_samples(self) -> None:
        """Lag per node right after a restart, from what is stored (nodes heard from in the last day)."""
        rows = self.con.execute(
            "SELECT node, epoch_ns(max(time)) FROM cpu "
            "WHERE time > now()::TIMESTAMP - INTERVAL 1 DAY GROUP BY node"
        ).fetchall()
        self.stats.node_newest_sample_ns.update({str(node): int(ns) for node, ns in rows})

    def start(self) -> None:
        self._thread.start()

    def writer_alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, p: Pending) -> None:
        self._queue.put(p)

    def reader(self) -> Any:
        """A connection for queries beside the writer (DuckDB's MVCC keeps them consistent)."""
        return self.con.cursor()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        try:
            self.con.execute("CHECKPOINT")
        finally:
            self.con.close()

    def _writer(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group, samples, stopping = [first], first.samples, False
            while len(group) < self.max_group_batches and samples < self.max_group_samples:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                group.append(nxt)
                samples += nxt.samples
            self._commit(group)
            if stopping:
                return

    def _commit(self, group: list[Pending]) -> None:
        try:
            outcomes = self.ingest([p.batch for p in group])
        except Exception as exc:  # disk full, corrupt file...: fail these batches, keep serving
            self.stats.failures += 1
            msg = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            if msg != self.stats.last_error:
                log.error("store failed, batches not acknowledged: %s", msg)
            self.stats.last_error = msg
            for p in group:
                p.done(None, exc)
            return
        if self.stats.last_error:
            log.info("store recovered")
            self.stats.last_error = ""
        for p, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, InvalidBatch):
                p.done(None, outcome)
            else:
                p.done(outcome, None)

    def ingest(self, batches: Sequence[pb.Batch | ValidBatch]) -> list[pb.Ack | InvalidBatch]:
        """Stores batches in one transaction and says, per batch, what became of it.

        Duplicates (already stored, or twice here) are acknowledged as such. Values
        are checked for the whole group at once; only if that finds something does
        each batch get checked alone, and the offending ones are refused while the
        rest are stored. Plain messages count as structurally checked: callers that
        take input from outside run ironsight.collector.validate.check first.
        """
        views = [b.batch if isinstance(b, ValidBatch) else view(b) for b in batches]
        outcomes: list[pb.Ack | InvalidBatch | None] = [None] * len(views)
        stored = self._already_stored(views)
        seen: set[tuple[str, str, int]] = set()
        fresh: list[int] = []
        for i, b in enumerate(views):
            key = (b.node_id, b.boot_id, b.seq)
            if key in seen or key in stored:
                outcomes[i] = pb.Ack(seq=b.seq, status=pb.Ack.DUPLICATE)
            else:
                seen.add(key)
                fresh.append(i)
        groups = self._decode(views, fresh)
        if any(bad_values(g) for g in groups.values()):
            for i in fresh:
                try:
                    check_values(views[i])
                except InvalidBatch as exc:
                    outcomes[i] = exc
            fresh = [i for i in fresh if outcomes[i] is None]
            groups = self._decode(views, fresh)
        rows = {i: sum(len(t.time_ns) // 8 for t in views[i].tables) for i in fresh}
        con = self.con
        self._pending_inventory = {}
        con.execute("BEGIN TRANSACTION")
        try:
            if fresh:
                keys = pa.table(
                    {
                        "node": [views[i].node_id for i in fresh],
                        "boot_id": [views[i].boot_id for i in fresh],
                        "seq": pa.array([views[i].seq for i in fresh], pa.uint64()),
                        "rows": [rows[i] for i in fresh],
                    }
                )
                self._insert_arrow(
                    "INSERT INTO batches SELECT node, boot_id, seq, now()::TIMESTAMP, rows FROM incoming",
                    keys,
                )
            tables = [(name, group_arrow(group)) for name, group in groups.items()]
            for name, table in tables:
                self._insert_arrow(
                    f"INSERT INTO {name} SELECT * FROM incoming ORDER BY node, device, time", table
                )
            self._upsert_nodes([views[i] for i in fresh])
            con.execute("COMMIT")
        except Exception:
            # A failed COMMIT (disk full) has already ended the transaction: keep its error, not ROLLBACK's.
            with contextlib.suppress(Exception):
                con.execute("ROLLBACK")
            raise
        if self.forward is not None and fresh:  # stored, so forwarded once
            self.forward(
                tables, [(views[i].node_id, views[i].node) for i in fresh if views[i].HasField("node")]
            )
        self._inventory.update(self._pending_inventory)
        newest = self.stats.node_newest_sample_ns
        for i in fresh:
            outcomes[i] = pb.Ack(seq=views[i].seq, status=pb.Ack.STORED, rows=rows[i])
            self.stats.rows_stored += rows[i]
            latest = max((int(np.frombuffer(t.time_ns, "<i8").max()) for t in views[i].tables), default=0)
            if latest > newest.get(views[i].node_id, 0):
                newest[views[i].node_id] = latest
        now = time.time()
        for b, outcome in zip(views, outcomes, strict=True):
            self.stats.node_last_seen[b.node_id] = now
            if isinstance(outcome, pb.Ack):
                if outcome.status == pb.Ack.STORED:
                    self.stats.batches_stored += 1
                else:
                    self.stats.batches_duplicate += 1
        self.stats.commits += 1
        return [o for o in outcomes if o is not None]

    @staticmethod
    def _decode(views: list[pb.BatchView], fresh: list[int]) -> dict[str, GroupColumns]:
        parts: dict[str, list[tuple[str, pb.TableView]]] = {}
        for i in fresh:
            for t in views[i].tables:
                parts.setdefault(t.name, []).append((views[i].node_id, t))
        return {name: decode_group(name, p) for name, p in parts.items()}

    def _already_stored(self, views: list[pb.BatchView]) -> set[tuple[str, str, int]]:
        """One join for the whole group: which of these (node, boot id, seq) are stored already."""
        if not views:
            return set()
        keys = pa.table(
            {
                "node": [b.node_id for b in views],
                "boot_id": [b.boot_id for b in views],
                "seq": pa.array([b.seq for b in views], pa.uint64()),
            }
        )
        self.con.register("incoming_keys", keys)
        try:
            rows = self.con.execute(
                "SELECT k.node, k.boot_id, k.seq FROM incoming_keys k JOIN batches b USING (node, boot_id, seq)"
            ).fetchall()
        finally:
            self.con.unregister("incoming_keys")
        return {(r[0], r[1], int(r[2])) for r in rows}

    def _upsert_nodes(self, batches: list[pb.BatchView]) -> None:
        latest: dict[str, pb.BatchView] = {}
        for b in batches:
            latest[b.node_id] = b
        for node, b in latest.items():
            info = b.node
            self.con.execute(
                """INSERT INTO nodes VALUES (?, ?, ?, ?, ?, ?, now()::TIMESTAMP, now()::TIMESTAMP)
                   ON CONFLICT (node) DO UPDATE SET hostname = excluded.hostname, kernel = excluded.kernel,
                   agent_version = excluded.agent_version, boot_id = excluded.boot_id,
                   interval_s = excluded.interval_s, last_seen = excluded.last_seen""",
                [node, info.hostname, info.kernel, info.agent_version, b.boot_id, b.interval_s],
            )
            inventory = info.SerializeToString(deterministic=True)
            if info.devices and self._inventory.get(node) != inventory:
                devices = pa.table(
                    {
                        "node": [node] * len(info.devices),
                        "kind": [d.kind for d in info.devices],
                        "device": [d.name for d in info.devices],
                        "attrs": pa.array(
                            [sorted(d.attrs.items()) for d in info.devices], pa.map_(pa.string(), pa.string())
                        ),
                    }
                )
                self._insert_arrow(
                    """INSERT INTO devices SELECT node, kind, device, attrs, now()::TIMESTAMP FROM incoming
                       ON CONFLICT (node, kind, device) DO UPDATE SET attrs = excluded.attrs,
                       updated_at = excluded.updated_at""",
                    devices,
                )
                self._pending_inventory[node] = inventory

    def _insert_arrow(self, sql: str, table: pa.Table) -> None:
        self.con.register("incoming", table)
        try:
            self.con.execute(sql)
        finally:
            self.con.unregister("incoming")
