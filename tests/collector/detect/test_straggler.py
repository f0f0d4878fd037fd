"""The straggler detector: iteration periods from utilization, peers compared, pauses held, aliasing refused."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pytest

from ironsight.collector.detect.findings import detect
from ironsight.collector.detect.straggler import Periods, judge, periods
from ironsight.collector.detect.thresholds import Thresholds
from ironsight.collector.store import Store
from ironsight.core.columnar import TableBuilder
from ironsight.v1 import telemetry_pb2 as pb

from support.traces import WHOLE, overlaps, own, simulated

T = Thresholds()


def square(period_s: float, seconds: int, interval_s: float = 1.0, phase: float = 0.0) -> np.ndarray:
    """Mean utilization of each sampling interval: compute at 100 % for 78 % of a step, then 25 %."""
    fine = np.arange(0, seconds, 0.01) + phase
    busy = np.where((fine / period_s) % 1.0 < 0.78, 100.0, 25.0)
    per = round(interval_s / 0.01)
    return busy[: len(busy) // per * per].reshape(-1, per).mean(axis=1)


def store(tmp_path: Path, series: list[np.ndarray], interval_s: float = 1.0) -> duckdb.DuckDBPyConnection:
    """One GPU per node (holding memory) whose utilization follows the node's series (NaN: idle, no memory held)."""
    s = Store(tmp_path / "jobs.duckdb")
    t0 = int(time.time()) // 60 * 60 * 10**9 - 3600 * 10**9
    batches = []
    for n, values in enumerate(series):
        b = TableBuilder("gpu")
        for i, u in enumerate(values):
            b.add(
                t0 + round(i * interval_s * 1e9),
                "0",
                {"util_gpu_percent": 0.0, "memory_used_bytes": 0}
                if np.isnan(u)
                else {"util_gpu_percent": float(u), "memory_used_bytes": 40 << 30},
            )
        batch = pb.Batch(node_id=f"n{n}", boot_id="b", seq=1, interval_s=interval_s)
        batch.tables.append(b.to_proto())
        batches.append(batch)
    s.ingest(batches)
    s.close()
    return duckdb.connect(str(tmp_path / "jobs.duckdb"))


def stragglers(con: duckdb.DuckDBPyConnection) -> list[dict[str, object]]:
    now = datetime.now(UTC).replace(tzinfo=None)
    return [f for f in detect(con, now - timedelta(hours=3), now).to_pylist() if f["kind"] == "straggler"]


@pytest.mark.parametrize("period_s", [3.0, 4.0, 5.2, 7.5])
def test_period_is_read_off_the_utilization(period_s: float) -> None:
    x = square(period_s, T.straggler_window_s, phase=1.3)[None, :]
    p = periods(x, np.ones_like(x), T)
    assert p.period[0] == pytest.approx(period_s, rel=0.04)
    assert p.strength[0] > 0.6


def test_flat_noise_and_too_coarse_sampling_have_no_period() -> None:
    rng = np.random.default_rng(5)
    w = T.straggler_window_s
    flat = np.full((1, w), 97.0)
    noise = rng.uniform(0, 100, (1, w))
    assert np.isnan(periods(flat, np.ones_like(flat), T).period[0])
    assert np.isnan(periods(noise, np.ones_like(noise), T).period[0])
    # Sampled every 2 s a 4 s step sits at Nyquist: a slow node could alias fast. Not judged.
    coarse = np.full((1, w), np.nan)
    coarse[0, ::2] = square(4.0, w, interval_s=2.0)
    counts = (~np.isnan(coarse)).astype(float)
    assert np.isnan(periods(coarse, counts, T).period[0])
    # Every 2 s resolves a 9 s step, given a window long enough for a few of them.
    long = Thresholds(straggler_window_s=60)
    slow = np.full((1, 60), np.nan)
    slow[0, ::2] = square(9.0, 60, interval_s=2.0)
    assert periods(slow, (~np.isnan(slow)).astype(float), long).period[0] == pytest.approx(9.0, rel=0.05)


def verdict(node_periods: list[float]) -> tuple[list[bool], np.ndarray]:
    p = np.array(node_periods)[:, None]
    slow, _, slower, _ = judge(Periods(p, np.ones_like(p), np.full_like(p, 24)), T)
    return slow[:, 0].tolist(), slower[:, 0]


def test_slower_fraction_boundary_is_10_percent() -> None:
    slow, slower = verdict([4.0, 4.0, 4.0 * 1.099])
    assert slow == [False, False, False] and slower[2] == pytest.approx(0.099)
    slow, slower = verdict([4.0, 4.0, 4.0 * 1.101])
    assert slow == [False, False, True] and slower[2] == pytest.approx(0.101)
    # Two nodes: each against the other; only the slower one is the straggler.
    assert verdict([4.0, 4.6])[0] == [False, True]
    # A faster node is not a straggler however far it is from the others.
    assert verdict([4.0, 4.0, 2.0])[0] == [False, False, False]


def test_with_many_peers_a_noisy_job_needs_a_robust_outlier() -> None:
    spread = [4.0, 4.1, 4.2, 4.3, 4.4, 4.5, 4.6, 4.7]
    # 4.95 is 13 % over its peers' median (4.35) but only ~2.2 MADs: the job's own spread.
    assert verdict([*spread, 4.95])[0][-1] is False
    assert verdict([*spread, 6.0])[0][-1] is True
    tight = [4.0] * 8
    assert verdict([*tight, 4.5])[0][-1] is True  # zero spread: the 2 % floor, z = 6


