"""A Prometheus scrape of the agent's /metrics vs of node_exporter's, same sources, same run."""

from __future__ import annotations

import argparse
import subprocess
import time
import urllib.request

from harness import BIN, free_port, node_exporter_scrape, scrape_cost, wait_port

NAME = "scrape"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rounds", type=int, default=200, help="scrapes of each")


def run(args: argparse.Namespace) -> dict[str, object]:
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
        ours_cpu, ours_bytes, ours_series = scrape_cost(
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
