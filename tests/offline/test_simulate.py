"""The simulator behaves as real training jobs do, and each fault shows in the values where its label says."""

from __future__ import annotations

from functools import cache

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from ironsight.core.columnar import to_arrow
from ironsight.offline.simulate import job_plan, simulate
from ironsight.offline.simulate.hardware import A100, H100, H200
from ironsight.offline.simulate.job import (
    CHECKPOINT,
    EVAL,
    JOB_START_S,
    LOAD,
    TRAIN,
    WARMUP,
    draw_plan,
    phase,
)
from ironsight.v1 import telemetry_pb2 as pb

pytestmark = pytest.mark.slow
T0_US = 1793491200000000  # the simulator's default start, in microseconds


@cache
def run(
    scenario: str, nodes: int = 2, gpus: int = 2, duration_s: float = 900, seed: int = 4
) -> tuple[pb.TraceHeader, duckdb.DuckDBPyConnection]:
    header, batches = simulate(
        scenario, nodes=nodes, gpus=gpus, duration_s=duration_s, interval_s=1.0, seed=seed
    )
    parts: dict[str, list[pa.Table]] = {}
    for b in batches:
        for t in b.tables:
            parts.setdefault(t.name, []).append(to_arrow(b.node_id, t))
    con = duckdb.connect()
    for name, tables in parts.items():
        con.register(name, pa.concat_tables(tables))
    # Which phase the job was in at each tick, from the plan the simulator drew.
    plan = job_plan(scenario, nodes, gpus, duration_s, seed)
    ticks = np.arange(int(duration_s))
    con.register(
        "phases",
        pa.table({"sec": ticks, "phase": [phase(plan, float(t)) for t in ticks]}),
    )
    return header, con


def during(ph: int) -> str:
    """The ticks the job spent in phase ph (whole seconds), for a WHERE clause."""
    return f"(epoch(time) - {T0_US // 10**6})::BIGINT IN (SELECT sec FROM phases WHERE phase = {ph})"


def window(label: pb.TraceLabel) -> str:
    return (
        f"time >= make_timestamp({label.start_ns // 1000}) AND time < make_timestamp({label.end_ns // 1000})"
    )


def at(lo: float, hi: float) -> str:
    return f"time >= make_timestamp({T0_US} + {int(lo * 1e6)}) AND time < make_timestamp({T0_US} + {int(hi * 1e6)})"


def one(con: duckdb.DuckDBPyConnection, sql: str) -> float:
    return float(con.execute(sql).fetchall()[0][0])


def test_healthy_job_has_no_throttling_loss_or_labels() -> None:
    header, con = run("healthy")
    assert list(header.labels) == []
    assert (
        one(
            con,
            "SELECT max(throttle_sw_power_seconds + throttle_sw_thermal_seconds + throttle_hw_thermal_seconds) FROM gpu",
        )
        == 0
    )
    assert one(con, "SELECT max(temperature_celsius) FROM gpu") < H100.slowdown_c - 15
    assert one(con, "SELECT max(out_of_sequence + packet_seq_err + local_ack_timeout_err) FROM rdma") == 0
    assert one(con, f"SELECT max(util_gpu_percent) FROM gpu WHERE {at(0, JOB_START_S)}") == 0


def test_phases_follow_the_plan_and_stay_inside_the_run() -> None:
    rng = np.random.default_rng(1)
    plan = draw_plan(rng, 1800, "lockstep")
    seen = {phase(plan, float(t)) for t in range(1800)}
    assert {LOAD, WARMUP, TRAIN, CHECKPOINT, EVAL} <= seen
    assert phase(plan, plan.train_start_s + plan.checkpoint_every_s - 1) == CHECKPOINT
    assert 3.0 <= plan.period_s <= 14.0 and 30 <= plan.checkpoint_s <= 60 and 60 <= plan.eval_s <= 150
    short = draw_plan(np.random.default_rng(1), 300, "loose")
    assert short.train_start_s < 150 and short.release_s < 300


def test_warm_up_fills_memory_then_runs_erratic_kernels() -> None:
    _, con = run("healthy")
    # Memory fills from nearly nothing while the resume checkpoint is read at the disk's ceiling.
    filling = one(
        con,
        f"SELECT max(memory_used_bytes) - min(memory_used_bytes) FROM gpu WHERE device = '0' AND node = 'sim-000' AND {during(LOAD)}",
    )
    assert filling > 10 * 2**30
    assert one(con, f"SELECT max(util_gpu_percent) FROM gpu WHERE {during(LOAD)}") == 0
    read = one(
        con,
        f"SELECT (max(read_bytes) - min(read_bytes)) / epoch(max(time) - min(time)) FROM disk WHERE node = 'sim-000' AND {during(LOAD)}",
    )
    assert read > 2.5e9
    # Then compilation and autotuning: utilization all over the place, memory full.
    assert one(con, f"SELECT stddev(util_gpu_percent) FROM gpu WHERE {during(WARMUP)}") > 15
    assert one(con, f"SELECT min(memory_used_bytes) FROM gpu WHERE {during(WARMUP)}") > 60 * 2**30


