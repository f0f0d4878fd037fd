"""The cold tier: days moved to Parquet read back bit for bit, through the same table names, by the CLI,
the detector, the rollups and the sandboxed query service; late rows, crashes, lost files, retention."""

from __future__ import annotations

import logging
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ironsight.collector import cold
from ironsight.collector.database import QueryRejected, run_query
from ironsight.collector.detect.findings import detect
from ironsight.collector.retention import Policy, Retention
from ironsight.collector.store import Store
from ironsight.core.schema import TABLES
from ironsight.core.trace import TraceWriter
from ironsight.core.unixtime import to_ns
from ironsight.offline.replay import to_db
from ironsight.offline.simulate import simulate

from support.processes import CollectorProcess, run_cli

START = datetime(2026, 11, 1, 23, 40)  # 20 minutes on one day, 20 on the next
FAR = datetime(2030, 1, 1)


def contents(con: duckdb.DuckDBPyConnection) -> dict[str, pa.Table]:
    return {t: con.sql(f"SELECT * FROM {t} ORDER BY node, device, time").to_arrow_table() for t in TABLES}


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("cold")
    trace, db = tmp / "t.trace", tmp / "c.duckdb"
    start_ns = to_ns(START)
    header, batches = simulate("thermal", nodes=2, gpus=2, duration_s=2400, seed=5, start_ns=start_ns)
    with TraceWriter(trace, header) as w:
        for b in batches:
            w.write(b)
    to_db([trace], db)
    return db


@pytest.fixture
def two_days(replayed: Path, tmp_path: Path) -> Path:
    """A copy of the replayed store for each test (its cold folder beside it, as a move makes it)."""
    db = tmp_path / "c.duckdb"
    shutil.copy(replayed, db)
    return db


@pytest.mark.slow
def test_moved_days_read_back_exactly_and_answer_as_before(two_days: Path) -> None:
    con = duckdb.connect(str(two_days))
    before = contents(con)
    findings = detect(con, START - timedelta(hours=1), START + timedelta(hours=2)).to_pylist()
    used = con.execute("SELECT used_blocks * block_size FROM pragma_database_size()").fetchall()[0][0]
    moved = cold.move_before(con, two_days, FAR)
    assert moved.files == 2 * sum(1 for t in TABLES if before[t].num_rows)  # each table, each day
    assert moved.rows == sum(t.num_rows for t in before.values()) > 100_000
    assert all(con.execute(f"SELECT count(*) FROM {t}_hot").fetchall()[0][0] == 0 for t in TABLES)
    after = contents(con)
    for t in TABLES:
        assert after[t].schema == before[t].schema, t
        assert after[t].equals(before[t]), t  # every value, NULLs where NULLs were
    assert detect(con, START - timedelta(hours=1), START + timedelta(hours=2)).to_pylist() == findings
    assert any(f["kind"] == "thermal" for f in findings)
    assert moved.bytes < used / 3  # what the move is for (bench/run.py storage has the figures)
    con.close()
    # The CLI reads the same file as before, from any working directory.
    out = run_cli("--db", str(two_days), "--format", "csv", "series", "--metric", "gpu.power_watts",
                  "--node", "sim-001", "--device", "1", "--since", "2026-11-02T00:05:00",
                  "--until", "2026-11-02T00:05:00.5")  # fmt: skip
    temps = before["gpu"].filter(pa.compute.and_(pa.compute.equal(before["gpu"]["node"], "sim-001"),
                                                 pa.compute.equal(before["gpu"]["device"], "1")))  # fmt: skip
    want = temps.filter(
        pa.compute.equal(temps["time"], pa.scalar(datetime(2026, 11, 2, 0, 5), pa.timestamp("us")))
    )
    assert float(out.stdout.splitlines()[1].split(",")[3]) == want["power_watts"][0].as_py() > 0


@pytest.mark.slow
def test_rows_arriving_for_a_moved_day_stay_readable_and_move_later(two_days: Path) -> None:
    con = duckdb.connect(str(two_days))
    cold.move_before(con, two_days, FAR)
    con.execute(
        "INSERT INTO load_hot (node, device, time, load1) VALUES ('late', '', '2026-11-01 23:59:00', 7.5)"
    )
    assert con.execute("SELECT load1 FROM load WHERE node = 'late'").fetchall() == [(7.5,)]
    again = cold.move_before(con, two_days, FAR)
    assert (again.files, again.rows) == (1, 1)
    assert con.execute("SELECT seq FROM cold_files WHERE tbl = 'load' ORDER BY day, seq").fetchall() == [
        (0,), (1,), (0,)]  # fmt: skip
    assert con.execute("SELECT load1 FROM load WHERE node = 'late'").fetchall() == [(7.5,)]


