"""Received samples: durable in the journal before the sender hears 2xx, settled into rows later.

A sender (Prometheus, vmagent) spreads the series of one scrape over parallel
requests, so the parts of one row (a GPU's utilization, temperature, power at
one scrape time) arrive in different requests, seconds apart. Each request is
committed as it comes, a record per sample naming its place by number
(received_parts), to the journal (journal.py: appended and fdatasync'd);
samples settle into their tables settle_s after they arrived (Prometheus
flushes each shard at least every 5 s, so a row's parts are all there by
then). Settling pivots the parts into one row per (node, device, time) and
fills in a row already stored rather than storing it twice, so a request
retried after it settled changes nothing, a part that arrives late completes
its row, and a journal segment settled again after a crash changes nothing.
All of a settle is one transaction; its segments are deleted after it commits.
The `received` table (where earlier versions committed each request) is
settled the same way.

Alignment rule (docs/receive.md): a row is the samples of one table, node,
device and millisecond. Prometheus stamps every sample of one scrape with the
scrape's start, so one exporter's series line up; two exporters scraped at
different moments give rows at different times (node_exporter's cpu rows and
dcgm-exporter's gpu rows), never one row averaged from both.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ironsight.collector.changes import Changes
from ironsight.collector.receive.decode import Decoded, Kept, Part
from ironsight.collector.receive.journal import Journal
from ironsight.collector.receive.mapping import FB_FREE_COLUMN, XID_COLUMN
from ironsight.core.schema import TABLES
from ironsight.core.worker import Worker

log = logging.getLogger("ironsight.collector")

SETTLE_S = 10.0
MAX_BACKLOG = 5_000_000  # samples waiting to settle; past it senders get 503 and retry
Rows = tuple[np.ndarray, np.ndarray, np.ndarray]  # place numbers, milliseconds, values
SETTLE_MOST = 2_000_000  # samples a settle takes at most: a long backlog settles in steps


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _us(when: datetime) -> int:
    """A naive UTC time as microseconds since the epoch."""
    return int(when.replace(tzinfo=UTC).timestamp() * 1_000_000)


def journal_of(db: Path) -> Path:
    """The folder of received samples not yet settled, beside the store's file."""
    return db.with_name(db.name + ".received")


