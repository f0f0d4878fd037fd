"""Several jobs in one simulated cluster: nodes named after their job, each node's looks naming
it, the labels on the right nodes, and the detector judging each job on its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from ironsight.collector.detect.findings import detect

from support.traces import WHOLE, simulated

pytestmark = pytest.mark.slow


def test_two_jobs_each_judged_on_its_own(tmp_path: Path) -> None:
    header, con = simulated(tmp_path, "multi-job", 4, nodes=6, gpus=2, duration_s=1200)
    assert [n.node_id for n in header.nodes] == [f"train-{j}-00{n}" for j in "ab" for n in range(3)]
    [label] = [lb for lb in header.labels if lb.kind == "straggler"]
    assert label.node.startswith("train-a-")
    owned = con.execute("SELECT DISTINCT node, job FROM gpu_jobs ORDER BY node").fetchall()
    assert owned == [(n.node_id, n.node_id[:7]) for n in header.nodes]
    found = [f for f in detect(con, *WHOLE).to_pylist() if f["kind"] in ("straggler", "data_starvation")]
    assert [(f["kind"], f["node"], f["job"]) for f in found] == [("straggler", label.node, "train-a")]
