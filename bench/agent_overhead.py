"""A real agent at --interval 0.1 streaming to a real collector: CPU share of one core and RSS."""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time

from harness import BIN, add_tree_argument, cpu_seconds, path_flags, rss_bytes, start_collector, tree_roots

NAME = "agent-overhead"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_tree_argument(p)
    p.add_argument("--seconds", type=float, default=30, help="steady-state seconds measured")


def run(args: argparse.Namespace) -> dict[str, object]:
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
