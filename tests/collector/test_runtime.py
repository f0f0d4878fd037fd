"""The collector's process-wide settings (collector/runtime.py), as the collector sets them at start."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator

import pyarrow as pa
import pytest

from ironsight.collector import runtime


@pytest.fixture
def restored() -> Iterator[None]:
    """This test process's own settings back afterwards: the rest of the suite runs on the defaults."""
    pool, threshold, interval = pa.default_memory_pool(), gc.get_threshold(), sys.getswitchinterval()
    yield
    pa.set_memory_pool(pool)
    gc.set_threshold(*threshold)
    sys.setswitchinterval(interval)


def test_tune_sets_the_switch_interval_the_young_generation_and_arrows_allocator(restored: None) -> None:
    _, middle, old = gc.get_threshold()
    runtime.tune()
    assert sys.getswitchinterval() == pytest.approx(runtime.SWITCH_INTERVAL_S)
    assert gc.get_threshold() == (runtime.YOUNG_OBJECTS, middle, old)  # the older generations as they were
    assert pa.default_memory_pool().backend_name == "system"  # the wheels' default is mimalloc


def test_started_collects_the_start_ups_garbage_then_freezes_the_rest() -> None:
    class Cycle:
        def __init__(self) -> None:
            self.me = self

    import weakref

    gone = weakref.ref(Cycle())  # garbage only a collection frees: a cycle
    kept = [Cycle()]
    try:
        runtime.started()
        assert gone() is None  # collected before the freeze, not kept for good
        assert gc.get_freeze_count() >= 1  # what is in use is frozen out of collections
    finally:
        gc.unfreeze()
        del kept
