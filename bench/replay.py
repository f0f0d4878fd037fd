"""`ironsight replay --max` of a simulated multi-node trace into a real collector, end to end."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from harness import start_collector, write_trace

NAME = "replay"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--replay-nodes", type=int, default=8, help="nodes in the simulated trace")
    p.add_argument("--replay-seconds", type=float, default=900, help="simulated seconds")
    p.add_argument(
        "--replay-batch-seconds",
        type=float,
        default=10,
        help="ticks per batch in the replayed trace (1 s ticks)",
    )


def run(args: argparse.Namespace) -> dict[str, object]:
    """`ironsight replay --max` of a simulated multi-node trace into a real collector, end to end."""
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
        write_trace(trace, header, batches)
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
