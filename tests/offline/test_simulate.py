"""The simulator's scenarios are coherent: each fault shows in the values where its label says, and only there."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from ironsight.core.columnar import to_arrow
from ironsight.offline.simulate import simulate
from ironsight.offline.simulate.hardware import H100
from ironsight.v1 import telemetry_pb2 as pb

pytestmark = pytest.mark.slow


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
    return header, con


def window(label: pb.TraceLabel) -> str:
    return (
        f"time >= make_timestamp({label.start_ns // 1000}) AND time < make_timestamp({label.end_ns // 1000})"
    )


def one(con: duckdb.DuckDBPyConnection, sql: str) -> float:
    return float(con.execute(sql).fetchall()[0][0])


def test_healthy_has_no_throttling_loss_or_starvation() -> None:
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
    # It trains: busy most of the time once the job starts, with idle GPUs before it and checkpoint dips.
    assert (
        one(
            con,
            "SELECT avg(util_gpu_percent) FROM gpu WHERE time >= make_timestamp(1793491200000000 + 120000000)",
        )
        > 60
    )
    assert (
        one(
            con,
            "SELECT max(util_gpu_percent) FROM gpu WHERE time < make_timestamp(1793491200000000 + 60000000)",
        )
        == 0
    )
    assert (
        one(con, "SELECT count(*) FROM gpu WHERE util_gpu_percent < 10 AND memory_used_bytes > 0") > 20
    )  # checkpoints


def test_power_and_temperature_follow_busy_time() -> None:
    _, con = run("healthy", nodes=1, gpus=1)
    corr = one(con, "SELECT corr(util_gpu_percent, power_watts) FROM gpu")
    assert corr > 0.99
    busy = one(con, "SELECT avg(power_watts) FROM gpu WHERE util_gpu_percent >= 99")
    assert busy == pytest.approx(H100.load_power_w, rel=0.03)
    idle = one(con, "SELECT avg(power_watts) FROM gpu WHERE util_gpu_percent = 0")
    assert idle == pytest.approx(H100.idle_power_w, rel=0.03)


@pytest.mark.parametrize(("scenario", "cause"), [("starved-storage", "storage"), ("starved-cpu", "cpu")])
def test_starvation_shows_with_its_cause(scenario: str, cause: str) -> None:
    header, con = run(scenario)
    labels = [lb for lb in header.labels if lb.kind == "data_starvation"]
    assert labels and {lb.cause for lb in labels} == {cause}
    node, w = labels[0].node, window(labels[0])
    inside = one(con, f"SELECT avg(util_gpu_percent) FROM gpu WHERE node = '{node}' AND {w}")
    outside = one(
        con,
        f"SELECT avg(util_gpu_percent) FROM gpu WHERE node = '{node}' AND NOT ({w}) AND util_gpu_percent > 5",
    )
    assert inside < 0.6 * outside
    io_busy = one(
        con,
        f"SELECT (max(io_time_seconds) - min(io_time_seconds)) / epoch(max(time) - min(time)) FROM disk WHERE node = '{node}' AND {w}",
    )
    loader = one(
        con,
        f"SELECT (max(user_seconds + system_seconds) - min(user_seconds + system_seconds)) / epoch(max(time) - min(time)) FROM cpu WHERE node = '{node}' AND device = '0' AND {w}",
    )
    if cause == "storage":
        assert io_busy > 0.95 and loader < 0.5
        assert (
            one(
                con,
                f"SELECT max(io_full_seconds) - min(io_full_seconds) FROM pressure WHERE node = '{node}' AND {w}",
            )
            > 10
        )
    else:
        assert io_busy < 0.5 and loader > 0.95


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
    busy_clock = (
        f"SELECT min(sm_clock_hertz) FROM gpu WHERE device = '{dev}' AND util_gpu_percent > 90 AND {w}"
    )
    assert one(con, busy_clock) < 0.9 * H100.sm_clock_max_mhz * 1e6
    # The fault worsens: the die crosses slowdown and hardware slowdown halves the clock.
    assert label.severity == "critical"
    assert one(con, f"SELECT max(throttle_hw_thermal_seconds) FROM gpu WHERE device = '{dev}' AND {w}") > 10
    hw = f"SELECT min(sm_clock_hertz) FROM gpu WHERE device = '{dev}' AND util_gpu_percent > 90 AND clocks_event_reasons & 64 > 0"
    assert one(con, hw) < 0.6 * H100.sm_clock_max_mhz * 1e6
    # Before the label, nothing throttled; the other GPU never does.
    assert (
        one(
            con,
            f"SELECT max(throttle_sw_thermal_seconds) FROM gpu WHERE device = '{dev}' AND time < make_timestamp({label.start_ns // 1000})",
        )
        == 0
    )
    other = "1" if dev == "0" else "0"
    assert one(con, f"SELECT max(throttle_sw_thermal_seconds) FROM gpu WHERE device = '{other}'") == 0


def test_power_cap_lowers_clocks_not_temperature() -> None:
    header, con = run("power-cap", nodes=1, gpus=2)
    label = next(lb for lb in header.labels if lb.kind == "power_cap")
    w = window(label)
    assert one(con, f"SELECT max(power_watts) FROM gpu WHERE {w}") <= 420.0
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


def test_network_jitter_is_congestion_and_loss_on_one_nic() -> None:
    header, con = run("network-jitter", nodes=3)
    [label] = [lb for lb in header.labels if lb.kind == "network_jitter"]
    assert label.device == "mlx5_0:1"
    w = window(label)

    def grew(col: str, node_cond: str) -> float:
        return one(
            con,
            f"SELECT sum(d) FROM (SELECT max({col}) - min({col}) AS d FROM rdma WHERE {node_cond} AND {w} GROUP BY node)",
        )

    assert (
        grew("np_cnp_sent", f"node = '{label.node}'")
        > 50 * grew("np_cnp_sent", f"node <> '{label.node}'") / 2
    )
    assert grew("out_of_sequence", f"node = '{label.node}'") > 100
    assert grew("out_of_sequence", f"node <> '{label.node}'") == 0
    assert (
        one(con, f"SELECT max(retrans_segs) - min(retrans_segs) FROM tcp WHERE node = '{label.node}' AND {w}")
        > 1000
    )


def test_xid_event_then_the_job_stalls_with_memory_held() -> None:
    header, con = run("xid", nodes=2)
    [label] = [lb for lb in header.labels if lb.kind == "xid"]
    assert con.execute("SELECT node, device, xid FROM gpu_xid").fetchall() == [(label.node, label.device, 79)]
    after = f"time > make_timestamp({label.start_ns // 1000} + 5000000)"
    assert one(con, f"SELECT max(util_gpu_percent) FROM gpu WHERE {after}") == 0
    assert one(con, f"SELECT min(memory_used_bytes) FROM gpu WHERE {after}") > 60 * 2**30


def test_straggler_is_slower_and_nothing_else() -> None:
    header, con = run("straggler", nodes=3, duration_s=1200)
    [label] = [lb for lb in header.labels if lb.kind == "straggler"]
    assert not [lb for lb in header.labels if lb.kind != "straggler"]
    # Its iteration period is longer: the autocorrelation of GPU busy time peaks at a longer lag.
    periods = {}
    for (node,) in con.execute("SELECT DISTINCT node FROM gpu").fetchall():
        util = np.array(
            [
                r[0]
                for r in con.execute(
                    f"SELECT util_gpu_percent FROM gpu WHERE node = '{node}' AND device = '0' AND {window(label)} ORDER BY time"
                ).fetchall()
            ]
        )
        util = util - util.mean()
        ac = [float(np.dot(util[:-lag], util[lag:])) for lag in range(1, 12)]
        periods[node] = 1 + int(np.argmax(ac[1:])) + 1  # lags 2..11 s
    assert periods[label.node] > max(p for n, p in periods.items() if n != label.node), periods
    assert one(con, "SELECT max(throttle_sw_power_seconds + throttle_sw_thermal_seconds) FROM gpu") == 0
    assert one(con, "SELECT max(out_of_sequence) FROM rdma") == 0


def test_mixed_has_its_faults_at_different_times(tmp_path: Path) -> None:
    header, _ = run("mixed", nodes=2)
    spans = sorted(
        (lb.start_ns, lb.end_ns, lb.kind) for lb in header.labels if lb.device in ("0", "mlx5_0:1")
    )
    kinds = [k for *_, k in spans]
    assert {"data_starvation", "network_jitter", "power_cap"} <= set(kinds)
    assert any(lb.kind == "thermal" for lb in header.labels)
