"""The agent's timeline: one per boot, kept across restarts, a step of the wall clock logged once."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from ironsight.agent.clock import Timeline


def test_a_restart_within_the_boot_stays_on_the_timeline(tmp_path: Path) -> None:
    first = Timeline()
    first.anchor(tmp_path / "timeline", "boot-1")
    restarted = Timeline()
    restarted._offset_ns += 30 * 10**9  # as if the wall clock had been stepped before the restart
    restarted.anchor(tmp_path / "timeline", "boot-1")
    assert abs(restarted.now_ns() - first.now_ns()) < 10**7
    rebooted = Timeline()
    rebooted._offset_ns += 30 * 10**9
    rebooted.anchor(tmp_path / "timeline", "boot-2")  # a new boot: anchored on the wall clock again
    assert abs(rebooted.now_ns() - first.now_ns() - 30 * 10**9) < 10**7


def test_a_step_of_the_wall_clock_is_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    t = Timeline()
    real = time.time_ns
    with caplog.at_level(logging.WARNING, logger="ironsight.agent"):
        assert abs(t.check_wall()) < 10**8
        monkeypatch.setattr(time, "time_ns", lambda: real() - 30 * 10**9)
        for _ in range(5):
            assert abs(t.check_wall() + 30 * 10**9) < 10**8
    assert [r.getMessage()[:40] for r in caplog.records] == ["the system clock moved -30.0s against th"]


def test_an_unwritable_state_dir_still_gives_a_timeline(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    t = Timeline()
    t.anchor(tmp_path / "file" / "timeline", "boot")  # a file where the folder should be
    assert abs(t.now_ns() - time.time_ns()) < 10**8
