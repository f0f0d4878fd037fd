"""The collector as a remote-write receiver (--remote-write-listen) beside Prometheus and VictoriaMetrics.

One stream for all three, built once by receivers.build: nodes of 8 GPUs
at 1 s, each node's second one snappy WriteRequest of node_exporter and
dcgm-exporter series (instance = node), posted in time order per node over
CONNECTIONS keep-alive connections from a separate process (a dropped
connection is retried on a new one and counted; a request never acknowledged
fails the row). Per receiver: samples per second acknowledged (ironsight:
committed to its journal;
Prometheus: appended to its WAL; VictoriaMetrics: buffered), and for
ironsight also per second until every sample has settled into rows (the
backlog on /metrics is 0; settle delay 1 s). CPU seconds per million
samples for each receiver process, and the sender's. The three run in turn,
--rx-rounds times, and each figure is the median round's: this machine's
speed drifts by a third from minute to minute, alike for all three.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import receivers

from harness import collector_metrics, cpu_seconds, free_port, run_sender, start_collector, wait_port

NAME = "receive"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rx-nodes", type=int, default=64, help="nodes of 8 GPUs, each a stream")
    p.add_argument(
        "--rx-seconds",
        type=int,
        default=60,
        help="seconds of 1 s scrapes each node sends "
        "(the first carries every series new: a longer run is nearer a sender's steady state)",
    )
    p.add_argument(
        "--rx-rounds", type=int, default=3, help="rounds of all three receivers; figures are medians"
    )


def _ironsight(tmp: str) -> tuple[subprocess.Popen[bytes], str, int]:
    rw, http = free_port(), free_port()
    proc, _ = start_collector(f"{tmp}/rx.duckdb", ["--no-detect", "--remote-write-listen", f"127.0.0.1:{rw}",
                                                   "--http-listen", f"127.0.0.1:{http}", "--remote-write-settle", "1"])  # fmt: skip
    wait_port(rw, proc)
    return proc, f"http://127.0.0.1:{rw}/api/v1/write", http


def run(args: argparse.Namespace) -> dict[str, object]:
    out: dict[str, object] = {
        "nodes": args.rx_nodes,
        "seconds_of_data": args.rx_seconds,
        "rounds": args.rx_rounds,
    }
    rounds: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        load = tmp / "load"
        load.mkdir()
        # Recent times: Prometheus takes samples within its head block's window only.
        start_ns = (time.time_ns() - args.rx_seconds * 10**9 - 60 * 10**9) // 10**9 * 10**9
        samples = receivers.build(args.rx_nodes, args.rx_seconds, load, start_ns)
        out["samples"] = samples
        for n in range(args.rx_rounds):  # all three in turn, each round: the machine's drift hits them alike
            got: dict[str, float] = {}
            for kind in ("ironsight", "prometheus", "victoria-metrics"):
                got.update(_one(kind, tmp / f"{kind}-{n}", load, samples))
            rounds.append(got)
    for key in rounds[0]:  # the median round of each figure
        out[key] = sorted(r[key] for r in rounds)[len(rounds) // 2]
    for key in ("prometheus", "victoria_metrics"):
        ratios = [r["ironsight_samples_per_second"] / r[f"{key}_samples_per_second"] for r in rounds]
        out[f"ironsight_vs_{key}"] = round(
            float(str(out["ironsight_samples_per_second"])) / float(str(out[f"{key}_samples_per_second"])), 2
        )
        out[f"ironsight_vs_{key}_each_round"] = " ".join(f"{x:.2f}" for x in ratios)
    return out


def _one(kind: str, folder: Path, load: Path, samples: int) -> dict[str, float]:
    """One receiver fed the whole load: its figures, keyed by kind."""
    folder.mkdir()
    http = 0
    if kind == "ironsight":
        proc, url, http = _ironsight(str(folder))
    else:
        proc, url = receivers._receiver(kind, str(folder))
    key = kind.replace("-", "_")
    out: dict[str, float] = {}
    try:
        began, cpu_before = time.perf_counter(), cpu_seconds(proc.pid)
        result, used = run_sender(receivers.__file__, url, load, proc.pid)
        if result["errors"]:
            raise SystemExit(f"{kind}: {result['errors']}")
        out[f"{key}_samples_per_second"] = round(samples / float(result["seconds"]))
        out[f"{key}_requests_retried"] = result["retried"]  # connections dropped, sent again
        out[f"{key}_cpu_s_per_million"] = round(used / samples * 1e6, 3)
        out[f"{key}_sender_cpu_s_per_million"] = round(float(result["cpu_s"]) / samples * 1e6, 3)
        if http:
            while collector_metrics(http).get("ironsight_receive_backlog_samples", 1) > 0:
                time.sleep(0.05)
            settled = time.perf_counter() - began
            m = collector_metrics(http)
            out["ironsight_settled_samples_per_second"] = round(samples / settled)
            out["ironsight_settled_cpu_s_per_million"] = round(
                (cpu_seconds(proc.pid) - cpu_before) / samples * 1e6, 3
            )
            out["ironsight_rows_settled"] = m.get("ironsight_receive_rows_settled_total", 0)
    finally:
        proc.terminate()
        proc.wait()
    return out
