"""The agent's job-discovery settings (its --job flags), apart so the sampler context can hold them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class JobOptions:
    manual: str = ""  # --job: every GPU of this node runs this job
    mapping_dir: Path | None = None  # --jobs.mapping-dir: dcgm-exporter's job-mapping folder
    processes: bool = True  # --jobs.processes: NVML's processes, their cgroups and environments
    every_s: float = 5.0  # --jobs.interval
    kubelet_socket: Path | None = None  # --jobs.kubelet-socket; None: --no-jobs.kubernetes
