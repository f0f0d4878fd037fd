"""Several jobs in one simulated cluster: nodes named after their job, each node's looks naming
it, the labels on the right nodes, and the detector judging each job on its own."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from ironsight.collector.detect.findings import detect
from ironsight.collector.jobnames import Naming, name
from ironsight.offline.evaluate import evaluate, table

from support.traces import T0, WHOLE, simulated

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
    # Scored per job: the straggler in train-a's rows, nothing in train-b's, nothing without a job.
    rows = table(evaluate([tmp_path / "multi-job.trace"], by_job=True), 10, by_job=True)
    assert [(r["job"], r["kind"], r["labels"], r["findings"]) for r in rows] == [
        ("train-a", "straggler", 1, 1)
    ]
    assert float(str(rows[0]["precision"])) >= 0.95 and float(str(rows[0]["recall"])) >= 0.9


def test_a_job_ends_and_another_starts_on_the_same_nodes(tmp_path: Path) -> None:
    header, con = simulated(tmp_path, "job-handoff", 10801, nodes=3, gpus=2, duration_s=1800)
    assert [n.node_id for n in header.nodes] == ["sim-000", "sim-001", "sim-002"]
    [label] = [lb for lb in header.labels if lb.kind == "straggler"]
    assert label.end_ns <= header.created_ns + 900 * 10**9  # in the first job's half
    # The same agents throughout (one boot, one sequence each); each node's looks change job.
    assert con.execute("SELECT count(DISTINCT boot_id), count(*) FROM batches").fetchall()[0][0] == 3
    looks = con.execute("SELECT node, job FROM gpu_jobs WHERE gpu = '0' ORDER BY node, time").fetchall()
    assert looks == [(n, j) for n in ("sim-000", "sim-001", "sim-002") for j in ("train-a", "train-c")]
    found = detect(con, *WHOLE).to_pylist()
    assert [(f["kind"], f["node"], f["job"]) for f in found] == [("straggler", label.node, "train-a")]


def test_an_inference_service_and_idle_nodes_beside_training(tmp_path: Path) -> None:
    header, con = simulated(tmp_path, "shared-cluster", 5, nodes=8, gpus=2, duration_s=1200)
    assert [n.node_id for n in header.nodes] == [
        *(f"train-a-00{n}" for n in range(4)), "serve-000", "serve-001", "idle-000", "idle-001"
    ]  # fmt: skip
    [label] = [lb for lb in header.labels if lb.kind == "straggler"]
    # The idle nodes' agents look and find no job on their GPUs; the service holds memory at low load.
    owned = con.execute(
        "SELECT DISTINCT node, job FROM gpu_jobs WHERE node LIKE 'idle%' ORDER BY node"
    ).fetchall()
    assert owned == [("idle-000", None), ("idle-001", None)]
    [(util, held)] = con.execute(
        "SELECT avg(util_gpu_percent), min(memory_used_bytes) FROM gpu WHERE node LIKE 'serve%'"
        f" AND time > TIMESTAMP '{T0 + timedelta(minutes=3)}'"
    ).fetchall()
    assert 8 < util < 50 and held > 2**30

    def judged() -> list[tuple[str, str, str | None]]:
        found = detect(con, *WHOLE).to_pylist()
        return [
            (f["kind"], f["node"], f["job"]) for f in found if f["kind"] in ("straggler", "data_starvation")
        ]

    assert judged() == [("straggler", label.node, "train-a")]
    # Blind to jobs, the service's GPUs are judged against the training's, far busier: starved.
    con.execute("DELETE FROM gpu_jobs")
    con.execute("DELETE FROM agent_jobs")
    blind = judged()
    assert {node for kind, node, _ in blind if kind == "data_starvation"} == {"serve-000", "serve-001"}
    # Named by hand, each job is judged on its own again.
    for job in ("train-a", "serve"):
        name(con, Naming(job, (f"{job}-*",), T0))
    assert judged() == [("straggler", label.node, "train-a")]
