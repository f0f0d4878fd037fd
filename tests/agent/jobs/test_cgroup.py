"""A process's job from its cgroup file and environment, as Slurm, Kubernetes and systemd lay them out."""

from __future__ import annotations

import pytest

from ironsight.agent.jobs.cgroup import owner_of_cgroup, owner_of_environ
from ironsight.core.reading import GpuOwner

POD = "8d2c4b1e-3f6a-4c2b-9e7d-1a2b3c4d5e6f"


@pytest.mark.parametrize(
    ("text", "owner"),
    [
        # Slurm, cgroup v1 (one line per controller) and v2 (one unified line).
        (
            "12:devices:/slurm/uid_1000/job_4242/step_0/task_0\n11:memory:/slurm/uid_1000/job_4242/step_0\n",
            GpuOwner("0", "4242", "slurm"),
        ),
        ("0::/system.slice/slurmstepd.scope/job_77/step_batch/user/task_0\n", GpuOwner("0", "77", "slurm")),
        # Kubernetes: cgroupfs driver (v1) and the systemd driver (v2, the UID's dashes as underscores).
        (
            f"4:cpu,cpuacct:/kubepods/burstable/pod{POD}/0123456789abcdef\n",
            GpuOwner("0", f"pod-{POD}", "kubernetes", (("pod_uid", POD),)),
        ),
        (
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"
            + POD.replace("-", "_")
            + ".slice/cri-containerd-0123abcd.scope\n",
            GpuOwner("0", f"pod-{POD}", "kubernetes", (("pod_uid", POD),)),
        ),
        ("0::/system.slice/trainer.service\n", GpuOwner("0", "trainer.service", "systemd")),
        # A login session or a user's own manager is nobody's job.
        ("0::/user.slice/user-1000.slice/session-3.scope\n", None),
        ("0::/user.slice/user-1000.slice/user@1000.service/app.slice/tmux.scope\n", None),
        ("", None),
        ("garbage without colons\n\x00\xff", None),
    ],
)
def test_cgroup_paths(text: str, owner: GpuOwner | None) -> None:
    assert owner_of_cgroup(text, "0") == owner


def test_slurm_environment_gives_user_and_name() -> None:
    env = b"PATH=/usr/bin\0SLURM_JOB_ID=4242\0SLURM_JOB_USER=ana\0SLURM_JOB_NAME=llama-70b\0"
    assert owner_of_environ(env, "3") == GpuOwner(
        "3", "4242", "slurm", (("name", "llama-70b"), ("user", "ana"))
    )
    assert owner_of_environ(b"SLURM_JOB_ID=not-a-number\0", "3") is None
    assert owner_of_environ(b"", "3") is None