def test_slow_node_found_against_its_peers(tmp_path: Path) -> None:
    minutes = 10
    peers = [square(4.0, 60 * minutes, phase=k) for k in (0.0, 1.1, 2.3)]
    slow = np.concatenate([square(4.0, 120, phase=0.5), square(4.6, 60 * minutes - 120, phase=0.5)])
    con = store(tmp_path, [*peers, slow])
    found = stragglers(con)
    assert [(f["node"], f["device"], f["cause"]) for f in found] == [("n3", "", "slow_iterations")]
    peak = json.loads(str(found[0]["evidence"]))["peak"]
    assert peak["iteration_period_s"] == pytest.approx(4.6, rel=0.03)
    assert peak["peers_median_period_s"] == pytest.approx(4.0, rel=0.02)
    # The data's own start (the clock read again here could have passed a minute since store()).
    t0 = con.execute("SELECT epoch(min(time))::BIGINT FROM gpu").fetchall()[0][0]
    start = found[0]["start_time"]
    assert isinstance(start, datetime)
    # Found within two 10 s steps of the change at 120 s.
    assert 110 <= (start - datetime(1970, 1, 1)).total_seconds() - t0 <= 140


def test_just_under_the_bar_is_not_a_straggler(tmp_path: Path) -> None:
    peers = [square(4.0, 600, phase=k) for k in (0.0, 1.1, 2.3)]
    assert stragglers(store(tmp_path, [*peers, square(4.2, 600, phase=0.4)])) == []  # 5 % slower


def test_a_job_wide_pause_does_not_split_the_finding(tmp_path: Path) -> None:
    def with_pause(period: float, phase: float) -> np.ndarray:
        x = square(period, 600, phase=phase)
        x[300:330] = 3.0  # a 30 s checkpoint on every node
        return x

    peers = [with_pause(4.0, k) for k in (0.0, 1.1, 2.3)]
    found = stragglers(store(tmp_path, [*peers, with_pause(5.0, 0.4)]))
    assert len(found) == 1 and found[0]["node"] == "n3"
    evidence = json.loads(str(found[0]["evidence"]))
    assert evidence["steps"] >= 50  # it spans the pause


@pytest.mark.slow
@pytest.mark.parametrize("seed", [515, 616])
def test_simulated_straggler_is_one_finding_on_the_labelled_node(tmp_path: Path, seed: int) -> None:
    header, con = simulated(tmp_path, "straggler", seed, nodes=3)
    [label] = [lb for lb in header.labels if lb.kind == "straggler"]
    found = [f for f in detect(con, *WHOLE).to_pylist() if f["kind"] == "straggler"]
    assert [(f["node"], f["device"]) for f in found] == [(label.node, "")]
    assert overlaps(found[0], label)


def owned_by(con: duckdb.DuckDBPyConnection, jobs: Mapping[str, str | None]) -> None:
    """Each node's GPU 0 in a job (None: the node reports, and its GPU has none) throughout."""
    own(con, jobs)


def test_nodes_are_compared_with_their_own_jobs_nodes_only(tmp_path: Path) -> None:
    fast = [square(4.0, 600, phase=k) for k in (0.0, 0.7, 1.4, 2.1, 2.8)]  # job A: 4 s steps
    slow = [square(6.0, 600, phase=k) for k in (0.3, 1.9)]  # job B: 6 s steps, both alike
    con = store(tmp_path, [*fast, *slow])
    assert {f["node"] for f in stragglers(con)} == {"n5", "n6"}  # one job: B's nodes look 50 % slower
    owned_by(con, {f"n{i}": "A" for i in range(5)} | {"n5": "B", "n6": "B"})
    assert stragglers(con) == []


def test_a_straggler_inside_a_job_and_a_node_with_no_job(tmp_path: Path) -> None:
    series = [square(4.0, 600, phase=k) for k in (0.0, 0.7, 1.4, 2.1)] + [square(4.6, 600, phase=0.5)]
    series += [square(6.0, 600, phase=0.2)]  # n5: a node whose GPU no job owns (an idle node's leftover)
    con = store(tmp_path, series)
    owned_by(con, {f"n{i}": "A" for i in range(5)} | {"n5": None})
    found = stragglers(con)
    assert [f["node"] for f in found] == ["n4"]
    assert json.loads(str(found[0]["evidence"]))["peak"]["peers_median_period_s"] == pytest.approx(
        4.0, rel=0.02
    )


def test_a_job_ending_and_another_starting_on_the_same_nodes(tmp_path: Path) -> None:
    """Job A (4 s steps, n3 15 % slower) for 5 minutes, a minute idle, then job B (6 s steps, all
    alike) on the same nodes: one straggler finding, n3's in job A, over by A's end."""
    idle = np.full(60, np.nan)
    series = [
        np.concatenate(
            [square(4.6 if n == 3 else 4.0, 300, phase=0.6 * n), idle, square(6.0, 300, phase=0.9 * n)]
        )
        for n in range(4)
    ]
    con = store(tmp_path, series)
    t0 = con.execute("SELECT min(time) FROM gpu").fetchall()[0][0]
    for at, job in ((0, "A"), (300, None), (360, "B")):
        for n in range(4):
            con.execute(
                "INSERT INTO gpu_jobs VALUES (?, ?, '0', ?, 'slurm', NULL)",
                [f"n{n}", t0 + timedelta(seconds=at), job],
            )
    found = stragglers(con)
    assert [(f["node"], f["job"]) for f in found] == [("n3", "A")]
    end = found[0]["end_time"]
    assert isinstance(end, datetime) and end <= t0 + timedelta(seconds=310)
