"""The collector's live detector: step by step it finds what offline detection finds, in a real collector."""

from __future__ import annotations

import json
import re
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from ironsight.collector.detect.activity import Cache
from ironsight.collector.detect.findings import detect
from ironsight.collector.detect.live import LiveDetector, step
from ironsight.offline.replay import to_db

from support.processes import CollectorProcess, run_cli
from support.prom import promtool, samples
from support.traces import WHOLE, own, simulated, trace_until_now

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("scenario", "seed"), [("mixed", 1212), ("straggler", 1313), ("xid", 1414)])
def test_steps_find_what_offline_detection_finds(tmp_path: Path, scenario: str, seed: int) -> None:
    _, con = simulated(tmp_path, scenario, seed, nodes=3, duration_s=900)
    first, last = con.execute("SELECT min(time), max(time) FROM gpu").fetchall()[0]
    # Every GPU in one job, as the agents would have said: both paths name it on every finding.
    nodes = [n for (n,) in con.execute("SELECT DISTINCT node FROM gpu").fetchall()]
    own(con, dict.fromkeys(nodes, "train-7"), gpus="01")
    offline = detect(con, *WHOLE).to_pylist()
    assert offline and {f["job"] for f in offline} == {"train-7"}
    end = first.replace(second=0, microsecond=0) + timedelta(seconds=10)
    opened = closed = reopened = 0
    cache = Cache()  # as the collector's detector keeps between its steps
    while end <= last + timedelta(seconds=60):
        result = step(con, end, cache=cache)
        opened += len(result.opened)
        closed += len(result.closed)
        reopened += len(result.reopened)
        end += timedelta(seconds=10)
    live = con.execute(
        "SELECT kind, node, device, start_time, end_time, severity, evidence, job FROM events"
        " ORDER BY start_time, node, device, kind"
    ).fetchall()
    assert {f[7] for f in live} == {"train-7"}
    key = lambda f: (f[0], f[1], f[2], f[3])  # noqa: E731
    assert sorted(map(key, live)) == sorted(
        (f["kind"], f["node"], f["device"], f["start_time"]) for f in offline
    )
    assert opened == len(offline)
    by_key = {key(f): f for f in live}
    for f in offline:
        mine = by_key[(f["kind"], f["node"], f["device"], f["start_time"])]
        assert mine[5] == f["severity"]
        if f["end_time"] is not None:
            # Offline ends where the rule last held; live too, once it has closed.
            assert mine[4] == f["end_time"]
        ours, theirs = json.loads(mine[6]), json.loads(f["evidence"])
        assert ours["steps"] == theirs["steps"] and ours["peak_score"] == pytest.approx(theirs["peak_score"])
    # An XID, and a GPU lost with it, end as they open (at the XID's time): they are never closed later.
    at_once = {(k, n, d, t) for k, n, d, t, c in con.execute(
        "SELECT kind, node, device, start_time, cause FROM events").fetchall() if k == "xid" or c == "gpu_lost"}  # fmt: skip
    # Each close is final but for those reopened within the merge gap, each of which said so.
    assert closed - reopened == sum(1 for f in live if f[4] is not None and key(f) not in at_once)


