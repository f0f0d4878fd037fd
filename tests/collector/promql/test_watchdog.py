"""Query timeouts from one thread: a call runs once its deadline passes, never once disarmed."""

from __future__ import annotations

import threading
import time

from ironsight.collector.promql.watchdog import Watchdog


def test_calls_come_in_deadline_order_and_disarmed_ones_never() -> None:
    dog = Watchdog()
    fired: list[str] = []
    done = threading.Event()
    began = time.monotonic()

    def late() -> None:
        fired.append("late")
        done.set()

    dog.arm(0.30, late)
    dog.arm(0.05, lambda: fired.append("early"))
    dropped = dog.arm(0.10, lambda: fired.append("disarmed"))
    dog.disarm(dropped)
    assert done.wait(5)
    assert fired == ["early", "late"]
    assert time.monotonic() - began >= 0.30
    assert dog.pending() == 0
    dog.disarm(dropped)  # twice, or after its call: nothing to do
    assert dog.pending() == 0


def test_many_queries_share_one_thread() -> None:
    dog = Watchdog(name="test-timeouts")
    before = threading.active_count()
    numbers = [dog.arm(60, lambda: None) for _ in range(200)]
    assert threading.active_count() == before + 1
    assert dog.pending() == 200
    for n in numbers:
        dog.disarm(n)
    assert dog.pending() == 0
