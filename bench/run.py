"""Benchmarks, each side by side with a peer or a stated target; prints a table and writes bench/out/*.json.

    .venv/bin/python bench/run.py                  # all three
    .venv/bin/python bench/run.py agent-vs-node-exporter
    .venv/bin/python bench/run.py agent-overhead --seconds 60
    .venv/bin/python bench/run.py agent-vs-node-exporter --tree big   # a 192-cpu node's files
    .venv/bin/python bench/run.py ingest --streams 8
    .venv/bin/python bench/run.py replay --replay-nodes 8
    .venv/bin/python bench/run.py replay --replay-batch-seconds 1 --replay-seconds 300
    .venv/bin/python bench/run.py accuracy --accuracy-seeds 9301 9302
    .venv/bin/python bench/run.py detect --detect-nodes 16
    .venv/bin/python bench/run.py detect-step --step-nodes 1000
    .venv/bin/python bench/run.py scrape --rounds 200
    .venv/bin/python bench/run.py remote-write --rw-nodes 8

agent-vs-node-exporter needs Debian's prometheus-node-exporter
(apt-get install prometheus-node-exporter). Nothing here is a test: figures
depend on the machine; the README's performance table says where they came from.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))

TICKS = os.sysconf("SC_CLK_TCK")

# node_exporter collectors that read what our host samplers read.
NODE_EXPORTER_COLLECTORS = [
    "cpu",
    "cpufreq",
    "stat",
    "loadavg",
    "meminfo",
    "meminfo_numa",
    "pressure",
    "diskstats",
    "nvme",
    "netdev",
    "netclass",
    "netstat",
    "infiniband",
    "hwmon",
    "thermal_zone",
]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(port)


def start_collector(db: str, extra: list[str] | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """A real collector on a free loopback port, listening when this returns."""
    port = free_port()
    proc = subprocess.Popen(
        [
            str(BIN / "ironsight-collector"),
            "--db",
            db,
            "--listen",
            f"127.0.0.1:{port}",
            "--insecure",
            *(extra or []),
        ],
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    return proc, port


NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"


def tree_roots(args: argparse.Namespace, where: str) -> dict[str, Path]:
    """{"procfs": ..., "sysfs": ...} of a tree made under where for --tree big; {} for this machine."""
    if args.tree != "big":
        return {}
    from bench.bignode import make_tree

    root = make_tree(Path(where) / "tree")
    return {"procfs": root / "proc", "sysfs": root / "sys"}


def path_flags(roots: dict[str, Path]) -> list[str]:
    """--path.* flags for those roots: ours and node_exporter's spell them alike."""
    return [f"--path.{name}={path}" for name, path in roots.items()]


def node_exporter_scrape(rounds: int, paths: list[str] | None = None) -> tuple[float, int, int]:
    """node_exporter with the collectors matching our samplers: CPU seconds per scrape, bytes, series."""
    if not Path(NODE_EXPORTER).exists():
        raise SystemExit("needs Debian's prometheus-node-exporter: apt-get install prometheus-node-exporter")
    port = free_port()
    flags = ["--collector.disable-defaults", *[f"--collector.{c}" for c in NODE_EXPORTER_COLLECTORS]]
    if paths:  # a tree's files, not this machine's netlink
        flags += [*paths, "--no-collector.netdev.netlink", "--no-collector.netclass.netlink"]
    ne = subprocess.Popen(
        [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}", *flags], stderr=subprocess.DEVNULL
    )
    try:
        wait_port(port)
        return _scrape_cost(ne.pid, f"http://127.0.0.1:{port}/metrics", rounds)
    finally:
        ne.terminate()
        ne.wait()


def node_exporter_version() -> str:
    out = subprocess.run([NODE_EXPORTER, "--version"], capture_output=True, text=True)
    return (out.stderr or out.stdout).split("\n")[0]


