"""Retention: one-minute rollups equal to what the raw samples say, raw pruned after its time and only once
rolled up (late arrivals too), the size cap, and `series` reading rollups where raw is gone."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from ironsight.collector.migrations import migrate
from ironsight.collector.retention import DELAY, Policy, Retention, _now
from ironsight.core.trace import TraceWriter
from ironsight.offline.replay import to_db
from ironsight.offline.simulate import simulate

from support.processes import run_cli

pytestmark = pytest.mark.slow


def store(tmp_path: Path, spans: list[tuple[str, int, int]]) -> Path:
    """A store with simulated nodes: (node prefix seed, seconds ago it started, seconds long)."""
    now = time.time_ns()
    traces = []
    for i, (_, ago, duration) in enumerate(spans):
        # Nodes sim-000 (all spans) up to sim-00<i>: the last span's last node is only in it.
        header, batches = simulate("healthy", nodes=i + 1, gpus=2, duration_s=duration, seed=i,
                                   start_ns=(now - ago * 10**9) // 10**9 * 10**9)  # fmt: skip
        path = tmp_path / f"t{i}.trace"
        with TraceWriter(path, header) as w:
            for b in batches:
                w.write(b)
        traces.append(path)
    db = tmp_path / "r.duckdb"
    to_db(traces, db)
    return db


@pytest.fixture
def old_and_new(tmp_path: Path) -> Path:
    return store(tmp_path, [("old", 10 * 86400, 600), ("new", 3600, 600)])


def test_rollups_equal_the_raw_samples_and_old_raw_goes(old_and_new: Path) -> None:
    con = duckdb.connect(str(old_and_new))
    migrate(con)
    first = con.execute("SELECT min(time) FROM gpu").fetchall()[0][0]
    minute = first.replace(second=0, microsecond=0) + timedelta(minutes=3)
    expected = con.execute(
        """SELECT min(temperature_celsius), max(temperature_celsius), avg(temperature_celsius),
                  arg_max(temperature_celsius, time), count(*),
                  max(energy_joules) - (SELECT arg_max(energy_joules, time) FROM gpu
                                        WHERE node = 'sim-000' AND device = '1' AND time < ?)
           FROM gpu WHERE node = 'sim-000' AND device = '1' AND time >= ? AND time < ?""",
        [minute, minute, minute + timedelta(minutes=1)],
    ).fetchall()[0]
    # Each trace's minutes, as its raw samples fall: 10, and an 11th partial one unless it
    # started on a whole minute (a start at second 0 of a minute, 1 run in 60).
    spanned = con.execute(
        "SELECT count(DISTINCT date_trunc('minute', time)) FILTER (time < now()::TIMESTAMP - INTERVAL 1 DAY), "
        "count(DISTINCT date_trunc('minute', time)) FROM load WHERE node = 'sim-000'"
    ).fetchall()[0]
    assert spanned in ((10, 20), (11, 22))
    r = Retention(con, Policy())
    r.run_once(_now())
    temp = con.execute(
        "SELECT min, max, mean, last, samples FROM rollups_1m WHERE tbl = 'gpu' AND col = 'temperature_celsius' "
        "AND node = 'sim-000' AND device = '1' AND time = ?", [minute],
    ).fetchall()  # fmt: skip
    assert len(temp) == 1 and temp[0][:2] == expected[:2] and temp[0][2] == pytest.approx(expected[2])
    assert temp[0][3:] == (expected[3], expected[4])
    (energy,) = con.execute(
        "SELECT increase FROM rollups_1m WHERE tbl = 'gpu' AND col = 'energy_joules' AND node = 'sim-000' "
        "AND device = '1' AND time = ?", [minute],
    ).fetchall()[0]  # fmt: skip
    assert energy == pytest.approx(expected[5])  # counters: the increase within the minute
    # Raw older than 7 days is gone; the recent hour is whole; every finished minute is rolled up.
    oldest = con.execute("SELECT min(time) FROM gpu").fetchall()[0][0]
    assert oldest > _now() - timedelta(days=1)
    assert con.execute("SELECT count(*) FROM gpu").fetchall()[0][0] == 600 * 2 * 2  # 2 nodes x 2 GPUs
    assert r.stats.deleted["age"] > 0 and r.stats.rollup_rows > 0
    minutes = con.execute(
        "SELECT count(DISTINCT time) FILTER (time < now()::TIMESTAMP - INTERVAL 1 DAY), count(DISTINCT time) "
        "FROM rollups_1m WHERE tbl = 'load' AND node = 'sim-000'"
    ).fetchall()[0]
    assert minutes == spanned  # every minute of each trace rolled up, the recent one's too
    # `series` over the whole range: rollups where raw is gone, raw after, and it says which.
    con.close()
    out = run_cli("--db", str(old_and_new), "--format", "csv", "series", "--metric", "gpu.temperature_celsius",
                  "--node", "sim-001", "--device", "0", "--since", "11d").stdout.splitlines()  # fmt: skip
    sources = {line.rsplit(",", 1)[1] for line in out[1:]}
    assert out[0].endswith(",source") and sources == {"raw"}  # sim-001 is the recent node
    out = run_cli("--db", str(old_and_new), "--format", "csv", "series", "--metric", "gpu.temperature_celsius",
                  "--node", "sim-000", "--device", "0", "--since", "11d").stdout.splitlines()  # fmt: skip
    in_order = [line.rsplit(",", 1)[1] for line in out[1:]]
    # sim-000 ran 10 days ago (rolled up, raw gone) and in the last hour (raw): each minute once.
    assert in_order.count("rollup 1m") == spanned[0] and in_order.count("raw") == 600
    assert in_order == sorted(in_order, key=lambda s: s == "raw")  # oldest first: the rollups, then raw


def test_late_samples_are_rolled_up_before_they_are_pruned(old_and_new: Path) -> None:
    con = duckdb.connect(str(old_and_new))
    migrate(con)
    r = Retention(con, Policy())
    r.catch_up(_now() - DELAY)  # every minute rolled up, nothing pruned yet
    # A node's spool arrives hours late, for minutes already rolled up without it.
    con.execute("INSERT INTO load_hot SELECT 'late-node', device, time, COLUMNS(* EXCLUDE (node, device, time)) "
                "FROM load WHERE node = 'sim-000' AND time < now()::TIMESTAMP - INTERVAL 1 DAY")  # fmt: skip
    r.run_once(_now())
    late = con.execute("SELECT count(*) FROM rollups_1m WHERE tbl = 'load' AND node = 'late-node'").fetchall()
    assert late[0][0] > 0
    assert con.execute("SELECT count(*) FROM load WHERE node = 'late-node'").fetchall() == [(0,)]


def test_the_size_cap_prunes_the_oldest_raw_first(tmp_path: Path) -> None:
    db = store(tmp_path, [("a", 5 * 3600, 1800), ("b", 3600, 1800)])
    con = duckdb.connect(str(db))
    migrate(con)
    before = con.execute("SELECT min(time) FROM gpu").fetchall()[0][0]
    r = Retention(con, Policy(max_bytes=1))  # always over: prunes all it may, hour by hour
    r.run_once(_now())
    assert r.stats.deleted["size"] > 0
    after = con.execute("SELECT min(time) FROM gpu").fetchall()[0][0]
    assert after is None or after > before + timedelta(hours=1)
    assert con.execute("SELECT count(*) FROM rollups_1m WHERE tbl = 'gpu'").fetchall()[0][0] > 0


def test_the_keys_of_batches_go_with_the_raw_samples(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "k.duckdb"))
    migrate(con)
    now = _now()
    for seq, age in ((1, timedelta(days=8)), (2, timedelta(days=6)), (3, timedelta(0))):
        con.execute("INSERT INTO batches VALUES ('n', 'b', ?, ?, 1, 0)", [seq, now - age])
    Retention(con, Policy(raw=timedelta(days=7))).run_once(now)
    assert con.execute("SELECT seq FROM batches ORDER BY seq").fetchall() == [(2,), (3,)]
