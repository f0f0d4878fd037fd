"""The collector's disk fills up under ingest: a clear error, the sender keeps its batches, what was
stored stays readable, and ingest resumes by itself once space is freed."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from ironsight.agent.stream import Sender

from support.batches import RecordingSpool, check_store, gpu_batch
from support.processes import CollectorProcess

pytestmark = pytest.mark.slow


def test_a_full_disk_fails_clearly_and_ingest_resumes_when_freed(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("mounting a small tmpfs needs root (CI runs the tests as root)")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], check=True, timeout=30)
    c = CollectorProcess(disk / "full.duckdb", tmp_path / "collector.log", ["--no-detect"])
    spool = RecordingSpool(tmp_path / "spool")
    sender = Sender(c.target, spool, backoff_initial_s=0.05, backoff_max_s=0.5)
    submitted: list[int] = []

    def produce(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            seq = len(submitted) + 1
            sender.submit(gpu_batch(seq, time.time_ns() // 1_000_000 * 1_000_000))
            submitted.append(seq)
            time.sleep(0.02)

    try:
        c.start()
        sender.start()
        produce(2)
        deadline = time.monotonic() + 30
        while sender.pending() and time.monotonic() < deadline:
            time.sleep(0.1)
        stored_before = set(submitted)
        assert sender.pending() == 0
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        (disk / "filler").write_bytes(b"\0" * (free - 512 * 1024))  # half a MiB left
        produce(5)
        assert c.proc is not None and c.proc.poll() is None, "the collector must keep running"
        assert sender.pending() > 50, "with the disk full, batches wait in the sender's spool"
        (disk / "filler").unlink()
        deadline = time.monotonic() + 60
        while sender.pending() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert sender.pending() == 0, f"{sender.pending()} batches never stored after space was freed"
        assert c.stop() == 0
        stored = check_store(disk / "full.duckdb", set(submitted))
        assert stored_before <= stored and stored == set(submitted)
    finally:
        sender.stop(0)
        if c.proc is not None and c.proc.poll() is None:
            c.proc.kill()
            c.proc.wait(timeout=10)
        subprocess.run(["umount", "-l", str(disk)], timeout=30)
    log = (tmp_path / "collector.log").read_text()
    failed = [line for line in log.splitlines() if "store failed" in line]
    assert failed and "No space left on device" in failed[0], log[-2000:]
    assert "store recovered" in log
    assert "Traceback" not in log and "never retrieved" not in log
