"""The batcher hands on only what the collector takes: a table it would refuse is left out alone, counted."""

from __future__ import annotations

import logging
import math
import time

import pytest

from ironsight.agent.batch import Batcher
from ironsight.agent.runner import Tick
from ironsight.core import columnar
from ironsight.core.reading import GpuOwner, GpuProc, Owners, Reading
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
    assert columnar.table_lists(batch.tables[1])[0] == ("ñic0",)
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


def owned(job: str, pids: tuple[int, ...] = (7,), memory: int = 1 << 30) -> Tick:
    t = tick("eth0")
    t.reading.owners = Owners(
        ("0", "1"),
        (GpuOwner("0", job, "slurm", (("user", "ana"),)),),
        tuple(GpuProc("0", pid, "python", job, memory, None) for pid in pids),
    )
    return t


def test_who_owns_the_gpus_is_sent_when_it_changes_and_each_minute() -> None:
    b = Batcher("n1", "boot", 1.0)
    sent = []
    for t in (owned("11"), owned("11", memory=2 << 30), owned("12"), owned("12", pids=(7, 8))):
        b.add(t)
        batch = b.flush()
        assert batch is not None
        check(batch)
        sent.append(batch.ownership if batch.HasField("ownership") else None)
    first, same, changed, more = sent
    assert first is not None and list(first.gpus) == ["0", "1"]
    assert [(j.gpu, j.job, j.source, dict(j.attrs)) for j in first.jobs] == [
        ("0", "11", "slurm", {"user": "ana"})
    ]
    assert [(p.pid, p.used_memory_bytes, math.isnan(p.sm_util_percent)) for p in first.processes] == [
        (7, 1 << 30, True)
    ]
    assert same is None  # only its memory moved
    assert changed is not None and [j.job for j in changed.jobs] == ["12"]
    assert more is not None and [p.pid for p in more.processes] == [7, 8]
    late = owned("12", pids=(7, 8))
    late.time_ns += 61 * 10**9
    b.add(late)
    batch = b.flush()
    assert batch is not None and batch.HasField("ownership")  # a minute on: sent again unchanged


def test_a_malformed_look_is_left_out_and_the_samples_go_on(caplog: pytest.LogCaptureFixture) -> None:
    b = Batcher("n1", "boot", 1.0)
    t = owned("bad\njob")
    with caplog.at_level(logging.WARNING, logger="ironsight.agent"):
        b.add(t)
        batch = b.flush()
    assert (
        batch is not None
        and not batch.HasField("ownership")
        and [x.name for x in batch.tables] == ["load", "nic"]
    )
    assert "job ownership left out of the batch" in caplog.text
    assert b.refused[("ownership", "malformed")] == 1
