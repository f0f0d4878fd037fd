"""One live detector step over a large fleet: 1,000 nodes x 8 GPUs, 12 minutes stored at 1 s."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

NAME = "detect-step"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--step-nodes", type=int, default=1000, help="nodes of 8 GPUs")
    p.add_argument("--step-repeats", type=int, default=5, help="consecutive steps timed")
    p.add_argument(
        "--step-no-rhythm", action="store_true", help="power with no period anywhere: the worst case"
    )


def run(args: argparse.Namespace) -> dict[str, object]:
    """One live detector step over a large fleet: 1,000 nodes x 8 GPUs, 12 minutes stored at 1 s.

    The data is synthetic (SQL, not the simulator, which would take an hour for
    this fleet) but shaped like a training job: periodic utilization, counters
    that grow, one NIC and 16 cores and one NVMe per node, rows in time order as
    agents deliver them. Target: under 1 second a step (warm: the steps after the
    collector's first, which reads every window whole). --step-no-rhythm gives
    the worst case for the straggler detector: power with no period anywhere
    (an idle or inference fleet), so every window length is tried.
    """
    from datetime import datetime, timedelta

    from ironsight.collector.database import connect
    from ironsight.collector.detect.activity import Cache
    from ironsight.collector.detect.findings import DEFAULTS
    from ironsight.collector.detect.live import step
    from ironsight.collector.migrations import migrate

    nodes, gpus, seconds, cores = args.step_nodes, 8, 720, 16
    end = datetime(2026, 11, 1, 1, 0, 0)
    t0 = end - timedelta(seconds=seconds)
    with tempfile.TemporaryDirectory() as tmp:
        con = connect(Path(tmp) / "fleet.duckdb")
        migrate(con)
        grid = f"""SELECT s, n, TIMESTAMP '{t0}' + to_seconds(s) AS time, 'node-' || lpad(n::VARCHAR, 4, '0') AS node
                   FROM range({seconds}) r(s), range({nodes}) m(n)"""
        started = time.perf_counter()
        con.execute(
            f"""INSERT INTO gpu_hot BY NAME SELECT time, node, g::VARCHAR AS device,
                CASE WHEN ((s + n * 0.7) % 4) < 3.1 THEN 97 + random() * 3 ELSE 30 + random() * 10 END
                    AS util_gpu_percent,
                -- Power follows the compute/all-reduce rhythm, as it does on a real GPU: the
                -- straggler detector reads the period off it.
                CASE WHEN {args.step_no_rhythm} THEN 400 + random() * 250
                     WHEN ((s + n * 0.7) % 4) < 3.1 THEN 600 + random() * 50 ELSE 220 + random() * 30 END
                    AS power_watts,
                (40::BIGINT << 30) AS memory_used_bytes, 60 + random() * 5 AS temperature_celsius,
                87.0 AS temperature_slowdown_celsius, 1.98e9 AS sm_clock_hertz, 1.98e9 AS sm_clock_max_hertz,
                700.0 AS power_limit_watts, (80 * 2::BIGINT ** 30) AS memory_total_bytes, 0 AS clocks_event_reasons,
                5 AS pcie_link_gen, 16 AS pcie_link_width, (s * 2e9)::BIGINT AS pcie_rx_bytes,
                0.0 AS throttle_sw_power_seconds, 0.0 AS throttle_sw_thermal_seconds,
                0.0 AS throttle_hw_thermal_seconds, 0.0 AS throttle_hw_power_brake_seconds,
                0 AS pcie_replays, 0 AS ecc_dbe_volatile, 0 AS nvlink_crc_errors, 0 AS nvlink_replay_errors,
                0 AS nvlink_recovery_errors, 0 AS remapped_rows_uncorrectable, 0 AS remapped_rows_pending
            FROM ({grid}), range({gpus}) q(g) ORDER BY time, node, device"""
        )
        con.execute(
            f"""INSERT INTO rdma_hot BY NAME SELECT time, node, 'mlx5_0:1' AS device,
                (s * (2 + random())) ::BIGINT AS np_cnp_sent, (s * 2)::BIGINT AS rp_cnp_handled,
                (s * 3)::BIGINT AS np_ecn_marked_roce_packets, 0 AS out_of_sequence, 0 AS packet_seq_err,
                0 AS local_ack_timeout_err FROM ({grid}) ORDER BY time, node"""
        )
        con.execute(
            f"""INSERT INTO disk_hot BY NAME SELECT time, node, 'nvme0n1' AS device, s * 0.3 AS io_time_seconds
                FROM ({grid}) ORDER BY time, node"""
        )
        con.execute(
            f"""INSERT INTO cpu_hot BY NAME SELECT time, node, c::VARCHAR AS device, s * 0.5 AS user_seconds,
                0.0 AS nice_seconds, s * 0.05 AS system_seconds, s * 0.45 AS idle_seconds, 0.0 AS iowait_seconds,
                0.0 AS irq_seconds, 0.0 AS softirq_seconds, 0.0 AS steal_seconds
                FROM ({grid}), range({cores}) k(c) ORDER BY time, node, device"""
        )
        con.execute(
            f"""INSERT INTO pressure_hot BY NAME SELECT time, node, '' AS device, 0.0 AS io_full_seconds
                FROM ({grid}) ORDER BY time, node"""
        )
        # Ten jobs of 100 nodes, as the collector stores the agents' looks (on change only):
        # one at the start, and half way a tenth of the nodes change job.
        con.execute(
            f"""INSERT INTO gpu_jobs SELECT node, time, g::VARCHAR,
                    'job-' || ((n + (s > 0)::INT * 100) // 100 % 10)::VARCHAR, 'slurm', MAP {{'user': 'bench'}}
                FROM ({grid}), range({gpus}) q(g)
                WHERE s = 0 OR (s = {seconds // 2} AND n % 10 = 0) ORDER BY time, node"""
        )
        con.execute("CHECKPOINT")
        load_s = time.perf_counter() - started
        rows = sum(
            con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in ("gpu", "rdma", "disk", "cpu")
        )
        times = []
        cur = con.cursor()
        # As the collector's detector runs: consecutive steps, keeping what it may between them.
        # The first is cold (a collector just started), the rest warm.
        cache = Cache()
        for k in range(args.step_repeats + 1):
            result = step(
                cur, end - timedelta(seconds=DEFAULTS.step_s * (args.step_repeats - k)), cache=cache
            )
            times.append(result.seconds)
        con.close()
    cold = times.pop(0)
    times.sort()
    return {
        "nodes": nodes,
        "gpus_per_node": gpus,
        "stored_rows": rows,
        "load_seconds": load_s,
        "steps": len(times),
        "step_seconds_median": times[len(times) // 2],
        "step_seconds_max": times[-1],
        "cold_step_seconds": cold,
        "target_seconds": 1.0,
        "power_rhythm": not args.step_no_rhythm,
    }
