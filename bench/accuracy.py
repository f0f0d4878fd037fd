"""`ironsight eval` over fresh simulated scenarios, with seeds the detector was not written on."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from harness import write_trace

NAME = "accuracy"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--accuracy-seeds",
        type=int,
        nargs="+",
        default=[9301, 9302],
        help="seeds the detector was not written on",
    )


def run(args: argparse.Namespace) -> dict[str, object]:
    """`ironsight eval` over fresh simulated scenarios, with seeds the detector was not written on."""
    from ironsight.collector.detect.thresholds import Thresholds
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
                write_trace(path, header, batches)
                traces.append(path)
        rows = table(evaluate(traces), Thresholds().step_s)
        # Traces with nothing to flag: healthy jobs, a model server, idle nodes.
        healthy = evaluate([p for p in traces if p.name.startswith(("healthy-", "inference-", "idle-"))])
    return {
        "seeds": args.accuracy_seeds,
        "traces": len(traces),
        "kinds": rows,
        "findings_on_healthy_traces": sum(s.findings for s in healthy.values()),
    }
