"""A node whose clock is off, or stepped, loses nothing: real agent under libfaketime, real collector.

Debian's faketime (.ci/run installs it) fakes the agent's wall clock only;
CLOCK_BOOTTIME stays true (FAKETIME_DONT_FAKE_MONOTONIC), as on a real node
whose wall clock is wrong or stepped by NTP.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support.processes import BIN, CollectorProcess, run_cli, scrape_metrics, wait_for

pytestmark = pytest.mark.slow

INTERVAL_NS = 500_000_000


def libfaketime() -> str:
    found = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
    if not found:
        pytest.fail("libfaketime not found: .ci/run installs Debian's faketime")
    return found[0]


def stored_batches(collector: CollectorProcess) -> int:
    found = re.search(
        r'ironsight_collector_batches_total\{outcome="stored",reason=""\} (\S+)',
        scrape_metrics(collector.http_port),
    )
    return int(float(found.group(1))) if found else 0


def run_agent(collector: CollectorProcess, tmp: Path, env: dict[str, str], batches: int,
              during: Callable[[], object] | None = None) -> str:  # fmt: skip
    """The agent under libfaketime until the collector has stored `batches` of its batches (a second each),
    `during` run halfway; its log."""
    log = tmp / "agent.log"
    env = {**os.environ, "LD_PRELOAD": libfaketime(), "FAKETIME_DONT_FAKE_MONOTONIC": "1", **env}
    with open(log, "wb") as out:
        agent = subprocess.Popen(
            [str(BIN / "ironsight-agent"), "--collector", collector.target, "--node-id", "skewed",
             "--interval", "0.5", "--state-dir", str(tmp / "state"), "--no-collector.gpu"],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        # Counted by what is stored, not by wall time: a slow start on a loaded machine changes nothing.
        wait_for(lambda: stored_batches(collector) >= batches // 2, timeout=60)
        if during is not None:
            during()
        wait_for(lambda: stored_batches(collector) >= batches, timeout=60)
    finally:
        agent.terminate()
        assert agent.wait(30) == 0
    return log.read_text()


def query(db: Path, sql: str) -> list[dict[str, Any]]:
    return list(json.loads(run_cli("--db", str(db), "--format", "json", "query", sql).stdout))


@pytest.mark.parametrize(
    ("fake", "offset_s"), [("+2h", -7200.0), ("-1d", 86400.0)], ids=["2h-ahead", "1d-behind"]
)
def test_a_node_whose_clock_is_off_lands_where_its_samples_belong(
    tmp_path: Path, fake: str, offset_s: float
) -> None:
    collector = CollectorProcess(
        tmp_path / "c.duckdb", tmp_path / "c.log", ["--no-detect"], http=True
    ).start()
    began = time.time_ns()
    try:
        text = run_agent(collector, tmp_path, {"FAKETIME": fake}, 6)
        body = collector.metrics("ironsight_node_clock_offset_seconds")
    finally:
        collector.stop()
    ended = time.time_ns()
    stopped = next(line for line in text.splitlines() if "stopped:" in line)
    assert ", 0 unsent, 0 dropped" in stopped and "collector refused" not in text, text
    [row] = query(
        collector.db,
        "SELECT count(*) AS n, epoch_ns(min(time)) AS first, epoch_ns(max(time)) AS last FROM load",
    )
    assert int(row["n"]) >= 9  # ~12 ticks in 6 s at 0.5 s: every one stored, none refused
    # Stored on the collector's clock, not the node's: inside the run, give or take an interval.
    assert began - INTERVAL_NS <= int(row["first"]) and int(row["last"]) <= ended + INTERVAL_NS
    shifts = {int(r["s"]) for r in query(collector.db, "SELECT DISTINCT clock_offset_ns AS s FROM batches")}
    assert len(shifts) == 1 and abs(shifts.pop() / 1e9 - offset_s) < 2  # the original stamps stay recoverable
    [node] = query(collector.db, "SELECT clock_offset_s FROM nodes WHERE node = 'skewed'")
    assert abs(float(node["clock_offset_s"]) - offset_s) < 2
    gauge = re.search(r'ironsight_node_clock_offset_seconds\{node="skewed"\} (\S+)', body)
    assert gauge is not None and abs(float(gauge.group(1)) - offset_s) < 2
    lines = [line for line in collector.log.read_text().splitlines() if "node skewed: its clock is" in line]
    assert len(lines) == 1 and ("ahead of" if offset_s < 0 else "behind") in lines[0]


def test_a_clock_stepped_back_mid_run_neither_repeats_nor_skips_a_tick(tmp_path: Path) -> None:
    clock = tmp_path / "faketime"
    clock.write_text("+0s\n")
    collector = CollectorProcess(
        tmp_path / "s.duckdb", tmp_path / "c.log", ["--no-detect"], http=True
    ).start()
    try:
        text = run_agent(
            collector,
            tmp_path,
            {"FAKETIME_TIMESTAMP_FILE": str(clock), "FAKETIME_NO_CACHE": "1"},
            8,
            during=lambda: clock.write_text("-30s\n"),  # an NTP step of 30 s back
        )
    finally:
        collector.stop()
    assert ", 0 unsent, 0 dropped" in next(line for line in text.splitlines() if "stopped:" in line), text
    assert len([line for line in text.splitlines() if "system clock moved -30" in line]) == 1, text
    times = [int(r["t"]) for r in query(collector.db, "SELECT epoch_ns(time) AS t FROM load ORDER BY time")]
    steps = {b - a for a, b in itertools.pairwise(times)}
    assert len(times) >= 13 and steps == {INTERVAL_NS}, steps  # no tick twice, none missing
    assert {
        int(r["s"]) for r in query(collector.db, "SELECT DISTINCT clock_offset_ns AS s FROM batches")
    } == {0}


def test_doctor_on_a_node_whose_clock_is_off_warns(tmp_path: Path) -> None:
    collector = CollectorProcess(tmp_path / "d.duckdb", tmp_path / "c.log", ["--no-detect"]).start()
    env = {**os.environ, "LD_PRELOAD": libfaketime(), "FAKETIME_DONT_FAKE_MONOTONIC": "1", "FAKETIME": "+2h"}
    try:
        out = subprocess.run(
            [str(BIN / "ironsight"), "--collector", collector.target, "doctor", "--state-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
    finally:
        collector.stop()
    [line] = [line for line in out.stdout.splitlines() if "clock offset" in line]
    assert line.startswith("WARN") and "ahead of the collector's clock" in line
    assert 7195 < float(line.split("clock offset")[1].split("s ")[0]) < 7205
