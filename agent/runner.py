"""Runs every enabled sampler once per tick, each on its own thread under a time budget.

A sampler whose read blocks (a hung sysfs file, a wedged driver) keeps its
own thread busy and is reported as failed for the ticks it misses; the other
samplers keep their interval. Every run adds a row to the "sampler" table.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass

from agent.samplers.base import DeviceInfo, Reading, Sampler

log = logging.getLogger("ironsight.agent")


@dataclass
class Tick:
    time_ns: int
    reading: Reading


class _Slot:
    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sampler-{sampler.name}")
        self.running: Future[tuple[Reading, float]] | None = None
        self.started = 0.0
        self.last_error = ""


def _timed(sampler: Sampler) -> tuple[Reading, float]:
    start = time.perf_counter()
    reading = sampler.sample()
    return reading, time.perf_counter() - start


class Runner:
    def __init__(self, samplers: list[Sampler], budget_s: float) -> None:
        self.slots = [_Slot(s) for s in samplers]
        self.budget_s = budget_s

    def tick(self, time_ns: int | None = None) -> Tick:
        now_ns = time.time_ns() if time_ns is None else time_ns
        reading = Reading()
        pending: list[_Slot] = []
        for slot in self.slots:
            if slot.running is not None and not slot.running.done():
                # Still stuck in an earlier tick: this tick it has failed.
                self._report(reading, slot, time.perf_counter() - slot.started, False, "still running")
                continue
            slot.started = time.perf_counter()
            slot.running = slot.pool.submit(_timed, slot.sampler)
            pending.append(slot)
        wait_futures([s.running for s in pending if s.running is not None], timeout=self.budget_s)
        for slot in pending:
            fut = slot.running
            assert fut is not None
            if not fut.done():
                self._report(reading, slot, self.budget_s, False, f"over its {self.budget_s:g}s budget")
                continue
            exc = fut.exception()
            if exc is not None:
                self._report(
                    reading, slot, time.perf_counter() - slot.started, False, f"{type(exc).__name__}: {exc}"
                )
                continue
            result, duration = fut.result()
            reading.merge(result)
            self._report(reading, slot, duration, True, "")
        return Tick(now_ns, reading)

    def _report(self, reading: Reading, slot: _Slot, duration: float, ok: bool, error: str) -> None:
        reading.add("sampler", slot.sampler.name, {"duration_seconds": duration, "success": int(ok)})
        # One log line when a sampler starts failing (or fails differently) and one
        # when it recovers, never one per tick.
        if error != slot.last_error:
            if error:
                log.warning("sampler %s failed: %s", slot.sampler.name, error)
            else:
                log.info("sampler %s recovered", slot.sampler.name)
            slot.last_error = error

    def inventory(self) -> list[DeviceInfo]:
        out: list[DeviceInfo] = []
        for slot in self.slots:
            try:
                out.extend(slot.sampler.inventory())
            except Exception as exc:  # inventory is best effort; sampling goes on
                log.warning("sampler %s inventory failed: %s", slot.sampler.name, exc)
        return out

    def close(self) -> None:
        for slot in self.slots:
            slot.pool.shutdown(wait=False, cancel_futures=True)
            try:
                slot.sampler.close()
            except Exception as exc:
                log.debug("closing %s: %s", slot.sampler.name, exc)
