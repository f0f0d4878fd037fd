"""Runs every enabled sampler once per tick under a time budget each, off the agent's main thread.

A sampler whose read blocks (a hung sysfs file, a wedged driver) is given up
on once its budget is spent: its worker thread is left to it, the sampler is
quarantined (reported failed, not run) until that call returns, and the
remaining samplers go on at once on a fresh worker. Every run adds a row to
the "sampler" table with its duration and success.

The samplers of a tick run one after another on one worker thread. They are
short Python loops around small reads: run concurrently they fought for the
GIL (9.4 ms of CPU a tick against 2.7 ms in turn), and one thread per
sampler cost a thread handoff each (about 1 ms a tick for seven).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from ironsight.agent.samplers.base import Sampler
from ironsight.core.reading import DeviceInfo, Reading
from ironsight.core.worker import QueueWorker

log = logging.getLogger("ironsight.agent")


@dataclass
class Tick:
    time_ns: int
    reading: Reading


class _Slot:
    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler
        self.busy_since: float | None = None  # set while a call is in progress, even an abandoned one
        self.last_error = ""


@dataclass
class _Job:
    """The samplers one worker runs in turn this tick, and what each returned."""

    slots: list[_Slot]
    cond: threading.Condition = field(default_factory=threading.Condition)
    index: int = 0
    started: float = field(default_factory=time.perf_counter)
    results: list[tuple[Reading | None, BaseException | None, float]] = field(default_factory=list)
    done: bool = False
    abandoned: bool = False


def _work(job: _Job) -> None:
    for i, slot in enumerate(job.slots):
        start = time.perf_counter()
        with job.cond:
            if job.abandoned:
                return
            job.index, job.started = i, start
        slot.busy_since = start
        reading: Reading | None = None
        error: BaseException | None = None
        try:
            reading = slot.sampler.sample()
        except Exception as exc:
            error = exc
        finally:
            slot.busy_since = None
        with job.cond:
            if job.abandoned:
                return  # the runner gave up on this thread: what it read is stale
            job.results.append((reading, error, time.perf_counter() - start))
    with job.cond:
        job.done = True
        job.cond.notify_all()


class _Worker(QueueWorker[_Job]):
    """One daemon thread that runs jobs handed to it, one at a time. A worker whose sampler overran
    is stopped without waiting (the sampler may never return) and replaced."""

    def __init__(self) -> None:
        super().__init__("sampler-worker")
        self.start()

    def run(self) -> None:
        while jobs := self.take(1):
            try:
                _work(jobs[0])
            finally:
                self.done()


class Runner:
    def __init__(self, samplers: list[Sampler], budget_s: float) -> None:
        """budget_s: how long one sampler may take in one tick before it is given up on."""
        self.slots = [_Slot(s) for s in samplers]
        self.budget_s = budget_s
        self._worker = _Worker()

    def tick(self, time_ns: int | None = None) -> Tick:
        now_ns = time.time_ns() if time_ns is None else time_ns
        reading = Reading()
        outcomes: dict[int, tuple[Reading | None, str, float]] = {}
        todo: list[_Slot] = []
        for slot in self.slots:
            if slot.busy_since is not None:
                # Still stuck in an earlier tick: failed again, at no cost to the others.
                outcomes[id(slot)] = (None, "still running", time.perf_counter() - slot.busy_since)
            else:
                todo.append(slot)
        while todo:
            job = _Job(todo)
            self._worker.put(job)
            with job.cond:
                while not job.done:
                    left = job.started + self.budget_s - time.perf_counter()
                    if left <= 0:
                        break
                    job.cond.wait(left)
                if not job.done:
                    job.abandoned = True
            for slot, (result, error, duration) in zip(job.slots, job.results, strict=False):
                message = "" if error is None else f"{type(error).__name__}: {error}"
                outcomes[id(slot)] = (result, message, duration)
            if job.done:
                break
            # The sampler at job.index overran its budget: leave it its thread, go on without it.
            stuck = job.slots[len(job.results)]
            outcomes[id(stuck)] = (None, f"over its {self.budget_s:g}s budget", self.budget_s)
            self._worker.stop(0, join_s=0)
            self._worker = _Worker()
            todo = job.slots[len(job.results) + 1 :]
        for slot in self.slots:
            result, message, duration = outcomes[id(slot)]
            if result is not None:
                reading.merge(result)
            self._report(reading, slot, duration, result is not None, message)
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
        self._worker.stop(0, join_s=0)
        for slot in self.slots:
            if slot.busy_since is not None:
                continue  # a stuck sampler cannot be closed under its own feet
            try:
                slot.sampler.close()
            except Exception as exc:
                log.debug("closing %s: %s", slot.sampler.name, exc)