class Staging(Worker):
    """Stores what a request carried (store(), from request threads) and settles it (the thread)."""

    def __init__(
        self,
        connect: Any,
        journal: Path,
        settle_s: float = SETTLE_S,
        every_s: float = 1.0,
        changes: Changes | None = None,
    ) -> None:
        """connect(): a new connection (cursor) to the store, for each thread that writes; journal: the
        folder of samples not yet settled (journal_of(the store's file)); changes: told after each settle
        which tables it wrote, between which times."""
        super().__init__("receive-settle")
        self.connect = connect
        self.changes = changes
        self.settle_s, self.every_s = settle_s, every_s
        self.con = connect()
        self.journal = Journal(journal)
        older = int(self.con.execute("SELECT count(*) FROM received").fetchall()[0][0])
        self.backlog = older + self.journal.pending
        self.settled_rows = 0
        self.last_error = ""
        self._lock = threading.Lock()
        # Node facts and inventories seen since the last settle, written by it: only the settling thread
        # writes nodes and devices, so parallel requests never conflict on a node's row.
        self._facts: dict[str, tuple[str, str]] = {}  # node -> (hostname, sender)
        self._hostnames: dict[str, str] = {}
        self._devices: dict[tuple[str, str, str], dict[str, str]] = {}
        self._devices_written: dict[tuple[str, str, str], dict[str, str]] = {}
        self._group = threading.Condition()
        self._waiting: list[_Ticket] = []
        self._committing = False

    def parts(self) -> dict[Part, int]:
        """The places numbered so far: a restarted collector goes on numbering after them."""
        rows = self.con.execute("SELECT node, tbl, device, col, part FROM received_parts").fetchall()
        return {(r[0], r[1], r[2], r[3]): int(r[4]) for r in rows}

    def register(self, new: list[tuple[int, Part]]) -> None:
        """New places, committed before a sample that names them is stored."""
        con = self.connect()
        try:
            rows = pa.table({"part": pa.array([i for i, _ in new], pa.int32()),
                             **{k: [p[j] for _, p in new] for j, k in enumerate(("node", "tbl", "device", "col"))}})  # fmt: skip
            con.register("new_parts", rows)
            con.execute("INSERT INTO received_parts SELECT part, node, tbl, device, col FROM new_parts")
        finally:
            con.close()

    def store(self, got: Decoded, sender: str) -> None:
        """The request's samples, committed when this returns; the nodes and devices they name wait for
        settle(). Requests arriving together share one journal write (an fdatasync)."""
        if got.stored:
            self._commit((got.part, got.time_ms, got.value))
        with self._lock:
            self.backlog += got.stored
            for node in got.nodes:
                hostname = got.hostnames.get(node) or self._hostnames.get(node, "")
                self._hostnames[node] = hostname
                self._facts[node] = (hostname, sender)
            for key, attrs in got.inventory.items():
                if self._devices_written.get(key) != attrs:
                    self._devices[key] = attrs

    def keep(self, kept: list[Kept], sender: str) -> None:
        """Refused series' samples, committed when this returns: a 400 is not retried, so they stay here
        (received_refused) for a person to look at rather than be lost."""
        if not kept:
            return
        rows = pa.table({
            "reason": [k[0] for k in kept], "series": [k[1] for k in kept],
            "time": pa.array([k[2] for k in kept], pa.timestamp("ms")),
            "value": pa.array([k[3] for k in kept], pa.float64()),
        })  # fmt: skip
        con = self.connect()
        try:
            con.register("refused_rows", rows)
            con.execute(
                "INSERT INTO received_refused SELECT ?, ?, reason, series, time, value FROM refused_rows",
                [_now(), sender],
            )
        finally:
            con.close()

    def _commit(self, rows: Rows) -> None:
        """Group commit: the first waiting request thread writes everything waiting, then wakes the rest."""
        ticket = _Ticket(rows)
        with self._group:
            self._waiting.append(ticket)
            while not ticket.done:
                if self._committing:
                    self._group.wait()
                    continue
                self._committing = True
                batch, self._waiting = self._waiting, []
                self._group.release()
                error: BaseException | None = None
                try:
                    part, time, value = (np.concatenate([t.rows[k] for t in batch]) for k in range(3))
                    self._insert((part, time, value))
                except Exception as exc:  # each request answers 503 with it
                    error = exc
                finally:
                    self._group.acquire()
                for t in batch:
                    t.done, t.error = True, error
                self._committing = False
                self._group.notify_all()
        if ticket.error is not None:
            raise ticket.error

    def _insert(self, rows: Rows) -> None:
        self.journal.append(*rows, arrival_us=_us(_now()))

    def run(self) -> None:
        while not self.sleep(self.every_s):
            try:
                self.settle(_now() - timedelta(seconds=self.settle_s))
                self.last_error = ""
            except Exception as exc:  # the next pass tries again; nothing left the journal
                msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                if msg != self.last_error:
                    log.error("settling received samples failed: %s", msg)
                self.last_error = msg

    def settle(self, cutoff: datetime) -> int:
        """The samples that arrived by cutoff (UTC), into their tables' rows, and the nodes and devices
        named since the last settle; returns the rows inserted."""
        con = self.con
        self.journal.rotate()
        segments = self.journal.ready(_us(cutoff), max(_us(_now()), _us(cutoff)), SETTLE_MOST)
        records = self.journal.read(segments)
        with self._lock:
            facts, devices = self._facts, self._devices
            self._facts, self._devices = {}, {}
        con.register("rx_journal", pa.table({
            "part": np.ascontiguousarray(records["part"]),
            "time": np.ascontiguousarray(records["time"]).astype("datetime64[ms]"),
            "value": np.ascontiguousarray(records["value"]),
        }))  # fmt: skip
        con.execute("BEGIN TRANSACTION")
        try:
            _upsert_nodes(con, facts)
            _upsert_devices(con, list(devices.items()))
            con.execute(
                "CREATE OR REPLACE TEMP TABLE rx_parts AS SELECT p.node, p.tbl, p.device, p.col, r.time, r.value "
                "FROM (SELECT part, time, value FROM received WHERE received_at <= ? UNION ALL "
                "SELECT part, time, value FROM rx_journal) r JOIN received_parts p USING (part)",
                [cutoff],
            )
            spans = con.execute(
                "SELECT tbl, epoch_ms(min(time)), epoch_ms(max(time)) FROM rx_parts GROUP BY tbl ORDER BY 1"
            ).fetchall()
            rows = sum(_settle_table(con, t) for t, _, _ in spans if t in TABLES)
            _intervals(con)
            (gone,) = con.execute("DELETE FROM received WHERE received_at <= ?", [cutoff]).fetchall()[0]
            con.execute("DROP TABLE rx_parts")
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            with self._lock:  # written at the next settle, unless newer facts came meanwhile
                self._facts = {**facts, **self._facts}
                self._devices = {**devices, **self._devices}
            raise
        finally:
            con.unregister("rx_journal")
        # Settled and committed: a crash before this line settles them again, which changes nothing.
        self.journal.remove(segments)
        if self.changes is not None:
            for table, lo, hi in spans:
                if table in TABLES:
                    self.changes.wrote(table, int(lo), int(hi))
        with self._lock:
            self._devices_written.update(devices)
            self.backlog = max(0, self.backlog - int(gone) - len(records))
            self.settled_rows += rows
        return rows

    def close(self) -> None:
        self.journal.close()
        self.con.close()


