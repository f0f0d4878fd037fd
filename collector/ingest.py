"""The ingest transaction: a group of batches deduplicated, checked and stored at once.

Each new batch's tables are read field by field once (core.columnar.read_part);
a batch from the collector's stream, whose own fields only were checked as it
arrived (core.validate.check_head), has its tables' structure checked here
with the group's (core.validate.check_group), and every batch's values too.
Dedupe by (node, boot id, seq) is answered before the transaction (collector.seen:
from memory, but for streams new since start). All of that is prepare(); the
store's writer runs it for the next group while commit() runs the last one's
transaction on another thread, so commit() first drops any batch that a commit
in between stored (an agent's resend). Rows are inserted from Arrow sorted by
node, device, time; a batch is acknowledged as stored only after COMMIT. A
committed group is handed to the forward hook (remote write) once.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ironsight.collector.changes import Changes
from ironsight.collector.jobnames import named_nodes, relook
from ironsight.collector.seen import Key, Seen
from ironsight.core.columnar import GroupColumns, Part, bad_values, decode_parts, group_arrow, read_part, view
from ironsight.core.validate import InvalidBatch, Limits, ValidBatch, check, check_group, check_values
from ironsight.v1 import telemetry_pb2 as pb

STORED_ORDER = [("node", "ascending"), ("device", "ascending"), ("time", "ascending")]
NODE_TOUCH_S = 2.0  # a node's row in nodes (last_seen) is at most this stale while it sends
NODE_TYPES = (pa.string(), pa.string(), pa.string(), pa.string(), pa.string(), pa.float64(), pa.float64())
Forward = Callable[[list[tuple[str, pa.Table]], list[tuple[str, pb.NodeInfo]]], None]


ATTRS = pa.map_(pa.string(), pa.string())
GPU_JOBS = pa.schema(
    [("node", pa.string()), ("time", pa.timestamp("ns")), ("gpu", pa.string()), ("job", pa.string()),
     ("source", pa.string()), ("attrs", ATTRS)]
)  # fmt: skip
GPU_PROCESSES = pa.schema(
    [("node", pa.string()), ("time", pa.timestamp("ns")), ("gpu", pa.string()), ("pid", pa.int64()),
     ("name", pa.string()), ("job", pa.string()), ("used_memory_bytes", pa.int64()),
     ("sm_util_percent", pa.float64())]
)  # fmt: skip


def _ms(at: pa.Scalar) -> int:
    """A stored time's millisecond (group_arrow's are microseconds), floored as queries take it."""
    return int(pc.cast(at, pa.int64()).as_py()) // 1000


def _owners_key(o: pb.Ownership) -> bytes:
    """What makes a look at a node's GPU owners different: its GPUs and jobs, not when it was taken."""
    return pb.Ownership(gpus=o.gpus, jobs=o.jobs).SerializeToString(deterministic=True)


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


@dataclass
class Prepared:
    """A group read, checked and decoded, its transaction still to come (Ingest.prepare, Ingest.commit)."""

    batches: Sequence[pb.Batch | ValidBatch]
    views: list[pb.BatchView]
    keys: list[Key]
    outcomes: list[pb.Ack | InvalidBatch | None]  # so far: duplicates, refusals
    rows: dict[int, int]  # each batch's rows
    fresh: list[int]  # the batches to store
    tables: list[tuple[str, pa.Table]]  # theirs, as Arrow
    generation: int  # the seen keys' generation its duplicates were judged at (collector.seen)