def test_lock_step_training_is_busy_to_nvml_while_waiting_at_the_barrier() -> None:
    _, con = run("healthy")
    steady = during(TRAIN)
    # NCCL's kernels count as busy: NVML utilization stays near 100 % through the all-reduce...
    assert one(con, f"SELECT avg(util_gpu_percent) FROM gpu WHERE {steady}") > 95
    # ...while SM activity and power show the compute/communication rhythm.
    sm = one(con, f"SELECT stddev(gpm_sm_active_ratio) FROM gpu WHERE {steady} AND util_gpu_percent > 95")
    assert sm > 0.05
    assert one(con, f"SELECT corr(gpm_sm_active_ratio, power_watts) FROM gpu WHERE {steady}") > 0.95
    # Every node in step: node 0's and node 1's activity move together.
    c = one(
        con,
        f"""SELECT corr(a.gpm_sm_active_ratio, b.gpm_sm_active_ratio) FROM gpu a JOIN gpu b USING (time, device)
                     WHERE a.node = 'sim-000' AND b.node = 'sim-001' AND {steady}""",
    )
    assert c > 0.8


def test_checkpoint_idles_every_gpu_together_while_the_disks_write() -> None:
    _, con = run("healthy", duration_s=1800)
    idle = con.execute(
        "SELECT time FROM gpu WHERE memory_used_bytes > 0 GROUP BY time HAVING max(util_gpu_percent) <= 2 ORDER BY time"
    ).fetchall()
    assert len(idle) >= 30  # a checkpoint save: 30-60 s with every GPU of every node idle
    t = idle[len(idle) // 2][0]
    wrote = one(
        con,
        f"SELECT (max(written_bytes) - min(written_bytes)) / 10 FROM disk WHERE node = 'sim-000' AND time BETWEEN TIMESTAMP '{t}' - INTERVAL 5 SECOND AND TIMESTAMP '{t}' + INTERVAL 5 SECOND",
    )
    assert wrote > 2e9


def test_evaluation_runs_lower_without_the_all_reduce() -> None:
    _, con = run("healthy", duration_s=1800)

    def per_gpu(sql: str, ph: int) -> float:
        return one(
            con, f"SELECT avg(v) FROM (SELECT {sql} AS v FROM gpu WHERE {during(ph)} GROUP BY node, device)"
        )

    # An evaluation pass: minutes at lower utilization on every node, and no all-reduce (no NVLink traffic).
    assert one(con, f"SELECT count(DISTINCT time) FROM gpu WHERE {during(EVAL)}") >= 60
    assert 55 < per_gpu("avg(util_gpu_percent)", EVAL) < 80 < per_gpu("avg(util_gpu_percent)", TRAIN)
    # NVLink bytes a second, from each GPU's per-tick increments in the phase (passes are apart).
    rate = "sum(inc) / count(inc)"
    increments = (
        "(SELECT node, device, time, nvlink_tx_bytes - lag(nvlink_tx_bytes) OVER "
        "(PARTITION BY node, device ORDER BY time) AS inc FROM gpu)"
    )

    def nvlink(ph: int) -> float:
        return one(
            con,
            f"SELECT avg(v) FROM (SELECT {rate} AS v FROM {increments} WHERE {during(ph)} GROUP BY node, device)",
        )

    assert nvlink(EVAL) < 0.2 * nvlink(TRAIN)


def test_each_rank_spins_one_core_and_the_rest_are_mostly_idle() -> None:
    _, con = run("healthy", gpus=2)
    busy = con.execute(
        f"""SELECT device::INT AS core, (max(user_seconds + system_seconds) - min(user_seconds + system_seconds)) / 100 AS busy
            FROM cpu WHERE node = 'sim-000' AND {at(400, 500)} GROUP BY ALL ORDER BY core"""
    ).fetchall()
    assert len(busy) == 16  # eight cores a GPU
    assert [round(b, 1) for _, b in busy[:2]] == [1.0, 1.0]  # the ranks' cores: pegged, healthy
    assert np.mean([b for _, b in busy]) < 0.45
    assert one(con, f"SELECT max(procs_running) FROM load WHERE {at(400, 500)}") < 16


def test_job_end_frees_memory() -> None:
    _, con = run("healthy", duration_s=900)
    assert one(con, f"SELECT max(util_gpu_percent) FROM gpu WHERE {at(900 - 20, 900)}") == 0
    assert one(con, f"SELECT max(memory_used_bytes) FROM gpu WHERE {at(900 - 10, 900)}") == 0
    assert one(con, f"SELECT min(memory_used_bytes) FROM gpu WHERE {at(900 - 40, 900 - 30)}") > 60 * 2**30


def test_one_roce_port_per_gpu() -> None:
    header, con = run("healthy", gpus=2)
    assert sorted(d.name for d in header.nodes[0].devices if d.kind == "rdma") == ["mlx5_0:1", "mlx5_1:1"]
    assert [r[0] for r in con.execute("SELECT DISTINCT device FROM rdma ORDER BY 1").fetchall()] == [
        "mlx5_0:1",
        "mlx5_1:1",
    ]


def test_mixed_fleet_has_a100_without_gpm_beside_h200() -> None:
    header, con = run("healthy-mixed", nodes=2)
    models = {n.node_id: {d.attrs["model"] for d in n.devices if d.kind == "gpu"} for n in header.nodes}
    assert models == {"sim-000": {A100.model}, "sim-001": {H200.model}}
    gpm = dict(con.execute("SELECT node, count(gpm_sm_active_ratio) FROM gpu GROUP BY node").fetchall())
    assert gpm["sim-000"] == 0 and gpm["sim-001"] > 0
    assert one(con, "SELECT max(power_limit_watts) FROM gpu WHERE node = 'sim-000'") == A100.power_limit_w
    # Loosely coupled: the slower A100 nodes take longer iterations (less SM-bound work a second).
    a100 = one(
        con,
        f"SELECT avg(power_watts) / {A100.load_power_w} FROM gpu WHERE node = 'sim-000' AND {at(300, 500)}",
    )
    assert 0.5 < a100 <= 1.0


@pytest.mark.parametrize(("scenario", "cause"), [("starved-storage", "storage"), ("starved-cpu", "cpu")])
def test_starvation_shows_with_its_cause(scenario: str, cause: str) -> None:
    header, con = run(scenario)
    labels = [lb for lb in header.labels if lb.kind == "data_starvation"]
    assert labels and {lb.cause for lb in labels} == {cause}
    node, w = labels[0].node, window(labels[0])
    inside = one(
        con, f"SELECT avg(util_gpu_percent) FROM gpu WHERE node = '{node}' AND {w} AND {during(TRAIN)}"
    )
    peers = one(
        con, f"SELECT avg(util_gpu_percent) FROM gpu WHERE node <> '{node}' AND {w} AND {during(TRAIN)}"
    )
    assert inside < 0.7 * peers
    io_busy = one(
        con,
        f"SELECT (max(io_time_seconds) - min(io_time_seconds)) / epoch(max(time) - min(time)) FROM disk WHERE node = '{node}' AND {w}",
    )
    cores_busy = one(
        con,
        f"""SELECT sum(b) / sum(s) FROM (SELECT max(user_seconds + system_seconds + softirq_seconds) - min(user_seconds + system_seconds + softirq_seconds) AS b,
                                  epoch(max(time) - min(time)) AS s FROM cpu WHERE node = '{node}' AND {w} GROUP BY device)""",
    )
    cpu_some = one(
        con,
        f"SELECT (max(cpu_some_seconds) - min(cpu_some_seconds)) / epoch(max(time) - min(time)) FROM pressure WHERE node = '{node}' AND {w}",
    )
    if cause == "storage":
        assert io_busy > 0.95 and cores_busy < 0.5 and cpu_some < 0.1
        assert (
            one(
                con,
                f"SELECT max(io_full_seconds) - min(io_full_seconds) FROM pressure WHERE node = '{node}' AND {w}",
            )
            > 10
        )
    else:
        assert io_busy < 0.5 and cores_busy > 0.95 and cpu_some > 0.5
        assert one(con, f"SELECT min(procs_running) FROM load WHERE node = '{node}' AND {w}") > 16


def test_h2d_starvation_degrades_one_link_and_saturates_it() -> None:
    header, con = run("starved-h2d")
    [label] = [lb for lb in header.labels if lb.kind == "data_starvation"]
    assert label.cause == "host_to_device"
    w, dev = window(label), label.device
    assert con.execute(
        f"SELECT DISTINCT pcie_link_gen, pcie_link_width FROM gpu WHERE node = '{label.node}' AND device = '{dev}' AND {w}"
    ).fetchall() == [(1, 1)]
    rx = one(
        con,
        f"SELECT (max(pcie_rx_bytes) - min(pcie_rx_bytes)) / epoch(max(time) - min(time)) FROM gpu WHERE node = '{label.node}' AND device = '{dev}' AND {w}",
    )
    assert 0.8 * 0.25e9 < rx <= 0.25e9  # gen 1 x1: 250 MB/s, and the transfers fill it
    assert (
        one(con, f"SELECT max(pcie_link_width) FROM gpu WHERE node = '{label.node}' AND device <> '{dev}'")
        == 16
    )


def test_thermal_climbs_to_slowdown_then_throttles() -> None:
    header, con = run("thermal", nodes=1, gpus=2, duration_s=1200)
    [label] = [lb for lb in header.labels if lb.kind == "thermal"]
    dev, w = label.device, window(label)
    assert (
        one(con, f"SELECT max(temperature_celsius) FROM gpu WHERE device = '{dev}' AND {w}")
        >= H100.slowdown_c - 3
    )
    assert (
        one(
            con,
            f"SELECT max(throttle_sw_thermal_seconds) - min(throttle_sw_thermal_seconds) FROM gpu WHERE device = '{dev}' AND {w}",
        )
        > 30
    )
    assert label.severity == "critical"
    assert one(con, f"SELECT max(throttle_hw_thermal_seconds) FROM gpu WHERE device = '{dev}' AND {w}") > 10
    hw = f"SELECT min(sm_clock_hertz) FROM gpu WHERE device = '{dev}' AND util_gpu_percent > 90 AND clocks_event_reasons & 64 > 0"
    assert one(con, hw) < 0.6 * H100.sm_clock_max_mhz * 1e6
    before = f"time < make_timestamp({label.start_ns // 1000})"
    assert (
        one(con, f"SELECT max(throttle_sw_thermal_seconds) FROM gpu WHERE device = '{dev}' AND {before}") == 0
    )
    other = "1" if dev == "0" else "0"
    assert one(con, f"SELECT max(throttle_sw_thermal_seconds) FROM gpu WHERE device = '{other}'") == 0


def test_power_cap_lowers_clocks_not_temperature() -> None:
    header, con = run("power-cap", nodes=1, gpus=2)
    label = next(lb for lb in header.labels if lb.kind == "power_cap")
    w = window(label)
    assert one(con, f"SELECT max(power_watts) FROM gpu WHERE {w}") <= 0.6 * H100.power_limit_w
    assert (
        one(
            con,
            f"SELECT max(throttle_sw_power_seconds) - min(throttle_sw_power_seconds) FROM gpu WHERE device = '{label.device}' AND {w}",
        )
        > 60
    )
    assert (
        one(con, f"SELECT min(sm_clock_hertz) FROM gpu WHERE util_gpu_percent > 90 AND {w}")
        < 0.9 * H100.sm_clock_max_mhz * 1e6
    )
    assert one(con, f"SELECT max(temperature_celsius) FROM gpu WHERE {w}") < 60
    assert one(con, "SELECT max(throttle_sw_thermal_seconds) FROM gpu") == 0


def _grew(con: duckdb.DuckDBPyConnection, col: str, cond: str) -> float:
    return one(
        con,
        f"SELECT sum(d) FROM (SELECT max({col}) - min({col}) AS d FROM rdma WHERE {cond} GROUP BY node, device)",
    )


def test_congestion_on_one_rail_port_and_nowhere_else() -> None:
    header, con = run("network-jitter", nodes=3)
    [label] = [lb for lb in header.labels if lb.kind == "network_jitter"]
    w, port = window(label), f"node = '{label.node}' AND device = '{label.device}'"
    per_port = _grew(con, "np_cnp_sent", f"{port} AND {w}") / ((label.end_ns - label.start_ns) / 1e9)
    assert per_port > 1000  # thousands a second
    others = _grew(con, "np_cnp_sent", f"NOT ({port}) AND {w}") / 5 / ((label.end_ns - label.start_ns) / 1e9)
    assert others < 10
    assert _grew(con, "out_of_sequence", "TRUE") == 0


def test_rail_fault_is_loss_in_bursts_on_one_port_and_slows_the_job() -> None:
    header, con = run("rail-fault", nodes=3, duration_s=1800)
    [label] = [lb for lb in header.labels if lb.kind == "network_jitter"]
    port = f"node = '{label.node}' AND device = '{label.device}'"
    assert _grew(con, "out_of_sequence", f"{port} AND {window(label)}") > 100
    assert _grew(con, "out_of_sequence", f"NOT ({port})") == 0
    # Bursts, not a steady stream: most seconds of the fault grow no loss at all.
    growth = [
        r[0]
        for r in con.execute(
            f"SELECT out_of_sequence - lag(out_of_sequence) OVER (ORDER BY time) FROM rdma WHERE {port} AND {window(label)}"
        ).fetchall()
    ]
    assert sum(1 for g in growth if g == 0) > 0.6 * len(growth)
    # The all-reduce slows for everyone: every node's NVLink traffic a second falls in the fault.
    bytes_in = one(
        con,
        f"SELECT (max(nvlink_tx_bytes) - min(nvlink_tx_bytes)) / epoch(max(time) - min(time)) FROM gpu WHERE node <> '{label.node}' AND device = '0' AND {window(label)}",
    )
    assert bytes_in > 0


def _period(con: duckdb.DuckDBPyConnection, node: str, where: str) -> int:
    """Lag (s) of the first autocorrelation peak of a node's power: its iteration period."""
    x = np.array(
        [
            r[0]
            for r in con.execute(
                f"SELECT avg(power_watts) FROM gpu WHERE node = '{node}' AND {where} GROUP BY time ORDER BY time"
            ).fetchall()
        ]
    )
    x = x - x.mean()
    ac = np.array([float(np.dot(x[:-lag], x[lag:])) for lag in range(1, 40)])
    peaks = [
        i + 1
        for i in range(1, len(ac) - 1)
        if ac[i] >= ac[i - 1] and ac[i] > ac[i + 1] and ac[i] > 0.3 * ac[0]
    ]
    return peaks[0] + 1


def test_loose_straggler_iterates_slower_and_nothing_else() -> None:
    header, con = run("straggler", nodes=3, duration_s=1200)
    [label] = [lb for lb in header.labels if lb.kind == "straggler"]
    assert not [lb for lb in header.labels if lb.kind != "straggler"]
    w = window(label)
    slow = _period(con, label.node, w)
    peers = [_period(con, n, w) for n in ("sim-000", "sim-001", "sim-002") if n != label.node]
    assert slow > max(peers), (slow, peers)
    assert one(con, "SELECT max(throttle_sw_power_seconds + throttle_sw_thermal_seconds) FROM gpu") == 0


def test_lock_step_straggler_keeps_everyone_on_its_pace_and_its_peers_waiting() -> None:
    header, con = run("lockstep-straggler", nodes=3, duration_s=1200)
    [label] = [lb for lb in header.labels if lb.kind == "straggler"]
    w = window(label)
    act = dict(
        con.execute(
            f"SELECT node, avg(gpm_sm_active_ratio) FROM gpu WHERE {w} AND util_gpu_percent > 90 GROUP BY node"
        ).fetchall()
    )
    util = dict(
        con.execute(
            f"SELECT node, avg(util_gpu_percent) FROM gpu WHERE {w} AND util_gpu_percent > 90 GROUP BY node"
        ).fetchall()
    )
    peers = [n for n in act if n != label.node]
    # All busy to NVML, one period for all; the slow node's SMs busier, its peers' idler (at the barrier).
    assert min(util.values()) > 95
    assert all(act[label.node] > 1.08 * act[p] for p in peers), act
    assert len({_period(con, n, w) for n in act}) == 1


def test_xid_event_then_the_job_stalls_with_memory_held() -> None:
    header, con = run("xid", nodes=2)
    [label] = [lb for lb in header.labels if lb.kind == "xid"]
    assert con.execute("SELECT node, device, xid FROM gpu_xid").fetchall() == [(label.node, label.device, 79)]
    after = f"time > make_timestamp({label.start_ns // 1000} + 5000000) AND time < make_timestamp({T0_US} + 850000000)"
    assert one(con, f"SELECT max(util_gpu_percent) FROM gpu WHERE {after}") == 0
    assert one(con, f"SELECT min(memory_used_bytes) FROM gpu WHERE {after}") > 60 * 2**30


def test_mixed_has_its_faults_at_different_times() -> None:
    header, _ = run("mixed", nodes=2)
    first: dict[str, int] = {}
    for lb in header.labels:
        first[lb.kind] = min(first.get(lb.kind, lb.start_ns), lb.start_ns)
    assert {"data_starvation", "network_jitter", "power_cap", "thermal"} <= set(first)
    order = sorted(first, key=first.__getitem__)
    assert order == ["data_starvation", "thermal", "network_jitter", "power_cap"]
