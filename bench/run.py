"""Benchmarks, each side by side with a peer or a stated target; prints its figures and writes bench/out/NAME.json.

    .venv/bin/python bench/run.py                  # every benchmark, with its defaults
    .venv/bin/python bench/run.py --list           # their names and what each measures
    .venv/bin/python bench/run.py agent-vs-node-exporter
    .venv/bin/python bench/run.py agent-overhead --seconds 60
    .venv/bin/python bench/run.py agent-vs-node-exporter --tree big   # a 192-cpu node's files
    .venv/bin/python bench/run.py ingest --streams 8
    .venv/bin/python bench/run.py fleet-ingest --fleet-nodes 256
    .venv/bin/python bench/run.py receivers --recv-nodes 128
    .venv/bin/python bench/run.py fleet-soak --soak-nodes 400 --soak-seconds 600
    .venv/bin/python bench/run.py jobs
    .venv/bin/python bench/run.py replay --replay-nodes 8
    .venv/bin/python bench/run.py replay --replay-batch-seconds 1 --replay-seconds 300
    .venv/bin/python bench/run.py accuracy --accuracy-seeds 9301 9302
    .venv/bin/python bench/run.py detect --detect-nodes 16
    .venv/bin/python bench/run.py detect-step --step-nodes 1000
    .venv/bin/python bench/run.py scrape --rounds 200
    .venv/bin/python bench/run.py remote-write --rw-nodes 64 --rw-receivers sink prometheus
    .venv/bin/python bench/run.py storage
    .venv/bin/python bench/run.py promql --promql-hours 24
    .venv/bin/python bench/run.py top --top-nodes 1000
    .venv/bin/python bench/run.py nvml-calls           # only where an NVIDIA driver and GPU are
    .venv/bin/python bench/run.py scrape --help    # one benchmark's own options

One file per benchmark beside this one; harness.py holds what they share.
agent-vs-node-exporter and scrape need Debian's prometheus-node-exporter,
remote-write and receivers Debian's prometheus and victoria-metrics, top tmux,
nvml-calls a real NVIDIA GPU (run alone, or by tools/gpu_session.sh; all of them leave it out). Nothing
here is a test: figures depend on the machine; docs/performance.md says where
they came from.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from types import ModuleType

import accuracy
import agent_overhead
import agent_vs_node_exporter
import detect
import detect_step
import fleet_ingest
import fleet_soak
import ingest
import jobs
import nvml_calls
import promql
import receive
import receivers
import remote_write
import replay
import scrape
import storage
import top

from harness import OUT

BENCHMARKS: list[ModuleType] = [
    agent_vs_node_exporter,
    agent_overhead,
    jobs,
    ingest,
    fleet_ingest,
    fleet_soak,
    receivers,
    replay,
    accuracy,
    detect,
    detect_step,
    scrape,
    remote_write,
    storage,
    promql,
    receive,
    top,
    nvml_calls,
]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    sub = p.add_subparsers(dest="which", metavar="BENCHMARK")
    for b in BENCHMARKS:
        b.add_arguments(sub.add_parser(b.NAME, help=(b.__doc__ or "").split("\n")[0]))
    return p


def run(b: ModuleType, args: argparse.Namespace) -> None:
    result = b.run(args)
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{b.NAME}.json").write_text(json.dumps(result, indent=2))
    print(
        f"{b.NAME}: "
        + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items())
    )


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.list:
        for b in BENCHMARKS:
            print(f"{b.NAME:24} {(b.__doc__ or '').splitlines()[0]}")
        return 0
    if args.which:
        run(next(b for b in BENCHMARKS if args.which == b.NAME), args)
        return 0
    for b in BENCHMARKS:  # each with its own defaults; a GPU's only where it is asked for by name
        if b is not nvml_calls:
            run(b, p.parse_args([b.NAME]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