@dataclass
class _Ticket:
    rows: Rows
    done: bool = False
    error: BaseException | None = None


def _settle_table(con: Any, table: str) -> int:
    """The table's settling parts pivoted to rows: rows already stored are filled in, the rest inserted."""
    columns = [f.name for f in TABLES[table].fields]
    extra = [FB_FREE_COLUMN, XID_COLUMN] if table == "gpu" else []
    names = ", ".join(f"'{c}'" for c in columns + extra)
    # DuckDB's PIVOT: some 20x faster than a FILTER aggregate per column. A value sent twice (a
    # retry) is the same value: any one of them will do.
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE rx_rows AS PIVOT (SELECT node, device, time, col, value FROM rx_parts "
        f"WHERE tbl = '{table}') ON col IN ({names}) USING first(value) GROUP BY node, device, time"
    )
    if table == "gpu":
        _gpu_extras(con)
    lo, hi = con.execute("SELECT min(time), max(time) FROM rx_rows").fetchall()[0]
    if lo is None:
        return 0
    sets = ", ".join(f'"{c}" = coalesce(h."{c}", p."{c}")' for c in columns)
    # Rows stored already (a retry after settling, a part that came late): fill in what they lack.
    con.execute(
        f"UPDATE {table}_hot h SET {sets} FROM rx_rows p WHERE h.node = p.node AND h.device = p.device "
        "AND h.time = p.time AND h.time >= ? AND h.time <= ?",
        [lo, hi],
    )
    cols = ", ".join(f'"{c}"' for c in columns)
    (n,) = con.execute(
        f"INSERT INTO {table}_hot (node, device, time, {cols}) SELECT node, device, time, {cols} FROM rx_rows p "
        f"ANTI JOIN (SELECT node, device, time FROM {table}_hot WHERE time >= ? AND time <= ?) h "
        "USING (node, device, time) ORDER BY node, device, time",
        [lo, hi],
    ).fetchall()[0]
    con.execute("DROP TABLE rx_rows")
    return int(n)