@pytest.mark.slow
def test_a_crashed_move_and_a_lost_file(two_days: Path, caplog: pytest.LogCaptureFixture) -> None:
    con = duckdb.connect(str(two_days))
    cold.move_before(con, two_days, datetime(2026, 11, 2, 1))  # the first day only
    rows = con.execute("SELECT count(*) FROM gpu").fetchall()[0][0]
    orphan = cold.cold_dir(two_days) / "gpu" / "2026-11-02.0000.parquet"  # renamed, never committed
    orphan.write_bytes(b"PAR1 half a file")
    lost = cold.cold_dir(two_days) / "nic" / "2026-11-01.0000.parquet"
    nic_day = con.execute("SELECT count(*) FROM nic WHERE time < '2026-11-02'").fetchall()[0][0]
    lost.rename(lost.with_suffix(".away"))
    with caplog.at_level(logging.WARNING):
        cold.rebuild_views(con, two_days)
    assert not orphan.exists() and "no move finished" in caplog.text
    assert "1 files are missing" in caplog.text
    assert con.execute("SELECT count(*) FROM gpu").fetchall()[0][0] == rows
    assert con.execute("SELECT count(*) FROM nic WHERE time < '2026-11-02'").fetchall()[0][0] == 0
    lost.with_suffix(".away").rename(lost)  # put back: read again
    cold.rebuild_views(con, two_days)
    assert con.execute("SELECT count(*) FROM nic WHERE time < '2026-11-02'").fetchall()[0][0] == nic_day


@pytest.mark.slow
def test_retention_moves_and_drops_whole_days(two_days: Path) -> None:
    con = duckdb.connect(str(two_days))
    r = Retention(con, Policy(raw=timedelta(days=7), cold_after=timedelta(hours=2)), db_path=two_days)
    r.run_once(datetime(2026, 11, 3, 3))  # both days ended more than 2 h ago; nothing is 7 days old
    assert r.stats.cold_rows > 0 and r.stats.cold_bytes > 0
    assert con.execute("SELECT count(*) FROM gpu_hot").fetchall()[0][0] == 0
    assert con.execute("SELECT count(DISTINCT time::DATE) FROM gpu").fetchall()[0][0] == 2
    rollups = con.execute("SELECT count(*) FROM rollups_1m WHERE tbl = 'gpu'").fetchall()[0][0]
    assert rollups > 0  # rolled up before moving: a moved minute is never rolled up again
    r.run_once(datetime(2026, 11, 9, 0, 30))  # 7 days after the first day's end, not the second's
    assert con.execute("SELECT DISTINCT time::DATE::VARCHAR FROM gpu").fetchall() == [("2026-11-02",)]
    assert sorted(p.name for p in (cold.cold_dir(two_days) / "gpu").iterdir()) == ["2026-11-02.0000.parquet"]
    assert con.execute("SELECT count(*) FROM rollups_1m WHERE tbl = 'gpu'").fetchall()[0][0] == rollups


@pytest.mark.slow
def test_the_sandboxed_query_service_reads_the_cold_tier_and_nothing_else(
    two_days: Path, tmp_path: Path
) -> None:
    s = Store(two_days)
    try:
        total = run_query(s.reader(), "SELECT count(*) AS n FROM gpu", 10)[0].column("n")[0].as_py()
        cold.move_before(s.con, two_days, FAR)
        assert run_query(s.reader(), "SELECT count(*) AS n FROM gpu", 10)[0].column("n")[0].as_py() == total
        with pytest.raises(QueryRejected, match="disabled by configuration"):
            run_query(s.reader(), "SELECT * FROM read_csv('/etc/passwd')", 10)
    finally:
        s.close()
    c = CollectorProcess(two_days, tmp_path / "collector.log").start()  # a real server on the moved file
    try:
        out = run_cli("--collector", c.target, "query", "SELECT count(*) AS n FROM gpu")
        assert str(total) in out.stdout.replace(",", "")
    finally:
        assert c.stop() == 0


