"""Replay into a collector that forwards to a real Prometheus (Debian's, remote-write receiver on)."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from harness import cpu_seconds, free_port, start_collector, wait_port, write_trace

NAME = "remote-write"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rw-nodes", type=int, default=8, help="nodes of 8 GPUs")
    p.add_argument("--rw-seconds", type=float, default=300, help="simulated seconds")


def run(args: argparse.Namespace) -> dict[str, object]:
    """Replay into a collector that forwards to a real Prometheus (Debian's, remote-write receiver on)."""
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
        write_trace(trace, header, batches)
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
