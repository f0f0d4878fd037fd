"""The detector on traces recorded from a real H200 under known workloads (tests/traces/h200/).

Each workload logged its own phases (tools/gpu_workloads.py), so what the detector says is
held against what the job saw, not against a simulator's labels: the GPU idle, then bf16
matrix products (the card at its 700 W limit, clocks pulled down by the driver's power cap),
then a training loop whose data loader first keeps up and then is left a fifth of the cores,
then two ranks meeting at a barrier each iteration, then (on a second lease) known bytes copied
each way over PCIe. nvidia-smi's own log of the same seconds checks the agent's readings of that card.
"""

from __future__ import annotations

import csv
import json
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from ironsight.collector.detect.findings import detect
from ironsight.collector.detect.live import step
from ironsight.offline.replay import to_db

H200 = Path(__file__).resolve().parents[2] / "traces" / "h200"
pytestmark = pytest.mark.slow  # each replays a trace into a file and runs the detector
SW_POWER_CAP = 0x4  # nvmlClocksEventReasonSwPowerCap


def _phases(name: str) -> dict[str, tuple[datetime, datetime]]:
    """The workload's phases from its log, as naive UTC (the store's times)."""
    out = {}
    for line in (H200 / f"{name}.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "start_ns" in rec:
            out[rec["phase"]] = tuple(
                datetime.fromtimestamp(rec[k] / 1e9, UTC).replace(tzinfo=None) for k in ("start_ns", "end_ns")
            )
    return out  # type: ignore[return-value]


def _store(tmp_path: Path, *names: str) -> duckdb.DuckDBPyConnection:
    db = tmp_path / "h200.duckdb"
    to_db([H200 / f"h200-{n}.trace" for n in names], db)
    return duckdb.connect(str(db))


WHOLE = (datetime(2026, 12, 4, 15), datetime(2026, 12, 4, 17))  # the session's hour, and more


def test_the_real_starved_loader_is_found_while_starved_with_cause_cpu(tmp_path: Path) -> None:
    con = _store(tmp_path, "starved")
    healthy, starved = _phases("starved")["healthy"], _phases("starved")["starved"]
    found = [f for f in detect(con, *WHOLE).to_pylist() if f["kind"] == "data_starvation"]
    [hit] = found  # one finding, on the one GPU, none in the healthy phase before it
    assert (hit["node"], hit["device"], hit["cause"]) == ("h200", "0", "cpu")
    assert hit["severity"] == "critical"  # the GPU was busy 21 % of the starved phase (nvidia-smi too)
    # Found within a window (20 s) and a step of the loader losing its cores, not before.
    assert starved[0] <= hit["start_time"] <= starved[0] + timedelta(seconds=30)
    # The recording stopped 3 s before the loader got its cores back: open at the data's end.
    last = con.execute("SELECT max(time) FROM gpu").fetchone()[0]
    assert last < starved[1] and hit["end_time"] is None
    mean_healthy, mean_starved = (
        con.execute(
            "SELECT avg(util_gpu_percent) FROM gpu WHERE time >= ? AND time < ?",
            [a + timedelta(seconds=5), b],
        ).fetchone()[0]
        for a, b in (healthy, starved)
    )
    assert mean_healthy > 80 and mean_starved < 30  # what the finding rests on, as recorded


def test_the_real_burn_is_power_capped_and_nothing_else(tmp_path: Path) -> None:
    con = _store(tmp_path, "burn")
    start, end = _phases("burn")["burn"]
    found = detect(con, *WHOLE).to_pylist()
    assert {f["kind"] for f in found} == {"power_cap"}
    [cap] = found
    # A finding starts at its first 10 s step: the one the burn began in.
    assert start - timedelta(seconds=10) <= cap["start_time"] <= start + timedelta(seconds=30)
    # The driver said so itself: SW power cap among the clock event reasons, drawing the limit.
    reasons, power, limit = con.execute(
        "SELECT bit_and(clocks_event_reasons), median(power_watts), max(power_limit_watts) FROM gpu"
        " WHERE time > ? AND time < ?",
        [start + timedelta(seconds=3), end - timedelta(seconds=1)],
    ).fetchall()[0]
    assert reasons & SW_POWER_CAP and power > 0.97 * limit


def test_the_real_idle_gpu_has_no_findings(tmp_path: Path) -> None:
    con = _store(tmp_path, "idle")
    assert detect(con, *WHOLE).to_pylist() == []


def test_the_real_lockstep_job_is_not_starved(tmp_path: Path) -> None:
    """Two ranks on the one GPU keep it busy (each waits while the other computes): no starvation,
    and the power cap as in the burn. One node has no peers, so no straggler can be named."""
    con = _store(tmp_path, "lockstep")
    kinds = {f["kind"] for f in detect(con, *WHOLE).to_pylist()}
    assert kinds == {"power_cap"}


def test_the_live_detector_steps_find_on_real_data_what_offline_finds(tmp_path: Path) -> None:
    con = _store(tmp_path, "idle", "burn", "starved", "lockstep")
    offline = detect(con, *WHOLE).to_pylist()
    first, last = con.execute("SELECT min(time), max(time) FROM gpu").fetchall()[0]
    end = first.replace(second=0, microsecond=0) + timedelta(seconds=10)  # on the steps' 10 s grid
    while end <= last + timedelta(seconds=60):
        step(con, end)
        end += timedelta(seconds=10)
    live = con.execute("SELECT kind, cause, start_time FROM events ORDER BY start_time").fetchall()
    assert sorted(live) == sorted((f["kind"], f["cause"], f["start_time"]) for f in offline)
    assert {k for k, _, _ in live} == {"power_cap", "data_starvation"}


def _smi_log() -> list[dict[str, float]]:
    """nvidia-smi's own readings of the card every 0.5 s over the same minutes, in the agent's units."""
    rows = []
    with (H200 / "smi-log.csv").open() as f:
        for raw in csv.DictReader(f, skipinitialspace=True):
            at = datetime.strptime(raw["timestamp"], "%Y/%m/%d %H:%M:%S.%f")
            rows.append({
                "time": at.timestamp(),
                "power": float(raw["power.draw [W]"].split()[0]),
                "sm": float(raw["clocks.current.sm [MHz]"].split()[0]) * 1e6,
                "temp": float(raw["temperature.gpu"]),
                "reasons": int(raw["clocks_event_reasons.active"], 16),
            })  # fmt: skip
    return rows


@pytest.mark.parametrize("name", ["idle", "burn", "starved", "lockstep"])
def test_the_agent_read_the_card_as_nvidia_smi_did(tmp_path: Path, name: str) -> None:
    """Each of the agent's seconds beside nvidia-smi's reading nearest to it (both every so often
    through the same minutes): temperature and clock-event reasons agree in steady seconds, power
    and SM clock within a few percent over each phase (both read the driver's moving averages at
    slightly different moments, so single seconds differ while the load changes)."""
    con = _store(tmp_path, name)
    ours = con.execute(
        "SELECT epoch(time), power_watts, sm_clock_hertz, temperature_celsius, clocks_event_reasons FROM gpu"
        " ORDER BY time"
    ).fetchall()
    smi = _smi_log()
    pairs = []
    for t, power, sm, temp, reasons in ours:
        near = min(smi, key=lambda r: abs(r["time"] - t))
        if abs(near["time"] - t) < 0.3:
            pairs.append(((power, sm, temp, reasons), near))
    assert len(pairs) > 0.8 * len(ours)
    assert statistics.median(abs(o[2] - s["temp"]) for o, s in pairs) <= 1
    assert statistics.median(o[3] == s["reasons"] for o, s in pairs) == 1
    ours_power = statistics.fmean(o[0] for o, _ in pairs)
    assert ours_power == pytest.approx(statistics.fmean(s["power"] for _, s in pairs), rel=0.05)
    ours_sm = statistics.fmean(o[1] for o, _ in pairs)
    assert ours_sm == pytest.approx(statistics.fmean(s["sm"] for _, s in pairs), rel=0.05)


def test_the_real_lockstep_period_is_read_off_the_cards_activity(tmp_path: Path) -> None:
    """The straggler detector reads each node's iteration period off its GPUs' SM activity (GPM on
    an H200), sampled once a second. The job's own log says 3.12 s an iteration (the slow rank's
    3.0 s of compute and the barrier); what the detector reads must be that, within 6 %, in
    every step it judges (3.12 s is near the 2.5 samples a period needs at 1 s)."""
    import numpy as np

    from ironsight.collector.detect.activity import node_series
    from ironsight.collector.detect.straggler import _periods
    from ironsight.collector.detect.thresholds import Thresholds

    logged = statistics.median(
        r["compute_s"] + r["sync_s"]
        for r in map(json.loads, (H200 / "lockstep.jsonl").read_text().splitlines())
        if r.get("rank") == 1
    )
    assert logged == pytest.approx(3.12, abs=0.02)
    con = _store(tmp_path, "lockstep")
    t = Thresholds()
    first, last = con.execute("SELECT min(time), max(time) FROM gpu").fetchall()[0]
    series = node_series(con, first, last, 0, t.active_memory_bytes, 0)
    assert series.nodes == ["h200"]
    step_ends = np.arange(series.first + 30, series.first + series.activity.shape[1], 10)
    read = _periods(series, step_ends, t).period[0]
    assert len(read) >= 2 and not np.isnan(read).any()
    assert np.abs(read / logged - 1).max() < 0.06


def test_the_real_workloads_processes_were_seen_on_the_gpu(tmp_path: Path) -> None:
    """Job discovery's looks (every 5 s) through NVML's process lists on the real card: each workload's
    processes, with the GPU memory each took (the lock-step ranks a 2 GiB ballast each, the starved
    loop 4 GiB and its model) and their SM share, which the burn drove highest."""
    con = _store(tmp_path, "burn", "starved", "lockstep")
    rows = con.execute(
        "SELECT time, pid, name, used_memory_bytes, sm_util_percent FROM gpu_processes ORDER BY time"
    ).fetchall()
    names = {name for _, _, name, _, _ in rows}
    assert names == {"python3"}
    ranks = [r for r in rows if _phases("lockstep")["lockstep"][0] - timedelta(seconds=15) <= r[0]]
    assert len({pid for _, pid, _, _, _ in ranks}) == 2  # both ranks on the one GPU
    assert all(mem > 2 * 2**30 for _, _, _, mem, _ in ranks)
    starved = _phases("starved")
    loop = [r for r in rows if starved["healthy"][0] <= r[0] <= starved["starved"][1]]
    assert max(mem for _, _, _, mem, _ in loop) > 4 * 2**30
    burn = [r for r in rows if _phases("burn")["burn"][0] <= r[0] <= _phases("burn")["burn"][1]]
    assert burn and max(sm for *_, sm in burn) > max(sm for *_, sm in ranks)


def test_no_lent_card_is_named_by_its_serial_in_the_recordings() -> None:
    """tools/import_gpu_session.py zeroes GPU serial numbers, as the shared captures mask theirs: a
    board's serial identifies the lender's hardware and nothing here needs it."""
    import re

    from ironsight.core.trace import read_all

    serials = []
    for trace in sorted(H200.glob("h200-*.trace")):
        header, batches = read_all(trace)
        nodes = [*header.nodes, *(b.node for b in batches if b.HasField("node"))]
        serials += [d.attrs["serial"] for n in nodes for d in n.devices if "serial" in d.attrs]
    assert serials and set(serials) == {"0" * len(serials[0])}
    for text in H200.glob("*.txt"):
        for found in re.findall(r"Serial Number\s+:\s+(\S+)", text.read_text()):
            assert found == "N/A" or set(found) == {"0"}, text.name


def _moved(con: duckdb.DuckDBPyConnection, column: str, phase: tuple[datetime, datetime]) -> int:
    """What a counter moved from the last sample before the phase to the first a second after it."""
    [(before,)] = con.execute(
        f"SELECT {column} FROM gpu WHERE time <= ? ORDER BY time DESC LIMIT 1", [phase[0]]
    ).fetchall()
    [(after,)] = con.execute(
        f"SELECT {column} FROM gpu WHERE time >= ? ORDER BY time LIMIT 1", [phase[1] + timedelta(seconds=1)]
    ).fetchall()
    return int(after) - int(before)


def test_the_real_pcie_counters_carry_the_bytes_a_copy_moved(tmp_path: Path) -> None:
    """A pinned 1 GiB buffer copied to the card for 10 s, then back for 10 s, at 55-60 GB/s
    (copy.jsonl): the agent's PCIe counters (GPM's rates times the seconds between samples on an
    H200, where NVML's own counters are 32-bit and wrap 14 times a second at this rate) moved by
    what was copied each way and the link's packet overhead on top (7-9 %, as tools/pcie_probe.py
    saw against the counters read every 10 ms); the other direction stayed near still while the
    GPU wrote to the host. No second wraps below zero, and none is far past what the link carries:
    single seconds read up to 10 % off their neighbours (66.0 GB after 52.1 GB, at 60 GB/s), as
    GPM's window and the sample's second differ, and the phase's sum has it right again."""
    from ironsight.collector.detect.sql import pcie_link_bytes_per_s

    phases = _phases("copy")
    copied = {
        r["phase"]: r["copied_bytes"] for r in map(json.loads, (H200 / "copy.jsonl").read_text().splitlines())
    }
    assert copied["h2d"] > 500e9 and copied["d2h"] > 500e9
    con = _store(tmp_path, "copy")
    assert 1.0 < _moved(con, "pcie_rx_bytes", phases["h2d"]) / copied["h2d"] < 1.12
    assert 1.0 < _moved(con, "pcie_tx_bytes", phases["d2h"]) / copied["d2h"] < 1.12
    assert _moved(con, "pcie_rx_bytes", phases["d2h"]) < 1e-3 * copied["d2h"]
    rates = con.execute(
        f"""SELECT max(greatest(rx, tx) / link), min(least(rx, tx)), max(greatest(rx, tx)) FROM (
            SELECT pcie_rx_bytes - lag(pcie_rx_bytes) OVER w AS rx, pcie_tx_bytes - lag(pcie_tx_bytes) OVER w AS tx,
                {pcie_link_bytes_per_s()} AS link FROM gpu WINDOW w AS (ORDER BY time))"""
    ).fetchall()[0]
    assert rates[0] < 1.15 and rates[1] >= 0
    assert rates[2] > 50e9  # a second's bytes past 2**32 eleven times over: no 32-bit counter shows that
