"""Offline detection over stored history: all detectors, every node and GPU at once."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from harness import write_trace

NAME = "detect"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detect-nodes", type=int, default=16, help="nodes of 8 GPUs")


def run(args: argparse.Namespace) -> dict[str, object]:
    """Offline detection over stored history: all detectors, every node and GPU at once."""
    from datetime import datetime

    import duckdb

    from ironsight.collector.detect.findings import detect
    from ironsight.offline.replay import to_db
    from ironsight.offline.simulate import simulate

    with tempfile.TemporaryDirectory() as tmp:
        trace, db = Path(tmp) / "d.trace", Path(tmp) / "d.duckdb"
        header, batches = simulate("mixed", nodes=args.detect_nodes, gpus=8, duration_s=3600, seed=3)
        write_trace(trace, header, batches)
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