def _gpu_extras(con: Any) -> None:
    """dcgm-exporter's free memory -> total; its last-XID gauge -> an XID row each time it changes."""
    con.execute(
        f'UPDATE rx_rows SET memory_total_bytes = "{FB_FREE_COLUMN}" + memory_used_bytes '
        f'WHERE memory_total_bytes IS NULL AND "{FB_FREE_COLUMN}" IS NOT NULL'
    )
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE rx_xids AS
        SELECT p.node, p.device, p.time, p."{XID_COLUMN}" AS xid,
            coalesce(lag(p."{XID_COLUMN}") OVER (PARTITION BY p.node, p.device ORDER BY p.time), x.xid, 0) AS prev
        FROM rx_rows p LEFT JOIN received_xid x USING (node, device)
        WHERE p."{XID_COLUMN}" IS NOT NULL""")  # fmt: skip
    con.execute(
        "INSERT INTO gpu_xid_hot (node, device, time, xid) SELECT node, device, time, xid::BIGINT FROM rx_xids "
        "WHERE xid <> 0 AND xid <> prev ORDER BY node, device, time"
    )
    con.execute(
        "INSERT INTO received_xid SELECT node, device, arg_max(xid, time) FROM rx_xids GROUP BY ALL "
        "ON CONFLICT (node, device) DO UPDATE SET xid = excluded.xid"
    )
    con.execute("DROP TABLE rx_xids")


# Scrape intervals people configure. A measured median within 2 % of one is taken as it: a loaded
# scraper's timestamps jitter by several ms, and a settle pass has only a few steps a series (1 s scrapes
# gave 0.997 s in one pass and 0.99 s to 10 ms in another). Any other interval is kept to 10 ms.
USUAL_INTERVALS_S = (0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600)


def _intervals(con: Any) -> None:
    """Each node's sampling interval (the sender's scrape interval): its median step between rows, as the
    usual interval it is within 2 % of, or to 10 ms."""
    usual = ", ".join(f"({c})" for c in USUAL_INTERVALS_S)
    con.execute(f"""
        UPDATE nodes SET interval_s = s.interval_s FROM (
            SELECT m.node, coalesce(any_value(u.c), round(any_value(m.m), 2)) AS interval_s FROM (
                SELECT node, median(step) AS m FROM (
                    SELECT node, epoch(time - lag(time) OVER (PARTITION BY node, tbl, device ORDER BY time)) AS step
                    FROM (SELECT DISTINCT node, tbl, device, time FROM rx_parts))
                WHERE step > 0 GROUP BY node) m
            LEFT JOIN (VALUES {usual}) u(c) ON abs(m.m - u.c) <= 0.02 * u.c
            GROUP BY m.node) s
        WHERE nodes.node = s.node""")  # fmt: skip


def _upsert_nodes(con: Any, facts: dict[str, tuple[str, str]]) -> None:
    """A node sent by remote write says so where an agent's version would be: `remote write (SENDER)`."""
    if not facts:
        return
    nodes = pa.table({"node": list(facts), "hostname": [h for h, _ in facts.values()],
                      "agent_version": [f"remote write ({s})" for _, s in facts.values()]})  # fmt: skip
    con.register("incoming_nodes", nodes)
    con.execute("""
        INSERT INTO nodes (node, hostname, agent_version, first_seen, last_seen)
        SELECT node, hostname, agent_version, now()::TIMESTAMP, now()::TIMESTAMP FROM incoming_nodes
        ON CONFLICT (node) DO UPDATE SET last_seen = excluded.last_seen, agent_version = excluded.agent_version,
            hostname = CASE WHEN excluded.hostname = '' THEN hostname ELSE excluded.hostname END""")  # fmt: skip
    con.unregister("incoming_nodes")


def _upsert_devices(con: Any, devices: list[Any]) -> None:
    if not devices:
        return
    rows = pa.table({
        "node": [k[0] for k, _ in devices], "kind": [k[1] for k, _ in devices],
        "device": [k[2] for k, _ in devices],
        "attrs": pa.array([sorted(v.items()) for _, v in devices], pa.map_(pa.string(), pa.string())),
    })  # fmt: skip
    con.register("incoming_devices", rows)
    con.execute("""
        INSERT INTO devices SELECT node, kind, device, attrs, now()::TIMESTAMP FROM incoming_devices
        ON CONFLICT (node, kind, device) DO UPDATE SET attrs = excluded.attrs, updated_at = excluded.updated_at""")
    con.unregister("incoming_devices")
