"""Puts the sources together: a name given by hand over the scheduler's word (the kubelet, a mapping
folder) over what the processes say."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ironsight.agent.jobs.cgroup import owner_of_cgroup, owner_of_environ
from ironsight.agent.jobs.kubernetes import PodResources
from ironsight.agent.jobs.mapping import read_mapping
from ironsight.agent.jobs.options import JobOptions
from ironsight.agent.jobs.processes import ProcessLister
from ironsight.agent.nvml import Nvml
from ironsight.agent.once import log_once
from ironsight.core.reading import GpuOwner, GpuProc, Owners

if TYPE_CHECKING:  # the samplers package imports this module through its jobs sampler
    from ironsight.agent.samplers.base import Paths


class Discovery:
    def __init__(self, options: JobOptions, nvml: Nvml, paths: Paths) -> None:
        self.options = options
        self.paths = paths
        self.lister = ProcessLister(nvml)
        self.nvml = nvml
        socket = options.kubelet_socket
        self.kubelet = PodResources(socket) if socket is not None else None
        # A process's job and name are fixed for its life: read once per process (its /proc entry's
        # change time tells a reused pid), not each look. Measured: a look at 24 processes 4.1 ms of
        # CPU reading them every time, a quarter of the agent's CPU at --interval 1.
        self._processes: dict[int, tuple[int, str, GpuOwner | None]] = {}
        self._mapped: tuple[object, list[GpuOwner]] = (None, [])  # the folder's files' times, what they held

    def _process(self, pid: int) -> tuple[str, GpuOwner | None]:
        try:
            born = os.stat(self.paths.proc(str(pid))).st_ctime_ns
        except OSError:
            born = -1
        known = self._processes.get(pid)
        if known is not None and known[0] == born and born != -1:
            return known[1], known[2]
        comm, owner = self._comm(pid), self._owner_of(pid, "")
        self._processes[pid] = (born, comm, owner)
        return comm, owner

    def _mapping(self) -> list[GpuOwner]:
        """The mapping folder's jobs, read again when the folder changes (a prolog renames files into it)."""
        folder = self.options.mapping_dir
        if folder is None:
            return []
        try:  # a file written in place changes its own time, one renamed in or removed the folder's
            with os.scandir(folder) as entries:
                changed: object = sorted((e.name, e.stat().st_mtime_ns) for e in entries)
        except OSError:
            changed = None  # gone or unreadable: read_mapping says so
        if changed is None or changed != self._mapped[0]:
            self._mapped = (changed, read_mapping(folder))
        return list(self._mapped[1])

    def observe(self, gpus: list[tuple[str, Any]]) -> Owners:
        """gpus: (device key, NVML handle) of each GPU to look at."""
        keys = tuple(key for key, _ in gpus)
        owners: dict[str, list[GpuOwner]] = {}
        procs: list[GpuProc] = []
        if self.options.processes:
            for key, handle in gpus:
                util = self.lister.sm_util(handle)
                for pid, memory in self.lister.processes(handle):
                    comm, found = self._process(pid)
                    owner = None if found is None else replace(found, gpu=key)
                    procs.append(GpuProc(key, pid, comm, owner.job if owner else "", memory, util.get(pid)))
                    if owner is not None:
                        owners.setdefault(key, []).append(owner)
            running = {p.pid for p in procs}
            self._processes = {pid: v for pid, v in self._processes.items() if pid in running}
        # A scheduler's word over what the processes say: the mapping folder, the kubelet.
        scheduled = self._mapping()
        if self.kubelet is not None and self.kubelet.socket.exists():  # a Kubernetes node
            scheduled += self.kubelet.owners(self._uuids(gpus)) or []
        mapped: dict[str, list[GpuOwner]] = {}
        for owner in scheduled:
            mapped.setdefault(owner.gpu, []).append(owner)
        owners.update(mapped)
        if self.options.manual:
            owners = {key: [GpuOwner(key, self.options.manual, "manual")] for key in keys}
        jobs = sorted({o for key in keys for o in _unique(owners.get(key, []))}, key=lambda o: (o.gpu, o.job))
        return Owners(keys, tuple(jobs), tuple(procs))

    def _uuids(self, gpus: list[tuple[str, Any]]) -> dict[str, str]:
        """GPU and MIG UUIDs -> GPU key, as the kubelet's device plugins name them."""
        out: dict[str, str] = {}
        for key, handle in gpus:
            if uuid := self.nvml.call("nvmlDeviceGetUUID", handle):
                out[uuid.decode() if isinstance(uuid, bytes) else str(uuid)] = key
            for i in range(self.nvml.call("nvmlDeviceGetMaxMigDeviceCount", handle) or 0):
                mig = self.nvml.call("nvmlDeviceGetMigDeviceHandleByIndex", handle, i)
                if mig is not None and (uuid := self.nvml.call("nvmlDeviceGetUUID", mig)):
                    out[uuid.decode() if isinstance(uuid, bytes) else str(uuid)] = key
        return out

    def close(self) -> None:
        if self.kubelet is not None:
            self.kubelet.close()

    def _owner_of(self, pid: int, gpu: str) -> GpuOwner | None:
        base = self.paths.proc(str(pid))
        try:
            environ = (base / "environ").read_bytes()
        except OSError:
            environ = b""  # another user's process, unless the agent runs as root
        if (owner := owner_of_environ(environ, gpu)) is not None:
            return owner
        try:
            cgroup = (base / "cgroup").read_text(errors="replace")
        except OSError:
            log_once(
                "jobs.proc",
                f"jobs: {base}/cgroup unreadable: GPU processes are not in this agent's PID namespace"
                " (run it with the host's, as the systemd unit does); their jobs are unknown",
            )
            return None
        return owner_of_cgroup(cgroup, gpu)

    def _comm(self, pid: int) -> str:
        try:
            return self.paths.proc(str(pid), "comm").read_text(errors="replace").strip()[:64]
        except OSError:
            return ""


def _unique(owners: list[GpuOwner]) -> list[GpuOwner]:
    """One per job: where two processes of one job say it differently, the one with more to say."""
    best: dict[str, GpuOwner] = {}
    for o in owners:
        if o.job not in best or len(o.attrs) > len(best[o.job].attrs):
            best[o.job] = o
    return list(best.values())
