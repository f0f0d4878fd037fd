"""The DuckDB store: migrations match the schema, dedupe is transactional, queries are read-only."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import pytest

from ironsight.collector.database import QueryRejected, StoreLocked, connect, run_query
from ironsight.collector.migrations import available, migrate
from ironsight.collector.store import Store
from ironsight.core.columnar import TableBuilder
from ironsight.core.schema import TABLES
from ironsight.v1 import telemetry_pb2 as pb


def batch(node: str, seq: int, t0: int, devices: list[str], boot: str = "b", packed: bool = True) -> pb.Batch:
    b = TableBuilder("disk")
    for i in range(3):
        for d in devices:
            b.add(t0 + i * 10**9, d, {"read_bytes": 1000 * i + seq, "io_time_seconds": 0.5 * i})
    out = pb.Batch(node_id=node, boot_id=boot, seq=seq, interval_s=1.0)
    out.tables.append(b.to_proto(packed))
    out.node.hostname = node
    out.node.devices.add(kind="nvme", name="nvme0", attrs={"model": "X"})
    return out


def test_migrated_schema_matches_ironsight_schema(store: Store) -> None:
    for t in TABLES.values():
        cols = store.con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
            [t.name],
        ).fetchall()
        expected = [("node", "VARCHAR"), ("device", "VARCHAR"), ("time", "TIMESTAMP")]
        expected += [(f.name, f.duckdb_type) for f in t.fields]
        assert cols == expected, t.name


def test_migrations_apply_once_and_are_recorded(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "m.duckdb"))
    assert migrate(con) == [v for v, _, _ in available()]
    assert migrate(con) == []
    assert con.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall() == [
        (1, "initial"),
        (2, "events"),
        (3, "detector_state"),
        (4, "rollups"),
        (5, "clock_offsets"),
        (6, "jobs"),
        (7, "event_jobs"),
        (8, "job_names"),
        (9, "cold_tier"),
        (10, "received"),
        (11, "received_refused"),
    ]


def test_duplicates_are_stored_once(store: Store) -> None:
    t0 = time.time_ns() - 10 * 10**9
    b1 = batch("n1", 1, t0, ["sda", "nvme0n1"])
    acks = store.ingest([b1, b1, batch("n1", 2, t0 + 3 * 10**9, ["sda"])])
    assert [a.status for a in acks] == [pb.Ack.STORED, pb.Ack.DUPLICATE, pb.Ack.STORED]
    assert [a.rows for a in acks] == [6, 0, 3]
    assert store.ingest([b1])[0].status == pb.Ack.DUPLICATE
    # A stored duplicate found by query, then new data, in one group (DuckDB 2 refuses
    # new statements while a result is unread: the dedupe query must be fully read).
    acks = store.ingest([b1, batch("n1", 3, t0 + 4 * 10**9, ["sda"])])
    assert [a.status for a in acks] == [pb.Ack.DUPLICATE, pb.Ack.STORED]
    # Same seq from another boot of the node is new data.
    assert store.ingest([batch("n1", 1, t0 + 6 * 10**9, ["sda"], boot="b2")])[0].status == pb.Ack.STORED
    assert store.con.execute("SELECT count(*) FROM disk").fetchall() == [(15,)]
    assert store.con.execute("SELECT count(*) FROM batches").fetchall() == [(4,)]
    assert store.stats.batches_stored == 4 and store.stats.batches_duplicate == 3


def test_a_batch_sent_again_while_its_first_copy_commits_is_stored_once(store: Store) -> None:
    """The writer reads a group while the one before it commits: a batch in both (an agent resending
    after a reconnect) is judged new by the second read, and its commit must drop it."""
    t0 = time.time_ns() - 10 * 10**9
    b1, b2 = batch("n1", 1, t0, ["sda"]), batch("n1", 2, t0 + 3 * 10**9, ["sda"])
    ingester = store.ingester
    reader = store.con.cursor()
    first = ingester.prepare([b1], store.con)
    second = ingester.prepare([b1, b2], reader)  # read before the first group committed
    assert [a.status for a in ingester.commit(first)] == [pb.Ack.STORED]
    acks = ingester.commit(second)
    assert [(a.status, a.rows) for a in acks] == [(pb.Ack.DUPLICATE, 0), (pb.Ack.STORED, 3)]
    assert store.con.execute("SELECT count(*) FROM disk").fetchall() == [(6,)]
    assert store.con.execute("SELECT seq FROM batches ORDER BY seq").fetchall() == [(1,), (2,)]


def test_a_batch_whose_first_copy_failed_to_commit_is_stored_by_the_second(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    t0 = time.time_ns() - 10 * 10**9
    b1 = batch("n1", 1, t0, ["sda"])
    ingester = store.ingester
    first = ingester.prepare([b1], store.con)
    second = ingester.prepare([b1], store.con.cursor())

    def fail(*_: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(ingester, "_upsert_nodes", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        ingester.commit(first)
    monkeypatch.undo()
    assert [a.status for a in ingester.commit(second)] == [pb.Ack.STORED]
    assert store.con.execute("SELECT count(*) FROM disk").fetchall() == [(3,)]


def test_a_group_read_long_before_its_commit_asks_the_table_what_is_stored(store: Store) -> None:
    """The keys of the last 16 commits are kept for the check at commit; a group read before all
    of them (a long stall) has its batches looked up again instead."""
    from ironsight.collector.seen import RECENT

    t0 = time.time_ns() - 100 * 10**9
    b1 = batch("n1", 1, t0, ["sda"])
    ingester = store.ingester
    first = ingester.prepare([b1], store.con)
    late = ingester.prepare([b1], store.con.cursor())
    ingester.commit(first)
    for seq in range(2, RECENT + 3):  # more commits than are kept
        ingester.ingest([batch("n1", seq, t0 + seq * 3 * 10**9, ["sda"])])
    assert ingester.seen.committed_since(late.generation) is None
    assert [a.status for a in ingester.commit(late)] == [pb.Ack.DUPLICATE]
    assert store.con.execute("SELECT count(*) FROM batches WHERE seq = 1").fetchall() == [(1,)]


def test_rows_land_sorted_by_node_device_time(store: Store) -> None:
    t0 = time.time_ns() - 10 * 10**9
    store.ingest([batch("n2", 1, t0, ["sdb", "sda"]), batch("n1", 1, t0, ["sdb", "sda"])])
    got = store.con.execute("SELECT node, device, time FROM disk").fetchall()  # physical order
    assert got == sorted(got)


def test_a_failed_transaction_stores_nothing(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    t0 = time.time_ns()
    good = batch("n1", 1, t0, ["sda"])

    def fail(*_: object) -> None:
        raise RuntimeError("disk full")  # after the rows went in, before COMMIT

    monkeypatch.setattr(store.ingester, "_upsert_nodes", fail)
    with pytest.raises(RuntimeError):
        store.ingest([good, batch("n1", 2, t0, ["sda"])])
    monkeypatch.undo()
    assert store.con.execute("SELECT count(*) FROM disk").fetchall() == [(0,)]
    assert store.con.execute("SELECT count(*) FROM batches").fetchall() == [(0,)]
    assert store.ingest([good])[0].status == pb.Ack.STORED
    assert store.con.execute("SELECT count(*) FROM disk").fetchall() == [(3,)]


def test_a_bad_batch_in_a_group_is_refused_and_the_rest_stored(store: Store) -> None:
    from ironsight.core.validate import InvalidBatch

    t0 = time.time_ns()
    good1, good2 = batch("n1", 1, t0, ["sda"]), batch("n1", 3, t0 + 9 * 10**9, ["sda"])
    nan = batch("n1", 2, t0 + 3 * 10**9, ["sda"], packed=False)  # an older agent's layout beside the others
    col = next(c for c in nan.tables[0].columns if c.name == "io_time_seconds")
    col.f64[1] = float("nan")
    negative = batch("n2", 1, t0, ["sda"], packed=False)
    col = next(c for c in negative.tables[0].columns if c.name == "read_bytes")
    col.i64[0] = -5
    outcomes = store.ingest([good1, nan, negative, good2])
    assert [o.status for o in outcomes if isinstance(o, pb.Ack)] == [pb.Ack.STORED, pb.Ack.STORED]
    assert isinstance(outcomes[1], InvalidBatch) and outcomes[1].seq == 2
    assert "column 'io_time_seconds': NaN or infinity" in str(outcomes[1])
    assert isinstance(outcomes[2], InvalidBatch) and "negative counter value -5" in str(outcomes[2])
    assert store.con.execute("SELECT node, count(*) FROM disk GROUP BY node").fetchall() == [("n1", 6)]
    assert store.con.execute("SELECT seq FROM batches ORDER BY seq").fetchall() == [(1,), (3,)]


def test_the_store_checks_the_structure_of_batches_checked_only_at_their_head(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The collector's stream checks a batch's own fields (check_head); its tables' structure is
    checked by the store for the whole group at once. A batch wrong in any one way is refused,
    named precisely, while the rest of its group is stored; one with a device never seen before
    is looked at alone and stored."""
    from ironsight.collector import ingest
    from ironsight.core import validate
    from ironsight.core.validate import InvalidBatch, Limits, ValidBatch, check_head

    t0 = time.time_ns()
    looked_at: list[int] = []  # the batches checked one by one (check), by seq

    def check(b: pb.BatchView, limits: Limits, now_ns: int) -> ValidBatch:
        looked_at.append(b.seq)
        return validate.check(b, limits, now_ns)

    monkeypatch.setattr(ingest, "check", check)

    def wire(seq: int, devices: list[str], at: int = t0) -> pb.BatchView:
        return pb.BatchView.FromString(batch("n1", seq, at + seq * 10**9, devices).SerializeToString())

    good = [wire(1, ["sda"]), wire(7, ["sda"])]
    old = wire(2, ["sda"], at=t0 - 2 * 10**9 * 3600)  # past the limits' max age of one hour
    past_devices = wire(3, ["sda"])
    past_devices.tables[0].device_index = (5).to_bytes(4, "little") * 3
    twice = wire(4, ["sda"])
    twice.tables.append(twice.tables[0])
    unknown = wire(5, ["sda"])
    unknown.tables[0].packed_names_text = unknown.tables[0].packed_names_text.replace(
        b"read_bytes", b"reads_total_nope"
    )
    fresh = f"nvme-{t0}"  # a device name no batch in this process sent before
    new_device = wire(6, [fresh])
    limits = Limits(max_age_ns=3600 * 10**9)
    store.ingest([check_head(good[0], good[0].ByteSize(), limits)])  # sda: a device seen before the group
    looked_at.clear()
    group = [old, past_devices, twice, unknown, new_device, good[1]]
    outcomes = store.ingest([check_head(b, b.ByteSize(), limits) for b in group])
    assert looked_at == [2, 3, 4, 5, 6]  # the group's good batch passed with the group's checks
    refused = {o.seq: str(o) for o in outcomes if isinstance(o, InvalidBatch)}
    assert refused.keys() == {2, 3, 4, 5}
    assert "time_ns outside" in refused[2]
    assert "device_index points past the 1 devices listed" in refused[3]
    assert "appears twice in one batch" in refused[4]
    assert "column 'reads_total_nope': not a column of disk" in refused[5]
    stored = [o.seq for o in outcomes if isinstance(o, pb.Ack) and o.status == pb.Ack.STORED]
    assert stored == [6, 7]
    assert store.con.execute("SELECT seq FROM batches ORDER BY seq").fetchall() == [(1,), (6,), (7,)]
    assert store.con.execute("SELECT device, count(*) FROM disk GROUP BY device ORDER BY 1").fetchall() == [
        (fresh, 3),
        ("sda", 6),
    ]


