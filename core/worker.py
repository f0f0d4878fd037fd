"""Background threads with one lifecycle: start() once, stop(timeout_s) once.

Each daemon loop (the agent's sampler worker and sender, the collector's store
writer and remote writer) is a Worker: its owner calls start(), hands it work,
and at shutdown calls stop(timeout_s), which gives the loop up to timeout_s to
finish what is in hand (idle()), then tells it to stop and waits for it. Loops
wait on the one condition variable, so a stop wakes them wherever they wait.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Worker:
    """A daemon thread running run(); subclasses write run() and, where stop() should wait for something, idle()."""

    def __init__(self, name: str) -> None:
        self.cond = threading.Condition()
        self.stopping = False
        self._thread = threading.Thread(target=self.run, name=name, daemon=True)

    def run(self) -> None:
        raise NotImplementedError

    def idle(self) -> bool:
        """Nothing left that stop() should wait for; called with cond held."""
        return True

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout_s: float | None, join_s: float | None = None) -> bool:
        """Waits up to timeout_s (None: for as long as it takes) until idle(), then stops the loop.

        join_s: how long to wait for the thread to end after that (None: until it does; 0: not at
        all, for a thread that may be stuck in a call that never returns). True if it ended.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self.cond:
            while self._thread.is_alive() and not self.idle():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self.cond.wait(0.05 if left is None else min(0.05, left))
            self.stopping = True
            self.cond.notify_all()
        if join_s != 0 and self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join(join_s)
        return not self._thread.is_alive()

    def sleep(self, seconds: float) -> bool:
        """Waits up to seconds, less if stop() is called; True once stopping."""
        with self.cond:
            return self.cond.wait_for(lambda: self.stopping, seconds)


class QueueWorker(Worker, Generic[T]):
    """A Worker fed through a queue: put() from any thread, take() in run(); idle once the queue is empty
    and the last items taken are done (done() called)."""

    def __init__(self, name: str, max_queued: int = 0) -> None:
        """max_queued: put() blocks while this many wait (0: no bound)."""
        super().__init__(name)
        self.queue: deque[T] = deque()
        self.max_queued = max_queued
        self._busy = False

    def idle(self) -> bool:
        return not self.queue and not self._busy

    def put(self, item: T) -> None:
        with self.cond:
            while self.max_queued and len(self.queue) >= self.max_queued and not self.stopping:
                self.cond.wait()
            self.queue.append(item)
            self.cond.notify_all()

    def take(
        self, most: int = 0, weigh: Callable[[T], int] | None = None, max_weight: int = 0, block: bool = True
    ) -> list[T]:
        """Blocks until something is queued (block=False: takes what is there now, maybe nothing); returns
        up to most items (0: all), fewer once their weight reaches max_weight. Returns [] once stopping:
        the loop ends, what is left stays queued."""
        with self.cond:
            while block and not self.queue and not self.stopping:
                self.cond.wait()
            if self.stopping:
                return []
            taken: list[T] = []
            weight = 0
            while self.queue and (not most or len(taken) < most) and (not max_weight or weight < max_weight):
                item = self.queue.popleft()
                taken.append(item)
                weight += weigh(item) if weigh is not None else 0
            self._busy = True
            self.cond.notify_all()
            return taken

    def done(self) -> None:
        """The items of the last take() are handled: stop() may go ahead."""
        with self.cond:
            self._busy = False
            self.cond.notify_all()
