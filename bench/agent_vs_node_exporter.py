"""CPU per sample of the host sources: our samplers vs node_exporter per scrape, same machine, same run."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile

from harness import (
    ROOT,
    add_tree_argument,
    node_exporter_scrape,
    node_exporter_version,
    path_flags,
    tree_roots,
)

NAME = "agent-vs-node-exporter"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_tree_argument(p)
    p.add_argument("--rounds", type=int, default=200, help="samples of ours and scrapes of node_exporter")


def run(args: argparse.Namespace) -> dict[str, object]:
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
