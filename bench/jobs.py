"""What job discovery adds to the agent's CPU at --interval 1: one look against the agent's ticks.

The peer is the agent without it: a tick of every host sampler on this machine
and the GPU sampler on 8 GPUs (the NVML double on the H200 capture under load,
whose process list has 3 processes: 24 across the node). A look lists each
GPU's processes, reads each one's /proc environ, cgroup and comm (written as
Slurm lays them out) and reads a job-mapping folder. The agent looks every
--jobs.interval (5 s); the figure is that look's share over 5 ticks. NVML's
process calls go to the double here: on a real GPU each is a driver call,
which only a lent GPU can measure.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ironsight.agent.jobs.discover import Discovery
from ironsight.agent.jobs.options import JobOptions
from ironsight.agent.nvml import Nvml
from ironsight.agent.runner import Runner
from ironsight.agent.samplers import REGISTRY
from ironsight.agent.samplers.base import Paths, SamplerContext
from ironsight.agent.samplers.gpu import GpuSampler

import harness  # noqa: F401 - puts tests/ on the path
from support.nvml_double import CaptureNvml, capture

NAME = "jobs"
H200 = "linux-x86_64__nvidia-h200__590.48.01.txt"
GPUS = 8


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs-rounds", type=int, default=300, help="ticks and looks timed")
    p.add_argument(
        "--jobs-interval", type=float, default=5.0, help="seconds between looks, as the agent's flag"
    )


def _cpu_per_call(fn: Callable[[], object], rounds: int) -> float:
    fn()
    start = time.process_time()
    for _ in range(rounds):
        fn()
    return (time.process_time() - start) / rounds


def run(args: argparse.Namespace) -> dict[str, object]:
    nvml = CaptureNvml(capture(H200), "load")
    nvml.count = GPUS
    host = [s.factory(SamplerContext()) for n, s in REGISTRY.items() if n not in ("gpu", "jobs")]
    runner = Runner([*host, GpuSampler(SamplerContext(nvml=nvml))], 5.0)
    try:
        tick_s = _cpu_per_call(runner.tick, args.jobs_rounds)
    finally:
        runner.close()
    with tempfile.TemporaryDirectory() as tmp:
        proc = Path(tmp, "proc")
        for pid, _, _, _ in nvml.processes:
            d = proc / str(pid)
            d.mkdir(parents=True)
            (d / "cgroup").write_text(f"0::/system.slice/slurmstepd.scope/job_4242/step_0/user/task_{pid}\n")
            (d / "environ").write_bytes(b"PATH=/usr/bin\0SLURM_JOB_ID=4242\0SLURM_JOB_USER=ana\0" * 40)
            (d / "comm").write_text("python\n")
        mapping = Path(tmp, "map")
        mapping.mkdir()
        for g in range(GPUS):
            (mapping / str(g)).write_text("4242\n")
        lib = Nvml(nvml)
        lib.init()
        discovery = Discovery(JobOptions(mapping_dir=mapping), lib, Paths(proc, Path(tmp, "sys")))
        gpus = [(str(g), ("handle", g)) for g in range(GPUS)]
        look_s = _cpu_per_call(lambda: discovery.observe(gpus), args.jobs_rounds)
    rise = look_s / args.jobs_interval / tick_s
    return {
        "gpus": GPUS,
        "processes": GPUS * len(nvml.processes),
        "tick_cpu_ms": round(tick_s * 1e3, 3),
        "look_cpu_ms": round(look_s * 1e3, 3),
        "jobs_interval_s": args.jobs_interval,
        "cpu_rise_at_interval_1": round(rise, 4),
        "target": "< 0.10",
    }