floats = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [0.0, -0.0, 0.01, 2.97, 453700695.553, 1e-9, 5e-324, 2.0**53 + 2, -123.456, 0.1 + 0.2]
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), floats), min_size=1, max_size=300))
def test_any_double_reads_back_bit_for_bit(
    tmp_path_factory: pytest.TempPathFactory, values: list[float | None]
) -> None:
    t = TABLES["load"]
    n = len(values)
    batch = pa.RecordBatch.from_pydict({
        "node": ["n"] * n, "device": [""] * n,
        "time": pa.array(np.arange(n, dtype=np.int64) * 1_000_000, pa.timestamp("us")),
        **{f.name: pa.array([None] * n, pa.int64() if f.type == "int" else pa.float64()) for f in t.fields},
    })  # fmt: skip
    batch = batch.set_column(batch.schema.get_field_index("load1"), "load1", pa.array(values, pa.float64()))
    path = tmp_path_factory.mktemp("cold") / "f.parquet"
    assert cold._write(path, [batch], t) == n
    con = duckdb.connect()
    con.execute("CREATE TABLE load_hot AS SELECT * FROM (SELECT NULL::VARCHAR AS node) WHERE false")
    sql = cold.view_sql("load", [str(path)]).split(" UNION ALL ", 1)[1]
    got = con.sql(sql).to_arrow_table().column("load1").to_pylist()
    as_bits = lambda xs: [None if x is None else np.float64(x).view(np.int64) for x in xs]  # noqa: E731
    assert as_bits(got) == as_bits(values)


def test_each_column_is_written_in_the_encoding_that_comes_out_smallest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.parquet as pq

    t = TABLES["gpu"]
    n = 200_000  # a day of 2 GPUs at 1 s, give or take
    rng = np.random.default_rng(7)
    energy = np.cumsum(rng.integers(69_000, 71_000, n)) / 1000  # a counter: mJ, steadily climbing
    # A gauge, as GPUs of one job draw power: the same course on each (a page of 20,000 rows never
    # sees the other GPU's), on a few values at a time, a held value for a few seconds.
    course = np.repeat(rng.choice([69.85, 70.1, 402.5, 398.25, 401.0], n // 8), 4)
    power = np.concatenate([course, course])
    batch = pa.RecordBatch.from_pydict({
        "node": ["n"] * n, "device": ["0"] * (n // 2) + ["1"] * (n // 2),
        "time": pa.array(np.arange(n, dtype=np.int64) * 1_000_000, pa.timestamp("us")),
        **{f.name: pa.array([None] * n, pa.int64() if f.type == "int" else pa.float64()) for f in t.fields},
    })  # fmt: skip
    for name, values in (("energy_joules", energy), ("power_watts", power)):
        batch = batch.set_column(batch.schema.get_field_index(name), name, pa.array(values))
    path = tmp_path / "gpu.parquet"
    assert cold._write(path, [batch], t) == n
    meta = pq.ParquetFile(path).metadata.row_group(0)
    chunk = {meta.column(i).path_in_schema: meta.column(i) for i in range(meta.num_columns)}
    assert "DELTA_BINARY_PACKED" in chunk["energy_joules"].encodings
    assert "DELTA_BINARY_PACKED" not in chunk["power_watts"].encodings
    # Pages of 256 Ki rows, not Arrow's 20,000: zstd gets the context to find a series' repeats.
    monkeypatch.setattr(cold, "PAGE_ROWS", 20_000)
    cold._write(tmp_path / "small-pages.parquet", [batch], t)
    small = pq.ParquetFile(tmp_path / "small-pages.parquet").metadata.row_group(0)
    sizes = {
        small.column(i).path_in_schema: small.column(i).total_compressed_size for i in range(meta.num_columns)
    }
    assert chunk["power_watts"].total_compressed_size < 0.9 * sizes["power_watts"]
    con = duckdb.connect()
    con.execute("CREATE TABLE gpu_hot AS SELECT * FROM (SELECT NULL::VARCHAR AS node) WHERE false")
    got = con.sql(cold.view_sql("gpu", [str(path)]).split(" UNION ALL ", 1)[1]).to_arrow_table()
    assert np.array_equal(got.column("energy_joules").to_numpy(), energy)
    assert np.array_equal(got.column("power_watts").to_numpy(), power)
