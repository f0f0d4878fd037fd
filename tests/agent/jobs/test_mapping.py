"""dcgm-exporter's job-mapping folder, written and cleared by our example Slurm prolog and epilog."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ironsight.agent.jobs.mapping import read_mapping
from ironsight.core.reading import GpuOwner

CONTRIB = Path(__file__).resolve().parents[3] / "contrib" / "slurm"


def run(script: str, folder: Path, job: str, gpus: str) -> None:
    env = {"PATH": os.environ["PATH"], "IRONSIGHT_JOB_MAP_DIR": str(folder), "SLURM_JOB_ID": job}
    subprocess.run(["sh", str(CONTRIB / script)], env=env | {"SLURM_JOB_GPUS": gpus}, check=True)


def test_prolog_and_epilog_keep_the_folder_true(tmp_path: Path) -> None:
    folder = tmp_path / "job-map"
    run("prolog.sh", folder, "101", "0,1")
    run("prolog.sh", folder, "202", "1,2.1")  # GPU 1 shared; a MIG instance of GPU 2
    assert sorted(read_mapping(folder), key=lambda o: (o.gpu, o.job)) == [
        GpuOwner("0", "101", "mapping"),
        GpuOwner("1", "101", "mapping"),
        GpuOwner("1", "202", "mapping"),
        GpuOwner("2", "202", "mapping", (("mig", "1"),)),
    ]
    run("epilog.sh", folder, "101", "0,1")
    assert read_mapping(folder) == [
        GpuOwner("1", "202", "mapping"),
        GpuOwner("2", "202", "mapping", (("mig", "1"),)),
    ]
    assert sorted(p.name for p in folder.iterdir()) == ["1", "2.1"]  # GPU 0's file went with its last job
    run("epilog.sh", folder, "202", "1,2.1")
    assert read_mapping(folder) == [] and list(folder.iterdir()) == []


def test_odd_entries_and_a_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "0").write_text("\n  777 \n\n")
    (tmp_path / "README").write_text("not a GPU\n")
    (tmp_path / ".1.123").write_text("half written\n")
    assert read_mapping(tmp_path) == [GpuOwner("0", "777", "mapping")]
    assert read_mapping(tmp_path / "absent") == []
