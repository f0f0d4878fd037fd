"""Data starvation: found on the starved GPUs, with its cause."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ironsight.collector.detect.findings import detect

from support.traces import WHOLE, overlaps, simulated

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("seed", [505, 606])
@pytest.mark.parametrize(
    ("scenario", "nodes", "cause"),
    [("starved-storage", 2, "storage"), ("starved-cpu", 2, "cpu"), ("starved-storage", 1, "storage")],
)
def test_starvation_on_the_starved_gpus_with_its_cause(
    tmp_path: Path, scenario: str, nodes: int, cause: str, seed: int
) -> None:
    header, con = simulated(tmp_path, scenario, seed, nodes=nodes)
    found = detect(con, *WHOLE).to_pylist()
    labels = [lb for lb in header.labels if lb.kind == "data_starvation"]
    assert labels
    for label in labels:
        [hit] = [f for f in found if f["node"] == label.node and f["device"] == label.device]
        assert hit["kind"] == "data_starvation" and hit["cause"] == cause and hit["severity"] == "critical"
        assert overlaps(hit, label)
        peak = json.loads(hit["evidence"])["peak"]
        assert peak["gpu_util_mean_pct"] < 0.5 * peak["job_gpu_util_median_pct"] or nodes == 1
    assert len(found) == len(labels)  # nothing on the healthy node