def agent_vs_node_exporter(args: argparse.Namespace) -> dict[str, object]:
    """CPU per sample of the host sources: our samplers vs node_exporter per scrape, same machine, same run.

    Every source is read every round here, the once-a-second ones included, as
    node_exporter reads everything on every scrape."""
    tmp = tempfile.TemporaryDirectory()
    roots = tree_roots(args, tmp.name)
    ne_cpu, _, ne_series = node_exporter_scrape(args.rounds, path_flags(roots))

    # Ours: the same sources, sampled by the agent's real runner in a child process.
    code = f"""
import os, time, sys
from pathlib import Path
sys.path.insert(0, {str(ROOT)!r})
from ironsight.agent.samplers import REGISTRY
from ironsight.agent.samplers.base import RESCAN_EVERY_S, Every, Paths, SamplerContext
from ironsight.agent.runner import Runner
from ironsight.core.exposition import render
rescan_due = Every.due
Every.due = lambda self: self.seconds < RESCAN_EVERY_S or rescan_due(self)  # slow sources every round
roots = {{k: Path(v) for k, v in { ({k: str(v) for k, v in roots.items()})!r}.items()}}
ctx = SamplerContext(paths=Paths(**roots))
r = Runner([s.factory(ctx) for n, s in REGISTRY.items() if n != "gpu"], 5.0)
r.tick()
t = time.process_time()
for _ in range({args.rounds}):
    tick = r.tick()
cost = (time.process_time() - t) / {args.rounds}
rows = sum(len(v) for k, v in tick.reading.tables.items() if k != "sampler")
values = sum(sum(1 for x in vals.values() if x is not None) for k, v in tick.reading.tables.items() if k != "sampler" for _, vals in v)
print(cost, rows, values)
r.close()
"""
    with tmp:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    ours_cpu, ours_rows, ours_values = float(out[0]), int(out[1]), int(out[2])
    return {
        "node_exporter_version": node_exporter_version(),
        "node_exporter_cpu_ms_per_scrape": ne_cpu * 1e3,
        "node_exporter_series": ne_series,
        "ironsight_cpu_ms_per_sample": ours_cpu * 1e3,
        "ironsight_values_per_sample": ours_values,
        "ironsight_rows_per_sample": ours_rows,
        "ratio": ours_cpu / ne_cpu if ne_cpu else None,
        "rounds": args.rounds,
        "tree": args.tree,
    }


def _scrape_cost(pid: int, url: str, rounds: int) -> tuple[float, int, int]:
    """CPU seconds of the serving process per scrape, bytes and series of the last one."""
    urllib.request.urlopen(url).read()  # warm up
    before = cpu_seconds(pid)
    for _ in range(rounds):
        body = urllib.request.urlopen(url).read()
    cost = (cpu_seconds(pid) - before) / rounds
    series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
    return cost, len(body), series