def test_collector_opens_findings_as_data_arrives_and_shows_them(tmp_path: Path) -> None:
    # A GPU overheating right now: the thermal window is 25-80 % of the job, here ~290 s into 600 s.
    trace = trace_until_now(tmp_path, "thermal", 290, 600, job="4242")
    db = tmp_path / "live.duckdb"
    to_db([trace], db)
    c = CollectorProcess(db, tmp_path / "collector.log", http=True).start()
    try:
        text = c.metrics("ironsight_bottleneck_active{", timeout=60)
        active = [line for line in text.splitlines() if line.startswith("ironsight_bottleneck_active{")]
        assert len(active) == 1 and 'kind="thermal"' in active[0] and 'node="sim-' in active[0], text
        assert active[0].endswith(" 1.0")
        assert "ironsight_detector_steps_total" in text
        got = samples(text)
        labels = dict(re.findall(r'(\w+)="([^"]*)"', active[0]))
        # Each finding names the job it hit (never as `job`, which Prometheus owns).
        assert labels["ironsight_job"] == "4242"
        key = {
            ("kind", "thermal"),
            ("node", labels["node"]),
            ("device", labels["device"]),
            ("ironsight_job", "4242"),
        }
        since = got[("ironsight_bottleneck_since_timestamp_seconds", frozenset(key | {("cause", "")}))]
        assert time.time() - 290 < since < time.time()  # within the trace, before now
        peak = got[("ironsight_bottleneck_evidence", frozenset(key | {("figure", "temperature_max_c")}))]
        assert 80 <= peak <= 93  # near the 87 C slowdown
        assert got[("ironsight_findings_opened_total", frozenset({("kind", "thermal")}))] == 1
        assert got[("ironsight_findings_opened_total", frozenset({("kind", "xid")}))] == 0
        assert promtool(text) == []  # with an open finding's series present
        opened = json.loads(run_cli("--collector", c.target, "--format", "json", "events", "--open").stdout)
        assert [(f["kind"], f["end_time"]) for f in opened] == [("thermal", None)]
        # The same through the collector: offline detection over its store, and explain.
        found = json.loads(
            run_cli("--collector", c.target, "detect", "--since", "15m", "--format", "json").stdout
        )
        assert [(f["kind"], f["node"], f["device"]) for f in found] == [
            (opened[0]["kind"], opened[0]["node"], opened[0]["device"])
        ]
        explained = run_cli("--collector", c.target, "explain", str(opened[0]["id"])).stdout
        assert "thermal" in explained and "now, open" in explained and "GPU temperature (C)" in explained
        bad = run_cli("--collector", c.target, "detect", "--threshold", "nope=1", check=False)
        assert bad.returncode == 2 and "unknown threshold 'nope'" in bad.stderr
    finally:
        assert c.stop() == 0
    log = (tmp_path / "collector.log").read_text()
    assert log.count("finding opened") == 1 and "kind=thermal" in log
    # A restart resumes where the detector stopped: the finding is continued, not opened again.
    c = CollectorProcess(db, tmp_path / "collector2.log").start()
    try:
        time.sleep(12)
    finally:
        c.stop()
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM events WHERE kind = 'thermal'").fetchall() == [(1,)]
    assert "finding opened" not in (tmp_path / "collector2.log").read_text()


def test_detector_survives_a_failing_step(tmp_path: Path) -> None:
    _, con = simulated(tmp_path, "healthy", 5, nodes=1, duration_s=300)
    con.execute("DROP TABLE detector_state")  # a step can no longer record itself
    d = LiveDetector(con)
    first = con.execute("SELECT max(time) FROM gpu").fetchall()[0][0]
    d._next = first.replace(microsecond=0, second=0)
    d.run_due(first + timedelta(seconds=30))
    assert d.status.failures >= 1 and d.status.steps == 0


def test_collector_refuses_a_bad_threshold_in_one_line(tmp_path: Path) -> None:
    import subprocess

    from support.processes import BIN

    proc = subprocess.run(
        [str(BIN / "ironsight-collector"), "--db", str(tmp_path / "x.duckdb"), "--threshold", "step_s=0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith("threshold step_s: must be positive, got '0'")
    assert not (tmp_path / "x.duckdb").exists()  # refused before opening anything


def test_a_new_store_is_judged_back_a_few_minutes_only_where_they_hold_samples(tmp_path: Path) -> None:
    """A collector on a new store judged its 30 catch-up steps over nothing (3.9 s of CPU at start);
    one on a store just loaded with recent samples still judges back over them."""
    from datetime import UTC, datetime

    from ironsight.collector.detect.live import MAX_CATCH_UP_STEPS
    from ironsight.collector.store import Store

    now = datetime.now(UTC).replace(tzinfo=None)
    empty = Store(tmp_path / "new.duckdb")
    try:
        d = LiveDetector(empty.reader())
        assert d.first_step(now) == d.due(now)[-1]
    finally:
        empty.close()
    db = tmp_path / "loaded.duckdb"
    to_db([trace_until_now(tmp_path, "healthy", 120, 600)], db)
    d = LiveDetector(duckdb.connect(str(db)))
    back = timedelta(seconds=d.t.step_s * (MAX_CATCH_UP_STEPS - 1))
    assert d.first_step(now) == d.due(now)[-1] - back
