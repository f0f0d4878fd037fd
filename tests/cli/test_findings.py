"""`ironsight detect`, `events` and `explain` on a stored trace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.processes import run_cli
from support.traces import simulated

pytestmark = pytest.mark.slow


def test_detect_and_events_commands(tmp_path: Path) -> None:
    _, con = simulated(tmp_path, "mixed", 7)
    con.close()
    db = str(tmp_path / "mixed.duckdb")
    out = run_cli("--db", db, "--format", "json", "detect", "--since", "2026-10-31", "--until", "2026-11-02")
    found = json.loads(out.stdout)
    assert {f["kind"] for f in found} == {"thermal", "power_cap", "data_starvation", "network_jitter"}
    again = json.loads(
        run_cli(
            "--db", db, "--format", "json", "detect", "--since", "2026-10-31", "--until", "2026-11-02"
        ).stdout
    )
    assert len(again) == len(found)
    listed = json.loads(run_cli("--db", db, "--format", "json", "events").stdout)
    assert len(listed) == len(found)  # re-running replaced, not duplicated
    thermal = json.loads(
        run_cli("--db", db, "--format", "json", "events", "--kind", "thermal", "--evidence").stdout
    )
    assert len(thermal) == 1 and json.loads(thermal[0]["evidence"])["peak"]["slowdown_c"] == 87.0
    assert json.loads(run_cli("--db", db, "--format", "json", "events", "--open").stdout) == []


def test_explain_shows_evidence_and_plots_the_metrics_behind_it(tmp_path: Path) -> None:
    _, con = simulated(tmp_path, "mixed", 7)
    con.close()
    db = str(tmp_path / "mixed.duckdb")
    run_cli("--db", db, "detect", "--since", "2026-10-31", "--until", "2026-11-02")
    listed = json.loads(run_cli("--db", db, "events", "--kind", "thermal", "--format", "json").stdout)
    [thermal] = listed
    out = run_cli("--db", db, "explain", str(thermal["id"])).stdout
    assert (
        f"finding {thermal['id']}: thermal (critical) on {thermal['node']} device {thermal['device']}" in out
    )
    assert "slowdown_c" in out and "87" in out  # the peak's evidence
    assert "GPU temperature (C)" in out and "* temperature   o slowdown threshold" in out
    assert "SM clock (MHz)" in out and "| start (+0s), end (+" in out
    plot_rows = [line for line in out.splitlines() if " |" in line and "*" in line]
    assert len(plot_rows) >= 5  # points were drawn, not an empty frame
    as_json = json.loads(run_cli("--db", db, "explain", str(thermal["id"]), "--format", "json").stdout)
    assert as_json["kind"] == "thermal" and as_json["evidence"]["peak"]["slowdown_c"] == 87.0
    missing = run_cli("--db", db, "explain", "99999", check=False)
    assert missing.returncode != 0 and "no finding with id 99999" in missing.stderr
    bad = run_cli("--db", db, "detect", "--threshold", "window_s=abc", check=False)
    assert bad.returncode == 2 and "threshold window_s: expected an integer, got 'abc'" in bad.stderr


def test_explain_a_lock_step_straggler_shows_its_busy_time_and_its_peers_waiting(tmp_path: Path) -> None:
    header, con = simulated(tmp_path, "lockstep-straggler", 21, nodes=3)
    con.close()
    [label] = [lb for lb in header.labels if lb.kind == "straggler"]
    db = str(tmp_path / "lockstep-straggler.duckdb")
    run_cli("--db", db, "detect", "--since", "2026-10-31", "--until", "2026-11-02")
    [found] = json.loads(run_cli("--db", db, "events", "--kind", "straggler", "--format", "json").stdout)
    assert found["node"] == label.node
    as_json = json.loads(run_cli("--db", db, "explain", str(found["id"]), "--format", "json").stdout)
    peak = as_json["evidence"]["peak"]
    # Busier SMs than its peers, whose NVML-busy time is partly spent waiting at the barrier.
    assert peak["method"] == "lockstep_busy_time"
    assert (
        peak["busy_activity"] > 1.07 * peak["peers_busy_activity"]
        and peak["peers_barrier_wait_fraction"] > 0.1
    )
    out = run_cli("--db", db, "explain", str(found["id"])).stdout
    assert "GPU activity (% SM active, or power of limit)" in out and "GPU utilization (%, NVML)" in out
    assert len([line for line in out.splitlines() if " |" in line and "*" in line]) >= 5