def test_a_batch_whose_check_fails_unexpectedly_is_refused_alone(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault in the structure check (a bug meeting odd input) refuses that batch, which its agent
    keeps in its quarantine, instead of failing the commit group of every other agent."""
    from ironsight.collector import ingest
    from ironsight.core import validate
    from ironsight.core.validate import InvalidBatch, Limits, ValidBatch, check_head

    def check(b: pb.BatchView, limits: Limits, now_ns: int) -> ValidBatch:
        if b.seq == 2:
            raise IndexError("index 9 is out of bounds")
        return validate.check(b, limits, now_ns)

    monkeypatch.setattr(ingest, "check", check)
    t0 = time.time_ns()
    odd = f"odd-{t0}"  # never seen: the batch goes to check()
    group = [
        pb.BatchView.FromString(batch("n1", seq, t0 + seq * 10**9, [odd]).SerializeToString())
        for seq in (1, 2, 3)
    ]
    outcomes = store.ingest([check_head(b, b.ByteSize()) for b in group])
    assert isinstance(outcomes[1], InvalidBatch) and outcomes[1].seq == 2
    assert "could not be checked (IndexError: index 9 is out of bounds)" in str(outcomes[1])
    assert [o.status for o in outcomes if isinstance(o, pb.Ack)] == [pb.Ack.STORED, pb.Ack.STORED]
    assert store.con.execute("SELECT seq FROM batches ORDER BY seq").fetchall() == [(1,), (3,)]


def test_node_and_devices_registry(store: Store) -> None:
    store.ingest([batch("n1", 1, time.time_ns(), ["sda"])])
    assert store.con.execute("SELECT node, hostname FROM nodes").fetchall() == [("n1", "n1")]
    assert store.con.execute("SELECT kind, device, attrs['model'] FROM devices").fetchall() == [
        ("nvme", "nvme0", "X")
    ]


def test_a_device_the_node_stops_reporting_stays_listed_as_removed(store: Store) -> None:
    t0 = time.time_ns()
    first = batch("n1", 1, t0, ["sda"])
    first.node.devices.add(kind="gpu", name="1", attrs={"uuid": "GPU-1"})
    store.ingest([first])
    store.ingest([batch("n1", 2, t0 + 5 * 10**9, ["sda"])])  # GPU 1 fell off the bus: not in the inventory
    rows = store.con.execute("SELECT kind, device, attrs['state'] FROM devices ORDER BY kind").fetchall()
    assert rows == [("gpu", "1", "removed"), ("nvme", "nvme0", None)]
    back = batch("n1", 3, t0 + 10 * 10**9, ["sda"])
    back.node.devices.add(kind="gpu", name="1", attrs={"uuid": "GPU-1"})
    store.ingest([back])  # and came back after a reset
    assert store.con.execute("SELECT attrs['state'] FROM devices WHERE kind = 'gpu'").fetchall() == [(None,)]


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM disk",
        "DROP TABLE disk",
        "INSERT INTO nodes VALUES ('x')",
        "COPY disk TO '/tmp/x.csv'",
        "ATTACH '/tmp/other.db'",
        "SELECT 1; DELETE FROM disk",
        "SET enable_external_access = true",
        "not sql at all",
    ],
)
def test_queries_are_read_only(store: Store, sql: str) -> None:
    with pytest.raises(QueryRejected):
        run_query(store.reader(), sql, 10)


def test_queries_cannot_read_files(store: Store) -> None:
    with pytest.raises(QueryRejected, match=r"(?i)permission|disabled"):
        run_query(store.reader(), "SELECT * FROM read_csv('/etc/hostname')", 10)


def test_query_truncates_at_max_rows(store: Store) -> None:
    table, truncated = run_query(store.reader(), "SELECT range AS i FROM range(50)", 10)
    assert table.num_rows == 10 and truncated
    table, truncated = run_query(store.reader(), "SELECT range AS i FROM range(5)", 10)
    assert table.column("i").to_pylist() == [0, 1, 2, 3, 4] and not truncated


def test_a_held_file_says_so(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "held.duckdb"
    Store(path).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb,time; c=duckdb.connect({str(path)!r}); print('ok', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"ok"
        with pytest.raises(StoreLocked, match="held by another process"):
            connect(path, read_only=True)
    finally:
        holder.kill()
        holder.wait()


def test_a_backlog_is_committed_in_groups_of_up_to_2048_batches(store: Store) -> None:
    """Batches waiting when the writer comes round (a fleet catching up) go in groups of
    max_group_batches: fewer statements a batch than the 256 it was (measured: 1,040 -> 1,300 a second),
    and a row group of a 64-core fleet's cpu table written straight to the file."""
    from ironsight.collector.store import Pending
    from ironsight.core.validate import check

    acks: list[pb.Ack | None] = []
    now = time.time_ns()
    for seq in range(2500):
        valid = check(batch(f"n{seq % 300}", seq, now - 5 * 10**9, ["nvme0"]), now_ns=now)
        store.submit(Pending(valid, lambda ack, exc: acks.append(ack if exc is None else None)))
    store.start()
    deadline = time.monotonic() + 60
    while len(acks) < 2500 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [a.status if a else None for a in acks] == [pb.Ack.STORED] * 2500
    assert store.stats.commits == 2  # 2048 + 452
    assert store.con.execute("SELECT count(*) FROM disk").fetchone() == (2500 * 3,)
