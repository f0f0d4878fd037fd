"""The batcher hands on only what the collector takes: a table it would refuse is left out alone, counted."""

from __future__ import annotations

import logging
import time

import pytest

from ironsight.agent.batch import Batcher
from ironsight.agent.runner import Tick
from ironsight.core import columnar
from ironsight.core.reading import Reading
from ironsight.core.validate import check


def tick(nic: str) -> Tick:
    reading = Reading()
    reading.add("load", "", {"load1": 0.5, "load5": 0.4, "load15": 0.3})
    reading.add("nic", nic, {"rx_bytes": 10, "tx_bytes": 20, "up": 1})
    return Tick(time.time_ns(), reading)


def test_unusual_names_pass_whole() -> None:
    b = Batcher("n1", "boot", 1.0)
    b.add(tick("ñic0"))
    batch = b.flush()
    assert batch is not None and [t.name for t in batch.tables] == ["load", "nic"]
    assert list(batch.tables[1].devices) == ["ñic0"]
    check(batch)  # the collector's own structure check


def test_a_table_the_collector_would_refuse_is_left_out_counted_and_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # As an encoder that forgot to escape would send it: the collector refuses a control character.
    monkeypatch.setattr(columnar, "device_name", lambda name: name)
    b = Batcher("n1", "boot", 1.0)
    kept = []
    with caplog.at_level(logging.WARNING, logger="ironsight.agent"):
        for _ in range(3):
            b.add(tick("evil\x00"))
            b.add(tick("evil\x00"))
            batch = b.flush()
            assert batch is not None
            kept.append([t.name for t in batch.tables])
            check(batch)
    assert kept == [["load"]] * 3  # the rest of each tick went on
    assert b.refused == {("nic", "names"): 6}  # rows, by table and reason
    lines = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(lines) == 1 and "table nic" in lines[0] and "control character" in lines[0]


def test_a_batch_with_nothing_left_is_not_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(columnar, "device_name", lambda name: name)
    b = Batcher("n1", "boot", 1.0)
    reading = Reading()
    reading.add("nic", "bad\x00", {"rx_bytes": 1})
    b.add(Tick(time.time_ns(), reading))
    assert b.flush() is None and b.refused == {("nic", "names"): 1}


def test_times_are_checked_against_the_agents_timeline_not_the_wall_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The wall clock set right (2 h back) under a running agent: its timeline, and its stamps, stay 2 h ahead.
    The collector corrects the offset; the batcher must not leave the tick out for it."""
    from ironsight.agent.clock import TIMELINE

    b = Batcher("n1", "boot", 1.0)
    b.add(Tick(TIMELINE.now_ns(), tick("eth0").reading))
    real = time.time_ns
    monkeypatch.setattr(time, "time_ns", lambda: real() - 7200 * 10**9)
    batch = b.flush()
    assert batch is not None and [t.name for t in batch.tables] == ["load", "nic"] and b.refused == {}
