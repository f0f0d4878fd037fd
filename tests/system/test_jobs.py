"""Two nodes, two jobs, end to end: agents (GPUs from the NVML double on an H200 capture with
its real process list) stream to a real collector; `ironsight jobs` reads the file after."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ironsight.agent.batch import Batcher
from ironsight.agent.jobs.options import JobOptions
from ironsight.agent.runner import Runner
from ironsight.agent.samplers.base import Paths, SamplerContext
from ironsight.agent.samplers.gpu import GpuSampler
from ironsight.agent.samplers.jobs import JobsSampler
from ironsight.agent.stream import Sender
from ironsight.v1 import telemetry_pb2 as pb

from support.nvml_double import CaptureNvml, capture
from support.processes import CollectorProcess, run_cli, wait_for

pytestmark = pytest.mark.slow
H200 = "linux-x86_64__nvidia-h200__590.48.01.txt"


def node_batches(node: str, ctx: SamplerContext, t0: int) -> list[pb.Batch]:
    nvml = CaptureNvml(capture(H200), "load")
    nvml.count = 2
    ctx.nvml = nvml
    runner = Runner([GpuSampler(ctx), JobsSampler(ctx)], 5.0)
    batcher = Batcher(node, "boot", 1.0)
    out = []
    try:
        for i in range(30):
            batcher.add(runner.tick(t0 + i * 10**9))
            if i % 10 == 9 and (batch := batcher.flush()) is not None:
                out.append(batch)
    finally:
        runner.close()
    return out


def test_two_jobs_on_two_nodes_reach_ironsight_jobs(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    for pid in (10291, 10293, 10309):  # the capture's processes, all in Slurm job 4242 on node n1
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "cgroup").write_text(
            f"0::/system.slice/slurmstepd.scope/job_4242/step_0/user/task_{pid}\n"
        )
        (proc / str(pid) / "comm").write_text("python\n")
    t0 = (time.time_ns() // 10**9 - 120) * 10**9
    batches = node_batches("n1", SamplerContext(paths=Paths(proc, tmp_path / "sys")), t0)
    batches += node_batches(
        "n2", SamplerContext(paths=Paths(tmp_path / "none"), jobs=JobOptions(manual="inference-api")), t0
    )
    assert [b.HasField("ownership") for b in batches] == [True, False, False] * 2  # one look, unchanged after
    collector = CollectorProcess(tmp_path / "jobs.duckdb", tmp_path / "c.log", ["--no-detect"]).start()
    sender = Sender(collector.target)
    sender.start()
    try:
        for b in batches:
            sender.submit(b)
        wait_for(lambda: sender.acked == len(batches), timeout=60)
        # A job named by hand through the running collector, over one GPU of n2 for 10 s.
        since, until = (datetime.fromtimestamp(t0 / 1e9 + s, UTC).isoformat() for s in (10, 20))
        named = run_cli("--collector", collector.target, "--format", "json", "jobs", "name", "eval-9",
                        "--node", "n2", "--gpu", "1", "--since", since, "--until", until, "--attr", "user=bo")  # fmt: skip
        assert [(r["node"], r["gpu"]) for r in json.loads(named.stdout)] == [("n2", "1")]
        refused = run_cli("--collector", collector.target, "jobs", "name", "x", "--node", "nope", "--since", "1h",
                          check=False)  # fmt: skip
        assert refused.returncode == 1 and refused.stderr.strip().splitlines() == [
            "Error: no stored node matches nope (see: ironsight nodes)"
        ]
    finally:
        sender.stop(5)
        collector.stop()
    out = run_cli("--db", str(collector.db), "--format", "json", "jobs", "--since", "1h")
    rows = {r["job"]: r for r in json.loads(out.stdout)}
    assert set(rows) == {"4242", "inference-api", "eval-9"}
    assert (rows["4242"]["source"], rows["4242"]["nodes"], rows["4242"]["gpus"]) == ("slurm", 1, 2)
    assert (rows["inference-api"]["source"], rows["inference-api"]["gpus"]) == ("manual", 2)
    assert (rows["eval-9"]["nodes"], rows["eval-9"]["gpus"], rows["eval-9"]["attrs"]) == (
        1,
        1,
        [["user", "bo"]],
    )
    assert rows["eval-9"]["end_time"] == datetime.fromtimestamp(t0 / 1e9 + 20, UTC).strftime(
        "%Y-%m-%d %H:%M:%S.000"
    )
    assert rows["4242"]["gpu_util_mean_pct"] == 100.0  # the capture under load
    assert rows["4242"]["end_time"] is None and rows["inference-api"]["end_time"] is None
    procs = json.loads(
        run_cli("--db", str(collector.db), "--format", "json", "query",
                "SELECT node, gpu, pid, job, used_memory_bytes FROM gpu_processes ORDER BY node, gpu, pid").stdout
    )  # fmt: skip
    assert [(p["node"], p["gpu"], p["pid"], p["job"]) for p in procs if p["gpu"] == "0"] == [
        ("n1", "0", 10291, "4242"), ("n1", "0", 10293, "4242"), ("n1", "0", 10309, "4242"),
        ("n2", "0", 10291, None), ("n2", "0", 10293, None), ("n2", "0", 10309, None),
    ]  # fmt: skip
    assert procs[0]["used_memory_bytes"] == 2566 * 2**20
