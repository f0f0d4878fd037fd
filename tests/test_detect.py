"""The detector's GPU findings (thermal, power cap, XID, hardware faults) on simulated traces and hand-made cases."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from ironsight.collector.detect.findings import detect
from ironsight.collector.detect.thresholds import Thresholds
from ironsight.collector.store import Store
from ironsight.core.columnar import TableBuilder
from ironsight.core.trace import TraceWriter
from ironsight.offline.replay import to_db
from ironsight.offline.simulate import simulate
from ironsight.v1 import telemetry_pb2 as pb

from conftest import run_cli

T0 = datetime(2026, 11, 1)
WHOLE = (T0 - timedelta(days=1), T0 + timedelta(days=1))


def simulated(
    tmp_path: Path, scenario: str, seed: int, nodes: int = 2, gpus: int = 2, duration_s: float = 1200
) -> tuple[pb.TraceHeader, duckdb.DuckDBPyConnection]:
    trace, db = tmp_path / f"{scenario}.trace", tmp_path / f"{scenario}.duckdb"
    header, batches = simulate(scenario, nodes=nodes, gpus=gpus, duration_s=duration_s, seed=seed)
    with TraceWriter(trace, header) as w:
        for b in batches:
            w.write(b)
    to_db([trace], db)
    return header, duckdb.connect(str(db))


def overlaps(finding: dict[str, object], label: pb.TraceLabel) -> bool:
    start = finding["start_time"]
    end = finding["end_time"] or T0 + timedelta(days=1)
    lstart = datetime(1970, 1, 1) + timedelta(microseconds=label.start_ns // 1000)
    lend = datetime(1970, 1, 1) + timedelta(microseconds=label.end_ns // 1000)
    return start < lend and end > lstart  # type: ignore[operator]


# Seeds not used while writing the detector.
@pytest.mark.parametrize("seed", [101, 202])
@pytest.mark.parametrize("scenario", ["thermal", "power-cap", "xid", "mixed"])
def test_finds_exactly_the_labelled_gpu_faults(tmp_path: Path, scenario: str, seed: int) -> None:
    header, con = simulated(tmp_path, scenario, seed)
    found = detect(con, *WHOLE).to_pylist()
    labels = [
        lb
        for lb in header.labels
        if lb.kind in ("thermal", "power_cap", "xid", "data_starvation", "network_jitter")
    ]
    assert labels
    for label in labels:
        hits = [
            f
            for f in found
            if f["kind"] == label.kind and f["node"] == label.node and f["device"] == label.device
        ]
        assert len(hits) == 1, (label, found)  # one incident, not one finding per window
        assert overlaps(hits[0], label)
        if label.kind == "thermal":
            assert hits[0]["severity"] == label.severity == "critical"
    labelled = {(lb.kind, lb.node, lb.device) for lb in labels}
    extra = [f for f in found if (f["kind"], f["node"], f["device"]) not in labelled]
    assert extra == []


@pytest.mark.parametrize("seed", [303, 404])
@pytest.mark.parametrize("scenario", ["healthy", "straggler", "network-jitter"])
def test_no_gpu_findings_where_no_gpu_fault_was_injected(tmp_path: Path, scenario: str, seed: int) -> None:
    _, con = simulated(tmp_path, scenario, seed, nodes=2)
    gpu_kinds = {"thermal", "power_cap", "xid", "hardware_fault", "data_starvation"}
    assert [f for f in detect(con, *WHOLE).to_pylist() if f["kind"] in gpu_kinds] == []


@pytest.mark.parametrize("seed", [505, 606])
@pytest.mark.parametrize(
    ("scenario", "nodes", "cause"),
    [("starved-storage", 2, "storage"), ("starved-cpu", 2, "cpu"), ("starved-storage", 1, "storage")],
)
def test_starvation_on_the_starved_gpus_with_its_cause(
    tmp_path: Path, scenario: str, nodes: int, cause: str, seed: int
) -> None:
    header, con = simulated(tmp_path, scenario, seed, nodes=nodes)
    found = detect(con, *WHOLE).to_pylist()
    labels = [lb for lb in header.labels if lb.kind == "data_starvation"]
    assert labels
    for label in labels:
        [hit] = [f for f in found if f["node"] == label.node and f["device"] == label.device]
        assert hit["kind"] == "data_starvation" and hit["cause"] == cause and hit["severity"] == "critical"
        assert overlaps(hit, label)
        peak = json.loads(hit["evidence"])["peak"]
        assert peak["gpu_util_mean_pct"] < 0.5 * peak["job_gpu_util_p75_pct"] or nodes == 1
    assert len(found) == len(labels)  # nothing on the healthy node


def hand_store(
    tmp_path: Path, rows: list[dict[str, float | int | None]], xid_at: int | None = None
) -> duckdb.DuckDBPyConnection:
    """One GPU sampled once a second with the given values (each dict: one second)."""
    store = Store(tmp_path / "hand.duckdb")
    t0 = int(time.time()) // 60 * 60 * 10**9 - 3600 * 10**9
    b = TableBuilder("gpu")
    for i, values in enumerate(rows):
        b.add(t0 + i * 10**9, "0", values)
    batch = pb.Batch(node_id="n1", boot_id="b", seq=1, interval_s=1.0)
    batch.tables.append(b.to_proto())
    if xid_at is not None:
        x = TableBuilder("gpu_xid")
        x.add(t0 + xid_at * 10**9, "0", {"xid": 48})
        batch.tables.append(x.to_proto())
    store.ingest([batch])
    store.close()
    return duckdb.connect(str(tmp_path / "hand.duckdb"))


def base(i: int) -> dict[str, float | int | None]:
    return {
        "temperature_celsius": 60.0,
        "temperature_slowdown_celsius": 87.0,
        "sm_clock_hertz": 1980e6,
        "sm_clock_max_hertz": 1980e6,
        "util_gpu_percent": 100.0,
        "clocks_event_reasons": 0,
        "throttle_sw_thermal_seconds": 0.0,
        "throttle_hw_thermal_seconds": 0.0,
        "throttle_hw_power_brake_seconds": 0.0,
        "throttle_sw_power_seconds": 0.0,
        "pcie_replays": 0,
        "ecc_dbe_volatile": 0,
    }


def run(con: duckdb.DuckDBPyConnection) -> list[dict[str, object]]:
    now = datetime.now(UTC).replace(tzinfo=None)
    return detect(con, now - timedelta(hours=3), now).to_pylist()


@pytest.mark.parametrize(("sw_seconds_per_window", "expected"), [(2.9, None), (3.0, "warning")])
def test_sw_thermal_boundary_is_5_percent_of_the_window(
    tmp_path: Path, sw_seconds_per_window: float, expected: str | None
) -> None:
    t = Thresholds()
    per_second = sw_seconds_per_window / t.window_s
    rows = [base(i) | {"throttle_sw_thermal_seconds": per_second * max(0, i - 100)} for i in range(400)]
    found = [f for f in run(hand_store(tmp_path, rows)) if f["kind"] == "thermal"]
    if expected is None:
        assert found == []
    else:
        assert [f["severity"] for f in found] == [expected]


def test_any_hw_slowdown_is_critical_and_near_slowdown_is_a_pre_warning(tmp_path: Path) -> None:
    rows = [base(i) for i in range(600)]
    for i in range(100, 200):
        rows[i]["temperature_celsius"] = 82.0  # exactly 5 C under slowdown
    for i in range(400, 600):
        rows[i]["throttle_hw_thermal_seconds"] = 0.001  # grew once, a millisecond
    found = run(hand_store(tmp_path, rows))
    grades = sorted((f["severity"], f["end_time"] is None) for f in found if f["kind"] == "thermal")
    assert grades == [("critical", False), ("pre-warning", False)]
    crit = next(f for f in found if f["severity"] == "critical")
    assert json.loads(crit["evidence"])["peak"]["hw_slowdown_s"] == pytest.approx(0.001)


def test_clock_under_90_percent_with_a_thermal_reason(tmp_path: Path) -> None:
    rows = [base(i) for i in range(300)]
    for i in range(100, 300):
        rows[i] |= {"sm_clock_hertz": 0.89 * 1980e6, "clocks_event_reasons": 0x20}
    found = run(hand_store(tmp_path, rows))
    assert [(f["kind"], f["severity"]) for f in found] == [("thermal", "warning")]
    # The same clock drop without a thermal reason is not thermal.
    rows2 = [base(i) for i in range(300)]
    for i in range(100, 300):
        rows2[i] |= {"sm_clock_hertz": 0.89 * 1980e6, "clocks_event_reasons": 0x4}
    other = tmp_path / "no-reason"
    other.mkdir()
    assert run(hand_store(other, rows2)) == []


def test_one_incident_opens_merges_and_closes(tmp_path: Path) -> None:
    t = Thresholds()
    rows = [base(i) for i in range(900)]
    cap = 0.0
    for i in range(900):
        # Capped 100-300 s, clear for 20 s (< close_after), capped again 320-400 s, clear until 700, capped to the end.
        if 100 <= i < 300 or 320 <= i < 400 or i >= 700:
            cap += 1.0
        rows[i]["throttle_sw_power_seconds"] = cap
    found = sorted(run(hand_store(tmp_path, rows)), key=lambda f: f["start_time"])
    assert [f["kind"] for f in found] == ["power_cap", "power_cap"]
    first, second = found
    assert (
        first["end_time"] is not None
        and (first["end_time"] - first["start_time"]).total_seconds() >= 300 - 100
    )
    assert second["end_time"] is None  # still open at the end of the data
    assert t.close_after_s < 300


def test_xid_and_hardware_faults(tmp_path: Path) -> None:
    rows = [base(i) for i in range(300)]
    for i in range(150, 300):
        rows[i]["ecc_dbe_volatile"] = 1
        rows[i]["pcie_replays"] = 9 + i  # grows 1 a second: well over 10 a window
    found = run(hand_store(tmp_path, rows, xid_at=120))
    kinds = sorted((f["kind"], f["cause"], f["severity"]) for f in found)
    assert kinds == [
        ("hardware_fault", "ecc_dbe", "critical"),
        ("hardware_fault", "pcie_replays", "warning"),
        ("xid", "xid 48", "critical"),
    ]


def test_counter_reset_is_not_a_fault(tmp_path: Path) -> None:
    rows = [base(i) for i in range(300)]
    for i in range(300):
        rows[i]["throttle_hw_thermal_seconds"] = 50.0 if i < 150 else 0.0  # driver reload: counter back to 0
    assert run(hand_store(tmp_path, rows)) == []


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


@pytest.mark.parametrize("seed", [707, 808])
def test_network_jitter_on_the_labelled_nic_only(tmp_path: Path, seed: int) -> None:
    header, con = simulated(tmp_path, "network-jitter", seed, nodes=3)
    [label] = [lb for lb in header.labels if lb.kind == "network_jitter"]
    found = detect(con, *WHOLE).to_pylist()
    assert [(f["kind"], f["node"], f["device"]) for f in found] == [
        ("network_jitter", label.node, "mlx5_0:1")
    ]
    assert overlaps(found[0], label) and found[0]["cause"] == "loss" and found[0]["severity"] == "critical"
    assert json.loads(found[0]["evidence"])["peak"]["out_of_sequence"] > 0


def rdma_store(
    tmp_path: Path, cnp_per_s: list[float], peers: int = 3, peer_cnp: float = 2.0
) -> duckdb.DuckDBPyConnection:
    """Ports on several nodes, one sample a second; node n0's CNP rate follows cnp_per_s."""
    store = Store(tmp_path / "net.duckdb")
    t0 = int(time.time()) // 60 * 60 * 10**9 - 3600 * 10**9
    batches = []
    for n in range(peers + 1):
        b = TableBuilder("rdma")
        total = 0.0
        for i, rate in enumerate(cnp_per_s):
            total += rate if n == 0 else peer_cnp
            b.add(
                t0 + i * 10**9,
                "mlx5_0:1",
                {"np_cnp_sent": int(total), "out_of_sequence": 0, "packet_seq_err": 0},
            )
        batch = pb.Batch(node_id=f"n{n}", boot_id="b", seq=1, interval_s=1.0)
        batch.tables.append(b.to_proto())
        batches.append(batch)
    store.ingest(batches)
    store.close()
    return duckdb.connect(str(tmp_path / "net.duckdb"))


