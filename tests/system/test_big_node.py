"""The largest legal node: 1,024 cpus, 64 interfaces, 32 NVMe drives, 16 GPUs, 100 hwmon chips.

A minute of its ticks (the host from a generated tree, bench/bignode.py's HUGE; the GPUs
from the NVML double on an H100 capture) as one batch at --batch-seconds 60: nothing
left out, far under the message limit, and all of it stored by a real collector.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from ironsight.agent.batch import Batcher
from ironsight.agent.runner import Runner
from ironsight.agent.samplers import REGISTRY
from ironsight.agent.samplers.base import Paths, SamplerContext
from ironsight.agent.samplers.gpu import GpuSampler
from ironsight.agent.stream import MAX_MESSAGE_BYTES, Sender

from support.nvml_double import H100, CaptureNvml, capture
from support.paths import ROOT
from support.processes import CollectorProcess, run_cli, wait_for

pytestmark = pytest.mark.slow

sys.path.insert(0, str(ROOT / "bench"))
from bignode import HUGE, make_tree  # noqa: E402 - bench/ is not a package


def test_a_minute_of_the_largest_node_in_one_batch(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "tree", shape=HUGE)
    ctx = SamplerContext(paths=Paths(root / "proc", root / "sys"))
    nvml = CaptureNvml(capture(H100), "load")
    nvml.count = 16
    samplers = [s.factory(ctx) for n, s in REGISTRY.items() if n != "gpu"]
    runner = Runner([*samplers, GpuSampler(SamplerContext(nvml=nvml))], 5.0)
    batcher = Batcher("huge-node", "boot", 1.0)
    t0 = (time.time_ns() // 10**9 - 90) * 10**9
    try:
        for i in range(60):
            batcher.add(runner.tick(t0 + i * 10**9))
    finally:
        runner.close()
    batch = batcher.flush()
    assert batch is not None and batcher.refused == {}  # nothing left out
    size = batch.ByteSize()
    assert size < MAX_MESSAGE_BYTES // 4, size  # room to spare under the 64 MiB limit
    rows = {t.name: len(t.time_ns) for t in batch.tables}
    assert rows["cpu"] == 1024 * 60 and rows["gpu"] == 16 * 60 and rows["disk"] == 32 * 60
    assert rows["nic"] == 64 * 60 and rows["hwmon"] >= 100 * 3 * 60

    collector = CollectorProcess(tmp_path / "big.duckdb", tmp_path / "c.log", ["--no-detect"]).start()
    sender = Sender(collector.target)
    sender.start()
    try:
        sender.submit(batch)
        wait_for(lambda: sender.acked == 1, timeout=60)
    finally:
        sender.stop(5)
        collector.stop()
    assert sender.rejected == 0
    stored = json.loads(
        run_cli("--db", str(collector.db), "--format", "json", "query",
                "SELECT (SELECT count(*) FROM cpu) AS cpu, (SELECT count(*) FROM gpu) AS gpu,"
                " (SELECT count(*) FROM nic) AS nic, (SELECT count(*) FROM disk) AS disk").stdout
    )[0]  # fmt: skip
    assert stored == {"cpu": 1024 * 60, "gpu": 16 * 60, "nic": 64 * 60, "disk": 32 * 60}
    print(f"a minute of the largest node: {size / 2**20:.1f} MiB in one batch, {sum(rows.values())} rows")
