"""The GPU detectors (thermal, power cap, XID, hardware faults) on simulated traces and on stores made by hand."""

from __future__ import annotations

import json
import time
from pathlib import Path

import duckdb
import pytest

from ironsight.collector.detect.findings import detect
from ironsight.collector.detect.thresholds import Thresholds
from ironsight.collector.store import Store
from ironsight.core.columnar import TableBuilder
from ironsight.v1 import telemetry_pb2 as pb

from support.traces import WHOLE, detect_recent, overlaps, simulated


# Seeds not used while writing the detector.
@pytest.mark.slow
@pytest.mark.parametrize("seed", [101, 202])
@pytest.mark.parametrize("scenario", ["thermal", "power-cap", "xid", "mixed"])
def test_finds_exactly_the_labelled_gpu_faults(tmp_path: Path, scenario: str, seed: int) -> None:
    header, con = simulated(tmp_path, scenario, seed)
    found = detect(con, *WHOLE).to_pylist()
    labels = [
        lb
        for lb in header.labels
        if lb.kind in ("thermal", "power_cap", "xid", "hardware_fault", "data_starvation", "network_jitter")
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


@pytest.mark.slow
@pytest.mark.parametrize("seed", [303, 404])
@pytest.mark.parametrize("scenario", ["healthy", "straggler", "network-jitter"])
def test_no_gpu_findings_where_no_gpu_fault_was_injected(tmp_path: Path, scenario: str, seed: int) -> None:
    _, con = simulated(tmp_path, scenario, seed, nodes=3)
    gpu_kinds = {"thermal", "power_cap", "xid", "hardware_fault", "data_starvation"}
    assert [f for f in detect(con, *WHOLE).to_pylist() if f["kind"] in gpu_kinds] == []


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


@pytest.mark.parametrize(("sw_seconds_per_window", "expected"), [(2.9, None), (3.0, "warning")])
def test_sw_thermal_boundary_is_5_percent_of_the_window(
    tmp_path: Path, sw_seconds_per_window: float, expected: str | None
) -> None:
    t = Thresholds()
    per_second = sw_seconds_per_window / t.window_s
    rows = [base(i) | {"throttle_sw_thermal_seconds": per_second * max(0, i - 100)} for i in range(400)]
    found = [f for f in detect_recent(hand_store(tmp_path, rows)) if f["kind"] == "thermal"]
    if expected is None:
        assert found == []
    else:
        assert [f["severity"] for f in found] == [expected]


def test_any_hw_slowdown_is_critical_and_near_slowdown_is_a_pre_warning(tmp_path: Path) -> None:
    rows = [base(i) for i in range(700)]
    for i in range(100, 200):
        rows[i]["temperature_celsius"] = 82.0  # exactly 5 C under slowdown
    for i in range(500, 700):  # beyond the 3 minutes that would bridge them into one incident
        rows[i]["throttle_hw_thermal_seconds"] = 0.001  # grew once, a millisecond
    found = detect_recent(hand_store(tmp_path, rows))
    grades = sorted((f["severity"], f["end_time"] is None) for f in found if f["kind"] == "thermal")
    assert grades == [("critical", False), ("pre-warning", False)]
    crit = next(f for f in found if f["severity"] == "critical")
    assert json.loads(str(crit["evidence"]))["peak"]["hw_slowdown_s"] == pytest.approx(0.001)


@pytest.mark.slow
def test_clock_under_90_percent_with_a_thermal_reason(tmp_path: Path) -> None:
    rows = [base(i) for i in range(300)]
    for i in range(100, 300):
        rows[i] |= {"sm_clock_hertz": 0.89 * 1980e6, "clocks_event_reasons": 0x20}
    found = detect_recent(hand_store(tmp_path, rows))
    assert [(f["kind"], f["severity"]) for f in found] == [("thermal", "warning")]
    # The same clock drop without a thermal reason is not thermal.
    rows2 = [base(i) for i in range(300)]
    for i in range(100, 300):
        rows2[i] |= {"sm_clock_hertz": 0.89 * 1980e6, "clocks_event_reasons": 0x4}
    other = tmp_path / "no-reason"
    other.mkdir()
    assert detect_recent(hand_store(other, rows2)) == []


def test_one_incident_opens_merges_and_closes(tmp_path: Path) -> None:
    t = Thresholds()
    rows = [base(i) for i in range(900)]
    cap = 0.0
    for i in range(900):
        # Capped 100-300 s, clear for 20 s (< close_after), capped again 320-400 s, clear until 700, capped to the end.
        if 100 <= i < 300 or 320 <= i < 400 or i >= 700:
            cap += 1.0
        rows[i]["throttle_sw_power_seconds"] = cap
    found = sorted(detect_recent(hand_store(tmp_path, rows)), key=lambda f: str(f["start_time"]))
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
    found = detect_recent(hand_store(tmp_path, rows, xid_at=120))
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
    assert detect_recent(hand_store(tmp_path, rows)) == []