def scrape(args: argparse.Namespace) -> dict[str, object]:
    """A Prometheus scrape of the agent's /metrics vs of node_exporter's, same sources, same run.

    node_exporter samples on every scrape; the agent renders its last tick (at
    --interval 30 a tick rarely falls inside the measured scrapes, so this is
    the render alone; the sampling itself is agent-vs-node-exporter's figure).
    """
    ne_cpu, ne_bytes, ne_series = node_exporter_scrape(args.rounds)
    port = free_port()
    agent = subprocess.Popen(
        [str(BIN / "ironsight-agent"), "--metrics-listen", f"127.0.0.1:{port}", "--interval", "30",
         "--no-collector.gpu"],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_port(port)
        url = f"http://127.0.0.1:{port}/metrics"
        deadline = time.monotonic() + 40
        while b"node_cpu_seconds_total" not in urllib.request.urlopen(url).read():  # the first tick
            if time.monotonic() > deadline:
                raise SystemExit("the agent served no tick within 40 s")
            time.sleep(0.5)
        ours_cpu, ours_bytes, ours_series = _scrape_cost(
            agent.pid, f"http://127.0.0.1:{port}/metrics", args.rounds
        )
    finally:
        agent.terminate()
        agent.wait()
    return {
        "node_exporter_cpu_ms_per_scrape": ne_cpu * 1e3,
        "node_exporter_bytes": ne_bytes,
        "node_exporter_series": ne_series,
        "ironsight_cpu_ms_per_scrape": ours_cpu * 1e3,
        "ironsight_bytes": ours_bytes,
        "ironsight_series": ours_series,
        "cpu_ratio": ours_cpu / ne_cpu if ne_cpu else None,
        "rounds": args.rounds,
    }


def agent_overhead(args: argparse.Namespace) -> dict[str, object]:
    """A real agent at --interval 0.1 streaming to a real collector: CPU share of one core and RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        col, port = start_collector(f"{tmp}/b.duckdb")
        agent = subprocess.Popen(
            [str(BIN / "ironsight-agent"), "--collector", f"127.0.0.1:{port}", "--interval", "0.1",
             f"--state-dir={tmp}", *path_flags(tree_roots(args, tmp))],
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            time.sleep(5)  # imports and first inventory are start-up, not steady state
            c0, t0 = cpu_seconds(agent.pid), time.monotonic()
            rss_max = 0
            while time.monotonic() - t0 < args.seconds:
                time.sleep(1)
                rss_max = max(rss_max, rss_bytes(agent.pid))
            cpu = cpu_seconds(agent.pid) - c0
            wall = time.monotonic() - t0
        finally:
            agent.terminate()
            agent.wait()
            col.terminate()
            col.wait()
    return {
        "seconds": wall,
        "cpu_percent_of_one_core": 100 * cpu / wall,
        "rss_max_mb": rss_max / 2**20,
        "tree": args.tree,
    }


def _gpu_batch(node: str, seq: int, t0: int, ticks: int, gpus: int) -> bytes:
    from ironsight.core.columnar import TableBuilder
    from ironsight.core.schema import TABLES
    from ironsight.v1 import telemetry_pb2 as pb

    builder = TableBuilder("gpu")
    fields = TABLES["gpu"].fields
    for i in range(ticks):
        for g in range(gpus):
            builder.add(
                t0 + i * 10**8, str(g), {f.name: (i + g if f.type == "int" else 0.5 * i + g) for f in fields}
            )
    batch = pb.Batch(node_id=node, boot_id="bench", seq=seq, interval_s=0.1)
    batch.tables.append(builder.to_proto())
    return batch.SerializeToString()


def ingest(args: argparse.Namespace) -> dict[str, object]:
    """Many concurrent streams into a real collector, counting values in committed rows per second."""
    from ironsight.core.schema import TABLES
    from ironsight.v1 import telemetry_pb2 as pb

    values_per_batch = args.ticks * args.gpus * len(TABLES["gpu"].fields)
    t0 = time.time_ns() - 120 * 10**9
    payloads = [
        [
            _gpu_batch(f"bench-{s}", seq, t0 + seq * args.ticks * 10**8, args.ticks, args.gpus)
            for seq in range(args.batches)
        ]
        for s in range(args.streams)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        col, port = start_collector(f"{tmp}/i.duckdb")
        acked = [0] * args.streams
        errors: list[str] = []

        def stream(i: int) -> None:
            with grpc.insecure_channel(
                f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 2**26)]
            ) as ch:
                call = ch.stream_stream(
                    "/ironsight.v1.Ingest/Stream",
                    request_serializer=lambda b: b,
                    response_deserializer=pb.Ack.FromString,
                )
                try:
                    for ack in call(iter(payloads[i]), timeout=600):
                        acked[i] += ack.status == pb.Ack.STORED
                except grpc.RpcError as exc:
                    errors.append(exc.details() or str(exc))

        threads = [threading.Thread(target=stream, args=(i,)) for i in range(args.streams)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        col.terminate()
        col.wait()
        size = Path(f"{tmp}/i.duckdb").stat().st_size
    if errors:
        raise SystemExit(f"ingest errors: {errors[:3]}")
    total = sum(acked) * values_per_batch
    return {
        "streams": args.streams,
        "batches": sum(acked),
        "values_per_batch": values_per_batch,
        "values": total,
        "seconds": wall,
        "values_per_second": total / wall,
        "db_bytes_per_value": size / total,
    }


def replay(args: argparse.Namespace) -> dict[str, object]:
    """`ironsight replay --max` of a simulated multi-node trace into a real collector, end to end."""
    from ironsight.core.trace import TraceWriter
    from ironsight.offline.replay import to_collector
    from ironsight.offline.simulate import simulate

    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "bench.trace"
        header, batches = simulate(
            "mixed",
            nodes=args.replay_nodes,
            gpus=8,
            duration_s=args.replay_seconds,
            seed=1,
            batch_s=args.replay_batch_seconds,
        )
        with TraceWriter(trace, header) as writer:
            for batch in batches:
                writer.write(batch)
        trace_bytes = trace.stat().st_size
        col, port = start_collector(f"{tmp}/r.duckdb")
        try:
            stats = to_collector([trace], f"127.0.0.1:{port}", None, speed=None)
        finally:
            col.terminate()
            col.wait()
    if stats.errors:
        raise SystemExit(f"replay errors: {stats.errors[:3]}")
    return {
        "nodes": args.replay_nodes,
        "ticks_per_batch": args.replay_batch_seconds,
        "batches": stats.batches,
        "values": stats.values,
        "seconds": stats.seconds,
        "values_per_second": stats.values / stats.seconds,
        "trace_bytes_per_value": trace_bytes / stats.values,
    }


def remote_write(args: argparse.Namespace) -> dict[str, object]:
    """Replay into a collector that forwards to a real Prometheus (Debian's, remote-write receiver on)."""
    from ironsight.core.trace import TraceWriter
    from ironsight.offline.replay import to_collector
    from ironsight.offline.simulate import simulate

    exe = shutil.which("prometheus")
    if exe is None:
        raise SystemExit("remote-write needs Debian's prometheus package")
    with tempfile.TemporaryDirectory() as tmp:
        prom_port = free_port()
        Path(tmp, "p.yml").write_text("global:\n  scrape_interval: 15s\n")
        prom = subprocess.Popen(
            [exe, f"--config.file={tmp}/p.yml", f"--storage.tsdb.path={tmp}/tsdb",
             f"--web.listen-address=127.0.0.1:{prom_port}", "--web.enable-remote-write-receiver"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        seconds = args.rw_seconds
        start_ns = (time.time_ns() - int(seconds * 1e9)) // 10**9 * 10**9
        header, batches = simulate("mixed", nodes=args.rw_nodes, gpus=8, duration_s=seconds, seed=3,
                                   start_ns=start_ns, batch_s=1.0)  # fmt: skip
        trace = Path(tmp) / "rw.trace"
        with TraceWriter(trace, header) as writer:
            for batch in batches:
                writer.write(batch)
        wait_port(prom_port)
        http_port = free_port()
        col, port = start_collector(
            f"{tmp}/c.duckdb",
            ["--no-detect", "--http-listen", f"127.0.0.1:{http_port}",
             "--remote-write-url", f"http://127.0.0.1:{prom_port}/api/v1/write"],
        )  # fmt: skip
        try:
            wait_port(http_port)
            began, cpu0 = time.perf_counter(), cpu_seconds(col.pid)
            stats = to_collector([trace], f"127.0.0.1:{port}", None, speed=None)
            while True:
                body = (
                    urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10)
                    .read()
                    .decode()
                )
                figures = {
                    line.split()[0]: float(line.split()[1])
                    for line in body.splitlines()
                    if line.startswith("ironsight_remote_write_") and "{" not in line
                }
                if (
                    figures["ironsight_remote_write_queue_values"] == 0
                    and figures["ironsight_remote_write_samples_sent_total"] > 0
                ):
                    break
                time.sleep(0.2)
            elapsed, cpu = time.perf_counter() - began, cpu_seconds(col.pid) - cpu0
        finally:
            col.terminate()
            col.wait()
            prom.terminate()
            prom.wait()
    sent = figures["ironsight_remote_write_samples_sent_total"]
    return {
        "nodes": args.rw_nodes,
        "stored_values": stats.values,
        "samples_sent": sent,
        "samples_failed": figures["ironsight_remote_write_samples_failed_total"],
        "requests": figures["ironsight_remote_write_requests_total"],
        "seconds_until_forwarded": elapsed,
        "samples_per_second": sent / elapsed,
        "collector_cpu_seconds_per_million_samples": cpu / sent * 1e6,
    }


def accuracy(args: argparse.Namespace) -> dict[str, object]:
    """`ironsight eval` over fresh simulated scenarios, with seeds the detector was not written on."""
    from ironsight.collector.detect.thresholds import Thresholds
    from ironsight.core.trace import TraceWriter
    from ironsight.offline.evaluate import evaluate, table
    from ironsight.offline.simulate import SCENARIOS, simulate

    with tempfile.TemporaryDirectory() as tmp:
        traces = []
        for name, sc in SCENARIOS.items():
            for seed in args.accuracy_seeds:
                path = Path(tmp) / f"{name}-{seed}.trace"
                header, batches = simulate(
                    name, nodes=max(3, sc.min_nodes), gpus=4, duration_s=1800, seed=seed
                )
                with TraceWriter(path, header) as writer:
                    for batch in batches:
                        writer.write(batch)
                traces.append(path)
        rows = table(evaluate(traces), Thresholds().step_s)
        healthy = evaluate([p for p in traces if p.name.startswith("healthy-")])
    return {
        "seeds": args.accuracy_seeds,
        "traces": len(traces),
        "kinds": rows,
        "findings_on_healthy_traces": sum(s.findings for s in healthy.values()),
    }


def detect_speed(args: argparse.Namespace) -> dict[str, object]:
    """Offline detection over stored history: all detectors, every node and GPU at once."""
    from datetime import datetime

    import duckdb

    from ironsight.collector.detect.findings import detect
    from ironsight.core.trace import TraceWriter
    from ironsight.offline.replay import to_db
    from ironsight.offline.simulate import simulate

    with tempfile.TemporaryDirectory() as tmp:
        trace, db = Path(tmp) / "d.trace", Path(tmp) / "d.duckdb"
        header, batches = simulate("mixed", nodes=args.detect_nodes, gpus=8, duration_s=3600, seed=3)
        with TraceWriter(trace, header) as writer:
            for batch in batches:
                writer.write(batch)
        to_db([trace], db)
        con = duckdb.connect(str(db))
        values = sum(
            con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] * width
            for t, width in (("gpu", 44), ("disk", 17), ("cpu", 16), ("rdma", 35), ("pressure", 7))
        )
        start = time.perf_counter()
        found = detect(con, datetime(2026, 10, 31), datetime(2026, 11, 2))
        seconds = time.perf_counter() - start
        con.close()
    return {
        "nodes": args.detect_nodes,
        "gpus_per_node": 8,
        "hours": 1,
        "stored_values_read": values,
        "seconds": seconds,
        "values_per_second": values / seconds,
        "findings": found.num_rows,
    }


def detect_step(args: argparse.Namespace) -> dict[str, object]:
    """One live detector step over a large fleet: 1,000 nodes x 8 GPUs, 12 minutes stored at 1 s.

    The data is synthetic (SQL, not the simulator, which would take an hour for
    this fleet) but shaped like a training job: periodic utilization, counters
    that grow, one NIC and 16 cores and one NVMe per node, rows in time order as
    agents deliver them. Target: under 1 second a step.
    """
    from datetime import datetime, timedelta

    from ironsight.collector.database import connect
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
            f"""INSERT INTO gpu BY NAME SELECT time, node, g::VARCHAR AS device,
                CASE WHEN ((s + n * 0.7) % 4) < 3.1 THEN 97 + random() * 3 ELSE 30 + random() * 10 END
                    AS util_gpu_percent,
                (40::BIGINT << 30) AS memory_used_bytes, 60 + random() * 5 AS temperature_celsius,
                87.0 AS temperature_slowdown_celsius, 1.98e9 AS sm_clock_hertz, 1.98e9 AS sm_clock_max_hertz,
                600 + random() * 50 AS power_watts, 700.0 AS power_limit_watts, 0 AS clocks_event_reasons,
                5 AS pcie_link_gen, 16 AS pcie_link_width, (s * 2e9)::BIGINT AS pcie_rx_bytes,
                0.0 AS throttle_sw_power_seconds, 0.0 AS throttle_sw_thermal_seconds,
                0.0 AS throttle_hw_thermal_seconds, 0.0 AS throttle_hw_power_brake_seconds,
                0 AS pcie_replays, 0 AS ecc_dbe_volatile, 0 AS nvlink_crc_errors, 0 AS nvlink_replay_errors,
                0 AS nvlink_recovery_errors, 0 AS remapped_rows_uncorrectable, 0 AS remapped_rows_pending
            FROM ({grid}), range({gpus}) q(g) ORDER BY time, node, device"""
        )
        con.execute(
            f"""INSERT INTO rdma BY NAME SELECT time, node, 'mlx5_0:1' AS device,
                (s * (2 + random())) ::BIGINT AS np_cnp_sent, (s * 2)::BIGINT AS rp_cnp_handled,
                (s * 3)::BIGINT AS np_ecn_marked_roce_packets, 0 AS out_of_sequence, 0 AS packet_seq_err,
                0 AS local_ack_timeout_err FROM ({grid}) ORDER BY time, node"""
        )
        con.execute(
            f"""INSERT INTO disk BY NAME SELECT time, node, 'nvme0n1' AS device, s * 0.3 AS io_time_seconds
                FROM ({grid}) ORDER BY time, node"""
        )
        con.execute(
            f"""INSERT INTO cpu BY NAME SELECT time, node, c::VARCHAR AS device, s * 0.5 AS user_seconds,
                0.0 AS nice_seconds, s * 0.05 AS system_seconds, s * 0.45 AS idle_seconds, 0.0 AS iowait_seconds,
                0.0 AS irq_seconds, 0.0 AS softirq_seconds, 0.0 AS steal_seconds
                FROM ({grid}), range({cores}) k(c) ORDER BY time, node, device"""
        )
        con.execute(
            f"""INSERT INTO pressure BY NAME SELECT time, node, '' AS device, 0.0 AS io_full_seconds
                FROM ({grid}) ORDER BY time, node"""
        )
        con.execute("CHECKPOINT")
        load_s = time.perf_counter() - started
        rows = sum(
            con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in ("gpu", "rdma", "disk", "cpu")
        )
        times = []
        cur = con.cursor()
        for k in range(args.step_repeats):
            result = step(cur, end - timedelta(seconds=DEFAULTS.step_s * (args.step_repeats - 1 - k)))
            times.append(result.seconds)
        con.close()
    times.sort()
    return {
        "nodes": nodes,
        "gpus_per_node": gpus,
        "stored_rows": rows,
        "load_seconds": load_s,
        "steps": len(times),
        "step_seconds_median": times[len(times) // 2],
        "step_seconds_max": times[-1],
        "target_seconds": 1.0,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "which",
        nargs="?",
        default="all",
        choices=[
            "all",
            "agent-vs-node-exporter",
            "agent-overhead",
            "ingest",
            "replay",
            "accuracy",
            "detect",
            "detect-step",
            "scrape",
            "remote-write",
        ],
    )
    p.add_argument("--rounds", type=int, default=200, help="samples/scrapes for agent-vs-node-exporter")
    p.add_argument("--seconds", type=float, default=30, help="steady-state seconds for agent-overhead")
    p.add_argument(
        "--tree",
        choices=["host", "big"],
        default="host",
        help="what agent-vs-node-exporter and agent-overhead sample: this machine, or a generated "
        "tree of a 192-cpu node with 8 HCAs, 16 NVMe drives and 20 hwmon chips (bench/bignode.py)",
    )
    p.add_argument("--streams", type=int, default=8)
    p.add_argument("--batches", type=int, default=40, help="batches per stream for ingest")
    p.add_argument("--ticks", type=int, default=100, help="ticks per batch for ingest")
    p.add_argument("--gpus", type=int, default=8)
    p.add_argument("--replay-nodes", type=int, default=8, help="nodes in the simulated trace for replay")
    p.add_argument("--detect-nodes", type=int, default=16, help="nodes of 8 GPUs for detect")
    p.add_argument("--step-nodes", type=int, default=1000, help="nodes of 8 GPUs for detect-step")
    p.add_argument("--step-repeats", type=int, default=5, help="consecutive steps timed by detect-step")
    p.add_argument("--accuracy-seeds", type=int, nargs="+", default=[9301, 9302], help="seeds for accuracy")
    p.add_argument("--replay-seconds", type=float, default=900, help="simulated seconds for replay")
    p.add_argument("--rw-nodes", type=int, default=8, help="nodes of 8 GPUs for remote-write")
    p.add_argument("--rw-seconds", type=float, default=300, help="simulated seconds for remote-write")
    p.add_argument(
        "--replay-batch-seconds",
        type=float,
        default=10,
        help="ticks per batch in the replayed trace (1 s ticks)",
    )
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    runs = {
        "agent-vs-node-exporter": agent_vs_node_exporter,
        "agent-overhead": agent_overhead,
        "ingest": ingest,
        "replay": replay,
        "accuracy": accuracy,
        "detect": detect_speed,
        "detect-step": detect_step,
        "scrape": scrape,
        "remote-write": remote_write,
    }
    for name, fn in runs.items():
        if args.which not in ("all", name):
            continue
        result = fn(args)
        result["machine"] = (
            f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        )
        (OUT / f"{name}.json").write_text(json.dumps(result, indent=2))
        print(
            f"{name}: "
            + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items())
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
