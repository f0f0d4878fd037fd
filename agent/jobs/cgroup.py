"""A process's job from its cgroup path (/proc/PID/cgroup) and, where readable, its environment.

Slurm puts each job's processes under a `job_N` cgroup (v1:
`/slurm/uid_U/job_N/step_S`; v2: `/system.slice/slurmstepd.scope/job_N/...`),
Kubernetes under a pod's (`/kubepods/burstable/podUID/...`; with the systemd
driver `kubepods-burstable-podUID.slice`, the UID's dashes as underscores),
systemd under a unit (`/system.slice/trainer.service`). A user's login
session or user manager is no job.
"""

from __future__ import annotations

import re

from ironsight.core.reading import GpuOwner

_SLURM = re.compile(r"/job_(\d+)(?:/|$)")
_POD = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")
_UNIT = re.compile(r"/([^/]+\.service)(?:/|$)")


def owner_of_cgroup(text: str, gpu: str) -> GpuOwner | None:
    """The job a /proc/PID/cgroup file names, most specific first: Slurm, Kubernetes, a systemd service."""
    paths = [line.split(":", 2)[2] for line in text.splitlines() if line.count(":") >= 2]
    for path in paths:
        if m := _SLURM.search(path):
            return GpuOwner(gpu, m.group(1), "slurm")
    for path in paths:
        if m := _POD.search(path):
            uid = m.group(1).replace("_", "-")
            return GpuOwner(gpu, f"pod-{uid}", "kubernetes", (("pod_uid", uid),))
    for path in paths:
        if (m := _UNIT.search(path)) and not m.group(1).startswith("user@"):
            return GpuOwner(gpu, m.group(1), "systemd")
    return None


_SLURM_ATTRS = {b"SLURM_JOB_USER": "user", b"SLURM_JOB_NAME": "name"}


def owner_of_environ(data: bytes, gpu: str) -> GpuOwner | None:
    """A Slurm job from /proc/PID/environ (NUL-separated), with its user and name."""
    env = dict(item.split(b"=", 1) for item in data.split(b"\0") if b"=" in item)
    job = env.get(b"SLURM_JOB_ID", b"").decode(errors="replace")
    if not job.isdigit():
        return None
    attrs = tuple(
        sorted((name, env[key].decode(errors="replace")) for key, name in _SLURM_ATTRS.items() if key in env)
    )
    return GpuOwner(gpu, job, "slurm", attrs)