class Ingest:
    """Stores groups of batches on one connection; keeps the counts /metrics shows."""

    def __init__(self, con: Any, changes: Changes | None = None) -> None:
        """changes: told after each commit which tables it wrote, between which times."""
        self.con = con
        self.changes = changes
        self.stats = IngestStats()
        # Last inventory stored per node: devices are upserted only when it changes.
        self._inventory: dict[str, bytes] = {}
        self._pending_inventory: dict[str, bytes] = {}
        # Last look at each node's GPU owners stored: a look is stored only when it differs.
        self._owners: dict[str, bytes] = {}
        self._pending_owners: dict[str, bytes] = {}
        # Each node's facts as last stored in nodes, and when (time.monotonic()).
        self._nodes: dict[str, tuple[tuple[str, str, str, str, float], float]] = {}
        self._pending_nodes: dict[str, tuple[tuple[str, str, str, str, float], float]] = {}
        self.seen = Seen()  # which (node, boot, seq) are stored: the dedupe, mostly from memory
        # Called with each committed group's tables and node inventories (remote write).
        self.forward: Forward | None = None
        # Held through each group's transaction, and by whoever names a job by hand: a look
        # stored beside a naming would miss the name (gpu_jobs is rebuilt per node, not per row).
        # Reentrant: ingest() holds it over prepare and commit, which takes it again.
        self.lock = threading.RLock()
        self._seed_newest_samples()

    def _seed_newest_samples(self) -> None:
        """Lag per node right after a restart, from what is stored (nodes heard from in the last day)."""
        rows = self.con.execute(
            "SELECT node, epoch_ns(max(time)) FROM cpu "
            "WHERE time > now()::TIMESTAMP - INTERVAL 1 DAY GROUP BY node"
        ).fetchall()
        self.stats.node_newest_sample_ns.update({str(node): int(ns) for node, ns in rows})

    def ingest(self, batches: Sequence[pb.Batch | ValidBatch]) -> list[pb.Ack | InvalidBatch]:
        """Stores batches in one transaction and says, per batch, what became of it (prepare, then commit)."""
        with self.lock:
            return self.commit(self.prepare(batches, self.con))

    def prepare(self, batches: Sequence[pb.Batch | ValidBatch], con: Any) -> Prepared:
        """Everything of a group but its transaction: which batches are new, their tables read, checked
        and decoded into Arrow. The store's writer runs this for the next group while the last one
        commits (con: a cursor of its own); commit() then drops any batch stored in between.

        Duplicates (already stored, or twice here) are acknowledged as such. Values
        are checked for the whole group at once; only if that finds something does
        each batch get checked alone, and the offending ones are refused while the
        rest are stored. Plain messages count as structurally checked: callers that
        take input from outside run ironsight.core.validate.check first.
        """
        views = [b.batch if isinstance(b, ValidBatch) else view(b) for b in batches]
        outcomes: list[pb.Ack | InvalidBatch | None] = [None] * len(views)
        keys = [(b.node_id, b.boot_id, b.seq) for b in views]
        stored, generation = self.seen.stored_as_of(con, keys)
        seen: set[Key] = set()
        fresh: list[int] = []
        for i, key in enumerate(keys):
            if key in seen or key in stored:
                outcomes[i] = pb.Ack(seq=key[2], status=pb.Ack.DUPLICATE)
            else:
                seen.add(key)
                fresh.append(i)
        parts = self._read(batches, views, fresh, outcomes)
        fresh = [i for i in fresh if outcomes[i] is None]
        groups = self._decode(parts, fresh)
        if any(bad_values(g) for g in groups.values()):
            for i in fresh:
                try:
                    check_values(views[i])
                except InvalidBatch as exc:
                    outcomes[i] = exc
            fresh = [i for i in fresh if outcomes[i] is None]
            groups = self._decode(parts, fresh)
        rows = {i: sum(part.rows for part in parts[i]) for i in fresh}
        # Not the parts: their copies of the values would be held beside the Arrow tables until the
        # commit. The rare group that must drop a batch (commit) reads its batches again.
        return Prepared(batches, views, keys, outcomes, rows, fresh, self._arrow(groups), generation)

    def commit(self, p: Prepared) -> list[pb.Ack | InvalidBatch]:
        """The prepared group's transaction; after COMMIT, its acknowledgements (one per batch, in order).
        Under the lock from the check for batches stored since it was read to their keys added to seen
        and what was stored of the nodes noted: no other group's commit lands in between."""
        with self.lock:
            self._drop_late(p)
            self._transaction(p)
            self.seen.add(p.keys[i] for i in p.fresh)
            self._inventory.update(self._pending_inventory)
            self._owners.update(self._pending_owners)
            self._nodes.update(self._pending_nodes)
        views, fresh, tables = p.views, p.fresh, p.tables
        if self.forward is not None and fresh:  # stored, so forwarded once
            self.forward(
                tables, [(views[i].node_id, views[i].node) for i in fresh if views[i].HasField("node")]
            )
        self._note_newest(tables)
        if self.changes is not None:
            for name, table in tables:
                lo, hi = pc.min_max(table.column("time")).values()
                if lo.is_valid:
                    self.changes.wrote(name, _ms(lo), _ms(hi))
        self._count(views, p.outcomes, fresh, p.rows)
        return [o for o in p.outcomes if o is not None]

    def _drop_late(self, p: Prepared) -> None:
        """Batches of the group that a commit since its reading stored (sent again while the first copy
        committed) become duplicates, and the group's tables are read again without them."""
        late = self.seen.committed_since(p.generation)
        if late is None:  # prepared longer ago than the seen keys reach back: ask again
            late = frozenset(self.seen.stored(self.con, [p.keys[i] for i in p.fresh]))
        if not late or not any(p.keys[i] in late for i in p.fresh):
            return
        for i in p.fresh:
            if p.keys[i] in late:
                p.outcomes[i] = pb.Ack(seq=p.keys[i][2], status=pb.Ack.DUPLICATE)
        p.fresh = [i for i in p.fresh if p.outcomes[i] is None]
        p.tables = self._arrow(self._decode(self._parts(p.views, p.fresh), p.fresh))

    def _transaction(self, p: Prepared) -> None:
        views, fresh, batches = p.views, p.fresh, p.batches
        shifts = [b.shift_ns if isinstance(b, ValidBatch) else 0 for b in batches]
        clocks = {
            b.batch.node_id: b.clock_offset_ns / 1e9
            for b in batches
            if isinstance(b, ValidBatch) and b.clock_offset_ns is not None
        }
        con = self.con
        self._pending_inventory = {}
        self._pending_owners = {}
        self._pending_nodes = {}
        con.execute("BEGIN TRANSACTION")
        try:
            if fresh:
                self._insert_keys(
                    [views[i] for i in fresh], [p.rows[i] for i in fresh], [shifts[i] for i in fresh]
                )
            for name, table in p.tables:
                # A relation, not a registered view: registering and dropping a view is a catalog
                # change each time, half a millisecond a table a group.
                con.from_arrow(table).insert_into(f"{name}_hot")
            self._upsert_nodes([views[i] for i in fresh], clocks)
            self._store_ownership([(views[i], shifts[i]) for i in fresh if views[i].HasField("ownership")])
            con.execute("COMMIT")
        except Exception:
            # A failed COMMIT (disk full) has already ended the transaction: keep its error, not ROLLBACK's.
            with contextlib.suppress(Exception):
                con.execute("ROLLBACK")
            raise

    @staticmethod
    def _arrow(groups: dict[str, GroupColumns]) -> list[tuple[str, pa.Table]]:
        """Each table's rows in the order they are stored, by node, device and time (a series' samples
        side by side compress better): sorted here, beside the last group's commit, not in its
        INSERT, where the sort was a third of the transaction."""
        return [(name, group_arrow(group).sort_by(STORED_ORDER)) for name, group in groups.items()]

    def _insert_keys(self, views: list[pb.BatchView], rows: list[int], shifts: list[int]) -> None:
        """The batches table: (node, boot, seq) of each batch stored, for deduplication."""
        keys = pa.table({
            "node": [b.node_id for b in views], "boot_id": [b.boot_id for b in views],
            "seq": pa.array([b.seq for b in views], pa.uint64()), "rows": rows,
            "clock_offset_ns": pa.array(shifts, pa.int64()),
        })  # fmt: skip
        self._insert_arrow(
            "INSERT INTO batches (node, boot_id, seq, received_at, rows, clock_offset_ns)"
            " SELECT node, boot_id, seq, now()::TIMESTAMP, rows, clock_offset_ns FROM incoming",
            keys,
        )

    def _note_newest(self, tables: list[tuple[str, pa.Table]]) -> None:
        """Each node's newest stored sample (its lag on /metrics): a max per node and table, not per batch."""
        newest = self.stats.node_newest_sample_ns
        for _, table in tables:
            latest = table.select(["node", "time"]).group_by("node").aggregate([("time", "max")])
            for node, at in zip(
                latest.column("node").to_pylist(),
                pc.cast(latest.column("time_max"), pa.int64()).to_pylist(),
                strict=True,
            ):
                if at * 1000 > newest.get(node, 0):
                    newest[node] = at * 1000

    def _count(
        self,
        views: list[pb.BatchView],
        outcomes: list[pb.Ack | InvalidBatch | None],
        fresh: list[int],
        rows: dict[int, int],
    ) -> None:
        """After COMMIT: each fresh batch's STORED ack, and the counts and lags /metrics shows."""
        for i in fresh:
            outcomes[i] = pb.Ack(seq=views[i].seq, status=pb.Ack.STORED, rows=rows[i])
            self.stats.rows_stored += rows[i]
        now = time.time()
        for b, outcome in zip(views, outcomes, strict=True):
            self.stats.node_last_seen[b.node_id] = now
            if isinstance(outcome, pb.Ack):
                if outcome.status == pb.Ack.STORED:
                    self.stats.batches_stored += 1
                else:
                    self.stats.batches_duplicate += 1
        self.stats.commits += 1

    @staticmethod
    def _read(
        batches: Sequence[pb.Batch | ValidBatch],
        views: list[pb.BatchView],
        fresh: list[int],
        outcomes: list[pb.Ack | InvalidBatch | None],
    ) -> dict[int, list[Part]]:
        """The fresh batches' tables, each field read once; those whose structure is still to check
        (core.validate.check_head) checked for the whole group, and any refused get their outcome."""
        parts = Ingest._parts(views, fresh)
        by_limits: dict[int, tuple[Limits, list[int]]] = {}
        for i in fresh:
            b = batches[i]
            if isinstance(b, ValidBatch) and b.limits is not None:
                by_limits.setdefault(id(b.limits), (b.limits, []))[1].append(i)
        now = time.time_ns()
        for limits, unchecked in by_limits.values():
            passed = check_group([parts[i] for i in unchecked], now, limits)
            for i, ok in zip(unchecked, passed, strict=True):
                if not ok:  # new, or wrong: the checks that say what
                    try:
                        check(views[i], limits, now)
                    except InvalidBatch as exc:
                        outcomes[i] = exc
                    except Exception as exc:  # a fault of the check's own: this batch alone, not its group
                        outcomes[i] = InvalidBatch(
                            f"batch seq {views[i].seq}: could not be checked ({type(exc).__name__}: {exc})",
                            views[i].seq,
                        )
        return parts

    @staticmethod
    def _parts(views: list[pb.BatchView], fresh: list[int]) -> dict[int, list[Part]]:
        """Each of these batches' tables, every field read once (core.columnar.read_part)."""
        return {i: [read_part(views[i].node_id, t) for t in views[i].tables] for i in fresh}

    @staticmethod
    def _decode(parts: dict[int, list[Part]], fresh: list[int]) -> dict[str, GroupColumns]:
        by_table: dict[str, list[Part]] = {}
        for i in fresh:
            for part in parts[i]:
                by_table.setdefault(part.name, []).append(part)
        return {name: decode_parts(name, p) for name, p in by_table.items()}

    def _upsert_nodes(self, batches: list[pb.BatchView], clocks: dict[str, float]) -> None:
        """The nodes table, in one statement for the group: a node whose facts (host, kernel, agent,
        boot, interval) are as stored is written again only after NODE_TOUCH_S (its last_seen and
        clock offset move on)."""
        latest: dict[str, pb.BatchView] = {}
        for b in batches:
            latest[b.node_id] = b
        now = time.monotonic()
        rows = []
        devices = []
        for node, b in latest.items():
            info = b.node
            facts = (info.hostname, info.kernel, info.agent_version, b.boot_id, b.interval_s)
            known = self._nodes.get(node)
            if known is None or known[0] != facts or now - known[1] >= NODE_TOUCH_S:
                rows.append((node, *facts, clocks.get(node)))
                self._pending_nodes[node] = (facts, now)
            devices += self._changed_inventory(node, info)
        self._store_inventories(devices)
        if rows:
            self._insert_arrow(
                """INSERT INTO nodes (node, hostname, kernel, agent_version, boot_id, interval_s, first_seen,
                       last_seen, clock_offset_s)
                   SELECT node, hostname, kernel, agent_version, boot_id, interval_s, now()::TIMESTAMP,
                       now()::TIMESTAMP, clock_offset_s FROM incoming
                   ON CONFLICT (node) DO UPDATE SET hostname = excluded.hostname, kernel = excluded.kernel,
                   agent_version = excluded.agent_version, boot_id = excluded.boot_id,
                   interval_s = excluded.interval_s, last_seen = excluded.last_seen,
                   clock_offset_s = coalesce(excluded.clock_offset_s, clock_offset_s)""",
                pa.Table.from_arrays(
                    [
                        pa.array(col, type)
                        for col, type in zip(zip(*rows, strict=True), NODE_TYPES, strict=True)
                    ],
                    names=[
                        "node",
                        "hostname",
                        "kernel",
                        "agent_version",
                        "boot_id",
                        "interval_s",
                        "clock_offset_s",
                    ],
                ),
            )

    def _changed_inventory(self, node: str, info: pb.NodeInfo) -> list[tuple[str, str, str, Any]]:
        """The node's devices as rows, if its inventory differs from the one last stored."""
        inventory = info.SerializeToString(deterministic=True)
        if not info.devices or self._inventory.get(node) == inventory:
            return []
        self._pending_inventory[node] = inventory
        return [(node, d.kind, d.name, sorted(d.attrs.items())) for d in info.devices]

    def _store_inventories(self, rows: list[tuple[str, str, str, Any]]) -> None:
        """Every changed inventory of the group in two statements."""
        if not rows:
            return
        node, kind, device, attrs = zip(*rows, strict=True)
        devices = pa.table({"node": pa.array(node, pa.string()), "kind": pa.array(kind, pa.string()),
                            "device": pa.array(device, pa.string()), "attrs": pa.array(attrs, ATTRS)})  # fmt: skip
        self._insert_arrow(
            """INSERT INTO devices SELECT node, kind, device, attrs, now()::TIMESTAMP FROM incoming
               ON CONFLICT (node, kind, device) DO UPDATE SET attrs = excluded.attrs,
               updated_at = excluded.updated_at""",
            devices,
        )
        # A device the node no longer reports (a drive pulled, a GPU off the bus, a port gone) stays
        # listed, marked removed: its samples are still stored and still name it.
        self._insert_arrow(
            """UPDATE devices SET attrs = map_concat(attrs, MAP {'state': 'removed'}),
               updated_at = now()::TIMESTAMP
               WHERE node IN (SELECT DISTINCT node FROM incoming)
                 AND (node, kind, device) NOT IN (SELECT node, kind, device FROM incoming)
                 AND coalesce(attrs['state'], '') <> 'removed'""",
            devices,
        )

    def _store_ownership(self, batches: list[tuple[pb.BatchView, int]]) -> None:
        """Each node's look at who owns its GPUs, when it differs from the last one stored;
        its processes with every look sent (at least one a minute)."""
        jobs: list[tuple[Any, ...]] = []
        procs: list[tuple[Any, ...]] = []
        for b, shift in batches:
            o, node = b.ownership, b.node_id
            when = o.time_ns + shift
            procs += [
                (node, when, p.gpu, p.pid, p.name, p.job or None,
                 None if p.used_memory_bytes < 0 else p.used_memory_bytes,
                 None if math.isnan(p.sm_util_percent) else p.sm_util_percent)
                for p in o.processes
            ]  # fmt: skip
            key = _owners_key(o)
            if self._pending_owners.get(node, self._owners.get(node)) == key:
                continue
            self._pending_owners[node] = key
            on = {j.gpu for j in o.jobs}
            jobs += [(node, when, j.gpu, j.job, j.source, sorted(j.attrs.items())) for j in o.jobs]
            jobs += [(node, when, g, None, None, None) for g in o.gpus if g not in on]
        for name, rows, schema in (("agent_jobs", jobs, GPU_JOBS), ("gpu_processes", procs, GPU_PROCESSES)):
            if rows:
                columns = [
                    pa.array(col, f.type) for col, f in zip(zip(*rows, strict=True), schema, strict=True)
                ]
                table = pa.Table.from_arrays(columns, schema=schema)
                self._insert_arrow(
                    f"INSERT INTO {name} SELECT {', '.join(schema.names)} FROM incoming", table
                )
                if name == "agent_jobs":
                    self._lay_names(table)

    def _lay_names(self, looks: pa.Table) -> None:
        """gpu_jobs is the agents' looks with hand-given names laid over them (collector/jobnames.py):
        a node never named gets its looks as they came, a named one its rows rebuilt."""
        named = named_nodes(self.con, sorted(set(looks.column("node").to_pylist())))
        relook(self.con, sorted(named))
        if named:
            keep = pc.invert(pc.is_in(looks.column("node"), pa.array(sorted(named), pa.string())))
            looks = looks.filter(keep)
        self._insert_arrow(f"INSERT INTO gpu_jobs SELECT {', '.join(GPU_JOBS.names)} FROM incoming", looks)

    def _insert_arrow(self, sql: str, table: pa.Table) -> None:
        self.con.register("incoming", table)
        try:
            self.con.execute(sql)
        finally:
            self.con.unregister("incoming")
