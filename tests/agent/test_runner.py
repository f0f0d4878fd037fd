"""The runner: a hanging or blocked sampler costs only itself."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from ironsight.agent.runner import Runner
from ironsight.agent.samplers import REGISTRY
from ironsight.agent.samplers.base import BaseSampler, Paths, SamplerContext
from ironsight.core.reading import Reading


class Hanging(BaseSampler):
    name = "hanging"

    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def sample(self) -> Reading:
        self.release.wait(30)
        return Reading()


class Quick(BaseSampler):
    name = "quick"

    def __init__(self) -> None:
        self.runs = 0

    def sample(self) -> Reading:
        self.runs += 1
        r = Reading()
        r.add("load", "", {"load1": float(self.runs)})
        return r


def test_a_hanging_sampler_does_not_stall_the_others() -> None:
    release = threading.Event()
    quick = Quick()
    runner = Runner([Hanging(release), quick], budget_s=0.2)
    start = time.monotonic()
    ticks = [runner.tick() for _ in range(5)]
    elapsed = time.monotonic() - start
    release.set()
    # The first tick waits out the budget once; later ticks skip the stuck sampler at once.
    assert elapsed < 0.2 * 2 + 0.5
    assert quick.runs == 5
    for tick in ticks:
        status = {dev: v["success"] for dev, v in tick.reading.rows("sampler")}
        assert status == {"hanging": 0, "quick": 1}
    assert [t.reading.rows("load")[0][1]["load1"] for t in ticks] == [1.0, 2.0, 3.0, 4.0, 5.0]
    runner.close()


def test_a_fifo_in_the_tree_blocks_only_its_sampler(tmp_path: Path, procfs_tree: Path) -> None:
    import os
    import shutil

    root = tmp_path / "t"
    shutil.copytree(
        procfs_tree / "proc", root / "proc", symlinks=True, ignore=shutil.ignore_patterns("self", "[0-9]*")
    )
    (root / "sys").mkdir()
    os.unlink(root / "proc" / "diskstats")
    os.mkfifo(root / "proc" / "diskstats")  # open() blocks until a writer appears: a hung read
    ctx = SamplerContext(paths=Paths(root / "proc", root / "sys"))
    runner = Runner([REGISTRY[n].factory(ctx) for n in ("cpu", "memory", "disk")], budget_s=0.3)
    try:
        ticks = [runner.tick() for _ in range(3)]
        for tick in ticks:
            status = {dev: v["success"] for dev, v in tick.reading.rows("sampler")}
            assert status == {"cpu": 1, "memory": 1, "disk": 0}
            assert len(tick.reading.rows("cpu")) > 0
    finally:
        with open(root / "proc" / "diskstats", "w"):  # unblock the stuck reader thread
            pass
        runner.close()