def test_congestion_must_be_held_for_three_windows(tmp_path: Path) -> None:
    # 15 minutes of baseline at 2/s, then 5 minutes at 500/s.
    long = [2.0] * 900 + [500.0] * 300 + [2.0] * 300
    found_long = [f for f in run(rdma_store(tmp_path, long)) if f["kind"] == "network_jitter"]
    assert [(f["node"], f["cause"], f["severity"]) for f in found_long] == [("n0", "congestion", "warning")]
    peak = json.loads(found_long[0]["evidence"])["peak"]
    assert peak["congestion_per_s"] >= 10 * peak["own_baseline_per_s"] and peak["peer_baseline_per_s"] < 10
    blip_dir = tmp_path / "blip"
    blip_dir.mkdir()
    blip = [2.0] * 900 + [500.0] * 12 + [2.0] * 300  # one burst of 12 s: over the bar in too few windows
    assert [f for f in run(rdma_store(blip_dir, blip)) if f["kind"] == "network_jitter"] == []


def test_congestion_everywhere_is_not_one_nics_jitter(tmp_path: Path) -> None:
    rates = [2.0] * 900 + [500.0] * 300
    # Every port congested alike: the peers' baseline rises with it.
    con = rdma_store(tmp_path, rates, peers=3, peer_cnp=0.0)
    assert [f["node"] for f in run(con) if f["kind"] == "network_jitter"] == ["n0"]
    same = tmp_path / "same"
    same.mkdir()
    store = Store(same / "net.duckdb")
    t0 = int(time.time()) // 60 * 60 * 10**9 - 3600 * 10**9
    batches = []
    for n in range(4):
        b = TableBuilder("rdma")
        total = 0.0
        for i, rate in enumerate(rates):
            total += rate
            b.add(t0 + i * 10**9, "mlx5_0:1", {"np_cnp_sent": int(total)})
        batch = pb.Batch(node_id=f"n{n}", boot_id="b", seq=1, interval_s=1.0)
        batch.tables.append(b.to_proto())
        batches.append(batch)
    store.ingest(batches)
    store.close()
    assert [f for f in run(duckdb.connect(str(same / "net.duckdb"))) if f["kind"] == "network_jitter"] == []


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


def test_readme_lists_every_threshold_with_its_default() -> None:
    import re
    from dataclasses import fields

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    listed = dict(re.findall(r"`([a-z_0-9]+)=([0-9.]+)`", readme))
    t = Thresholds()
    assert {f.name: float(getattr(t, f.name)) for f in fields(t)} == {
        f.name: float(listed[f.name]) for f in fields(t) if f.name in listed
    }
