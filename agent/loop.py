"""The agent's sampling loop: tick on the interval grid, batch, hand batches to sinks (a collector, a trace)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from ironsight.agent.batch import Batcher, node_info
from ironsight.agent.clock import TIMELINE
from ironsight.agent.runner import Runner, Tick
from ironsight.agent.samplers.base import Paths
from ironsight.core.reading import DeviceInfo
from ironsight.v1 import telemetry_pb2 as pb

log = logging.getLogger("ironsight.agent")

INVENTORY_REFRESH_S = 60.0


class Sink(Protocol):
    def submit(self, batch: pb.Batch) -> None: ...


def sample_loop(
    runner: Runner,
    batcher: Batcher,
    paths: Paths,
    sinks: list[Sink],
    stop: threading.Event,
    batch_seconds: float = 1.0,
    duration_s: float | None = None,
    on_tick: Callable[[Tick, list[DeviceInfo]], None] | None = None,
) -> int:
    """Samples until stop is set (or duration_s has passed); returns the number of ticks."""
    step_ns = int(batcher.interval_s * 1e9)
    deadline = None if duration_s is None else time.monotonic() + duration_s
    inventory_at = -INVENTORY_REFRESH_S
    inventory: list[DeviceInfo] = []
    # Counted in ticks, not measured in wall time: timer jitter would push every
    # flush one tick late.
    ticks_per_batch = max(1, round(batch_seconds / batcher.interval_s))
    ticks = 0

    def flush() -> None:
        TIMELINE.check_wall()  # logs a step of the system clock, once
        batch = batcher.flush()
        if batch is not None:
            for sink in sinks:
                sink.submit(batch)

    # Stamps on the agent's timeline, which a step of the system clock does not move (agent.clock).
    next_ns = (TIMELINE.now_ns() // step_ns + 1) * step_ns
    while not stop.is_set():
        # Timestamps sit on the interval grid: rows of all nodes line up, and
        # columnar compression sees constant deltas.
        stop.wait(max(0.0, (next_ns - TIMELINE.now_ns()) / 1e9))
        if stop.is_set() or (deadline is not None and time.monotonic() >= deadline):
            break
        if time.monotonic() - inventory_at > INVENTORY_REFRESH_S:
            inventory = runner.inventory()
            batcher.info = node_info(inventory, paths, batcher.node_id)
            inventory_at = time.monotonic()
        tick = runner.tick(next_ns)
        batcher.add(tick)
        if on_tick is not None:
            on_tick(tick, inventory)
        ticks += 1
        now_ns = TIMELINE.now_ns()
        next_ns += step_ns
        if next_ns <= now_ns:  # fell behind (suspend, overload): skip ahead, never burst
            next_ns = (now_ns // step_ns + 1) * step_ns
        if ticks % ticks_per_batch == 0:
            flush()
    flush()
    return ticks
