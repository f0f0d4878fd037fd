"""The processes on a GPU as NVML lists them (compute and graphics), with SM utilization where the driver keeps it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ironsight.agent.nvml import Nvml


@dataclass
class ProcessLister:
    nvml: Nvml
    # Per GPU handle (by identity): the driver's timestamp of the last utilization sample read.
    _seen: dict[int, int] = field(default_factory=dict)

    def processes(self, handle: Any) -> list[tuple[int, int | None]]:
        """(pid, GPU memory in bytes or None) for each process with a context on the GPU."""
        out: dict[int, int | None] = {}
        for fn in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
            for p in self.nvml.call(fn, handle) or []:
                memory = getattr(p, "usedGpuMemory", None)
                # NVML_VALUE_NOT_AVAILABLE (all ones) where the driver does not say (MIG, no permission).
                out[int(p.pid)] = memory if isinstance(memory, int) and 0 <= memory < 1 << 62 else None
        return sorted(out.items())

    def sm_util(self, handle: Any) -> dict[int, float]:
        """Each process's SM utilization (%) over the driver's samples since the last call; {} if none."""
        samples = self.nvml.call("nvmlDeviceGetProcessUtilization", handle, self._seen.get(id(handle), 0))
        util: dict[int, list[float]] = {}
        for s in samples or []:
            util.setdefault(int(s.pid), []).append(float(s.smUtil))
            self._seen[id(handle)] = max(self._seen.get(id(handle), 0), int(s.timeStamp))
        return {pid: sum(v) / len(v) for pid, v in util.items()}
