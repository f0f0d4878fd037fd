"""The collector's estimate of a node's clock, and the shift its samples get."""

from __future__ import annotations

import logging

import pytest

from ironsight.collector.clocks import Clocks

S = 10**9


def test_the_estimate_is_the_smallest_measurement_as_delay_only_adds() -> None:
    c = Clocks()
    now = 1_790_000_000 * S
    for delay in (0.3, 0.05, 2.0, 0.1):
        c.shift("n", "b", now + 7200 * S - int(delay * S), now, 1.0)  # the node's clock 2 h ahead
    assert c.offsets_s() == {"n": pytest.approx(-7200 + 0.05)}


def test_within_tolerance_as_stamped_beyond_it_shifted_in_whole_intervals(
    caplog: pytest.LogCaptureFixture,
) -> None:
    c = Clocks()
    now = 1_790_000_000 * S
    assert c.shift("n", "b", now - 3 * S, now, 0.5) == 0  # 3 s off: the node's business
    assert c.shift("n", "b", 0, now, 0.5) == 0  # no send time: a replayed trace
    with caplog.at_level(logging.INFO, logger="ironsight.collector"):
        c2 = Clocks()
        shifts = [c2.shift("m", "b", now - int(86_400.3 * S), now, 0.5) for _ in range(3)]
        assert shifts == [86_400 * S + S // 2] * 3  # 86400.3 s, in whole 0.5 s intervals
        assert all(s % (S // 2) == 0 for s in shifts)
        c2.shift("m", "b2", now - S // 10, now, 0.5)  # rebooted with a synced clock: measured anew
        assert c2.offsets_s()["m"] == pytest.approx(0.1)
    lines = [r.getMessage() for r in caplog.records]
    assert len([m for m in lines if "behind the collector's" in m]) == 1
    assert len([m for m in lines if "within 5s" in m]) == 1


def test_a_broken_interval_does_not_break_the_measurement() -> None:
    c = Clocks()
    assert c.shift("n", "b", 1, 3600 * S, float("nan")) == 3600 * S - 1  # check() refuses the batch later
