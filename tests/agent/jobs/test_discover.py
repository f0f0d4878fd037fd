"""Who owns each GPU: NVML's processes (from a real capture's process list), their cgroups, the
mapping folder over them, a name given by hand over everything."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

from ironsight.agent.jobs.discover import Discovery
from ironsight.agent.jobs.options import JobOptions
from ironsight.agent.nvml import Nvml
from ironsight.agent.samplers.base import Paths, SamplerContext
from ironsight.agent.samplers.jobs import JobsSampler
from ironsight.core.reading import GpuOwner, GpuProc

from support.nvml_double import CaptureNvml, capture

H200 = "linux-x86_64__nvidia-h200__590.48.01.txt"


def proc_tree(root: Path, pids: dict[int, tuple[str, str, bytes]]) -> Paths:
    """/proc/PID/{comm,cgroup,environ} for each pid: (comm, cgroup text, environ bytes)."""
    for pid, (comm, cgroup, environ) in pids.items():
        d = root / "proc" / str(pid)
        d.mkdir(parents=True)
        (d / "comm").write_text(comm + "\n")
        (d / "cgroup").write_text(cgroup)
        (d / "environ").write_bytes(environ)
    return Paths(root / "proc", root / "sys")


def discovery(tmp_path: Path, options: JobOptions, nvml: CaptureNvml) -> Discovery:
    paths = proc_tree(
        tmp_path,
        {
            # The capture's processes: two memhogs in Slurm job 4242 (one readable environment), gpu_burn
            # in a systemd service.
            10291: ("memhog", "0::/system.slice/slurmstepd.scope/job_4242/step_0/user/task_0\n", b""),
            10293: ("memhog", "0::/system.slice/slurmstepd.scope/job_4242/step_0/user/task_1\n",
                    b"SLURM_JOB_ID=4242\0SLURM_JOB_USER=ana\0"),
            10309: ("gpu_burn", "0::/system.slice/burn.service\n", b""),
        },
    )  # fmt: skip
    lib = Nvml(nvml)
    lib.init()
    return Discovery(options, lib, paths)


def test_processes_and_their_jobs(tmp_path: Path) -> None:
    nvml = CaptureNvml(capture(H200), "load")
    nvml.process_util = [SimpleNamespace(pid=10309, smUtil=97, memUtil=40, timeStamp=5)]
    owners = discovery(tmp_path, JobOptions(), nvml).observe([("0", ("handle", 0))])
    assert owners.gpus == ("0",)
    assert owners.jobs == (
        GpuOwner("0", "4242", "slurm", (("user", "ana"),)),  # the one with more to say
        GpuOwner("0", "burn.service", "systemd"),
    )
    assert owners.processes == (
        GpuProc("0", 10291, "memhog", "4242", 2566 * 2**20, None),
        GpuProc("0", 10293, "memhog", "4242", 1542 * 2**20, None),
        GpuProc("0", 10309, "gpu_burn", "burn.service", 28234 * 2**20, 97.0),
    )


def test_mapping_over_processes_and_a_name_over_both(tmp_path: Path) -> None:
    folder = tmp_path / "map"
    folder.mkdir()
    (folder / "0").write_text("9001\n")
    nvml = CaptureNvml(capture(H200), "load")
    mapped = discovery(tmp_path, JobOptions(mapping_dir=folder), nvml).observe([("0", ("handle", 0))])
    assert mapped.jobs == (GpuOwner("0", "9001", "mapping"),)
    assert [p.job for p in mapped.processes] == ["4242", "4242", "burn.service"]  # what each process says
    named = Discovery(JobOptions(manual="eval-sweep", mapping_dir=folder), Nvml(nvml), Paths(tmp_path / "x"))
    named.lister.nvml.init()
    assert named.observe([("0", ("handle", 0)), ("1", ("handle", 1))]).jobs == (
        GpuOwner("0", "eval-sweep", "manual"),
        GpuOwner("1", "eval-sweep", "manual"),
    )


def test_an_idle_gpu_has_no_job_and_no_gpu_is_no_look(tmp_path: Path) -> None:
    idle = discovery(tmp_path, JobOptions(), CaptureNvml(capture(H200), "idle"))
    assert idle.observe([("0", ("handle", 0))]).jobs == ()
    absent = CaptureNvml(capture(H200), "idle")
    absent.init_error = 9  # NVML_ERROR_DRIVER_NOT_LOADED
    sampler = JobsSampler(SamplerContext(nvml=absent))
    assert sampler.sample().owners is None


def test_the_sampler_looks_every_interval(tmp_path: Path) -> None:
    nvml = CaptureNvml(capture(H200), "load")
    nvml.count = 2
    sampler = JobsSampler(SamplerContext(paths=Paths(tmp_path), nvml=nvml, jobs=JobOptions(every_s=60)))
    first = sampler.sample().owners
    assert first is not None and first.gpus == ("0", "1") and len(first.processes) == 6
    assert [p.job for p in first.processes] == [""] * 6  # no /proc entries for the capture's pids here
    assert sampler.sample().owners is None  # not due again for a minute


def test_a_process_is_read_once_and_a_reused_pid_again(tmp_path: Path) -> None:
    nvml = CaptureNvml(capture(H200), "load")
    d = discovery(tmp_path, JobOptions(), nvml)
    gpu = [("0", ("handle", 0))]
    assert {p.job for p in d.observe(gpu).processes} == {"4242", "burn.service"}
    entry = tmp_path / "proc" / "10309"
    (entry / "cgroup").write_text("0::/system.slice/other.service\n")  # not re-read: the same process
    assert [p.job for p in d.observe(gpu).processes if p.pid == 10309] == ["burn.service"]
    for f in entry.iterdir():  # the pid reused by a new process: a new /proc entry
        f.unlink()
    entry.rmdir()
    time.sleep(0.01)
    entry.mkdir()
    (entry / "cgroup").write_text("0::/system.slice/other.service\n")
    (entry / "comm").write_text("other\n")
    assert [(p.name, p.job) for p in d.observe(gpu).processes if p.pid == 10309] == [
        ("other", "other.service")
    ]


def test_the_mapping_folder_is_read_again_when_a_file_changes_in_place(tmp_path: Path) -> None:
    folder = tmp_path / "map"
    folder.mkdir()
    (folder / "0").write_text("1\n")
    d = discovery(
        tmp_path, JobOptions(mapping_dir=folder, processes=False), CaptureNvml(capture(H200), "idle")
    )
    gpu = [("0", ("handle", 0))]
    assert [o.job for o in d.observe(gpu).jobs] == ["1"]
    time.sleep(0.01)
    (folder / "0").write_text("2\n")  # rewritten in place, as some prologs do
    assert [o.job for o in d.observe(gpu).jobs] == ["2"]
