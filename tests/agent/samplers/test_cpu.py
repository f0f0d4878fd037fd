"""cpu: /proc/stat on old kernels, and a missing file as a reported failure."""

from __future__ import annotations

from pathlib import Path

from ironsight.agent.runner import Runner
from ironsight.agent.samplers.base import Paths, SamplerContext
from ironsight.agent.samplers.cpu import CpuSampler, parse_stat


def test_stat_old_kernel_without_guest_columns_is_null_not_zero() -> None:
    cpus, host = parse_stat("cpu  1 2 3 4\ncpu0 100 200 300 400 500 600 700\nctxt 42\nprocs_running 3\n")
    assert cpus["0"]["user_seconds"] == 1.0
    assert cpus["0"]["softirq_seconds"] == 7.0
    assert cpus["0"]["steal_seconds"] is None
    assert cpus["0"]["guest_seconds"] is None
    assert host == {"context_switches": 42, "procs_running": 3}


def test_missing_proc_stat_is_a_reported_failure(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    runner = Runner(
        [CpuSampler(SamplerContext(paths=Paths(tmp_path / "proc", tmp_path / "sys")))], budget_s=5
    )
    [(name, v)] = runner.tick().reading.rows("sampler")
    assert name == "cpu" and v["success"] == 0
    runner.close()
