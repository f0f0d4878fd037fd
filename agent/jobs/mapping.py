"""dcgm-exporter's job-mapping folder: one file per GPU index ("0", or "0.1" for a MIG
instance), each holding the job ids on that GPU, one per line; a Slurm prolog writes
them and its epilog removes them (examples in contrib/slurm/)."""

from __future__ import annotations

import re
from pathlib import Path

from ironsight.agent.once import log_once
from ironsight.core.reading import GpuOwner

_NAME = re.compile(r"^(\d+)(?:\.(\d+))?$")
MAX_BYTES = 64 * 1024  # a job file holds a few ids; more is not one


def read_mapping(folder: Path) -> list[GpuOwner]:
    """Every GPU's jobs as the folder says now; a missing folder is no jobs, said once."""
    try:
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
    except OSError as exc:
        log_once(
            f"jobs.mapping.{folder}", f"jobs: mapping folder {folder} unreadable ({exc}); no jobs from it"
        )
        return []
    owners = []
    for entry in entries:
        if entry.name.startswith("."):
            continue  # a prolog's file being written, renamed into place when whole
        m = _NAME.match(entry.name)
        if m is None:
            log_once(f"jobs.mapping.name.{entry.name}", f"jobs: {entry} is not named by a GPU index; ignored")
            continue
        try:
            with entry.open("rb") as f:
                text = f.read(MAX_BYTES).decode(errors="replace")
        except OSError:
            continue  # removed by an epilog between the listing and the read
        attrs = (("mig", m.group(2)),) if m.group(2) else ()
        for line in text.splitlines():
            if job := line.strip():
                owners.append(GpuOwner(m.group(1), job[:256], "mapping", attrs))
    return owners
