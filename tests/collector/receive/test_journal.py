"""The journal received samples are committed to: exact back, a torn write cut off and kept aside, a failed
write leaving nothing half there, and a restart settling what an earlier run acknowledged."""

from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from ironsight.collector.receive.journal import HEADER, RECORD, Journal

from support.receive import GPU, LATER, Rx, T, request


def _append(j: Journal, n: int, start: int, arrival_us: int) -> None:
    j.append(
        np.arange(start, start + n, dtype=np.int32),
        T + np.arange(n),
        np.linspace(0, 1, n) + start,
        arrival_us,
    )


def test_samples_come_back_exact_and_settle_by_arrival(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j")
    _append(j, 3, 0, 1_000)
    _append(j, 2, 10, 2_000)
    assert j.ready(10**18, 10**18, 100) == []  # the segment in use never settles
    j.rotate()
    _append(j, 4, 20, 9_000)
    j.rotate()
    assert j.pending == 9
    first = j.ready(5_000, 10_000, 100)  # the second segment's samples arrived after the cutoff
    assert [s.samples for s in first] == [5]
    got = j.read(first)
    assert got["part"].tolist() == [0, 1, 2, 10, 11]
    assert got["time"].tolist() == [T, T + 1, T + 2, T, T + 1]
    assert got["value"].tolist() == [0.0, 0.5, 1.0, 10.0, 11.0]
    assert [s.samples for s in j.ready(10_000, 10_000, 100)] == [5, 4]
    assert [s.samples for s in j.ready(10_000, 10_000, 6)] == [5]  # at most about `most`, whole segments
    # The clock set back an hour: what arrived "after now" was written before, and settles at once.
    assert [s.samples for s in j.ready(2_000, 3_000, 100)] == [5, 4]
    assert [s.samples for s in j.ready(1_000, 3_000, 100)] == []  # the first is not old enough yet
    j.remove(first)
    assert j.pending == 4 and len(list((tmp_path / "j").iterdir())) == 1
    j.close()
    again = Journal(tmp_path / "j")  # a restart finds what was not settled
    assert again.pending == 4 and again.read(again.ready(10_000, 10_000, 100))["part"].tolist() == [
        20,
        21,
        22,
        23,
    ]


def test_a_write_a_crash_cut_short_is_cut_off_and_kept_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    j = Journal(tmp_path / "j")
    _append(j, 3, 0, 1_000)
    _append(j, 2, 10, 1_000)
    j.close()
    (segment,) = (tmp_path / "j").glob("*.rx")
    whole = segment.read_bytes()
    torn = whole + whole[: HEADER.size + RECORD.itemsize + 7]  # a third chunk, half written
    segment.write_bytes(torn)
    with caplog.at_level(logging.WARNING, "ironsight.collector"):
        again = Journal(tmp_path / "j")
    assert again.pending == 5 and segment.read_bytes() == whole
    assert segment.with_suffix(".torn").read_bytes() == torn[len(whole) :]
    assert "moved to" in caplog.text
    _append(again, 1, 30, 2_000)  # and the journal goes on after it
    again.rotate()
    assert again.read(again.ready(10_000, 10_000, 100))["part"].tolist() == [0, 1, 2, 10, 11, 30]


def test_a_failed_write_leaves_nothing_of_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    j = Journal(tmp_path / "j")
    _append(j, 2, 0, 1_000)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fdatasync", full)
    with pytest.raises(OSError, match="No space"):
        _append(j, 5, 10, 1_000)
    monkeypatch.undo()
    _append(j, 1, 20, 1_000)
    j.rotate()
    assert j.pending == 3 and j.read(j.ready(10_000, 10_000, 100))["part"].tolist() == [0, 1, 20]


def test_what_was_acknowledged_settles_after_a_restart_and_settling_twice_changes_nothing(
    tmp_path: Path,
) -> None:
    r = Rx(tmp_path)
    assert (
        r.post(request(("DCGM_FI_DEV_GPU_UTIL", GPU, [(T, 97)]), ("DCGM_FI_DEV_GPU_TEMP", GPU, [(T, 71)])))[0]
        == 204
    )
    r.staging.close()  # stopped before settling: the samples are only in the journal
    r.store.close()
    folder = tmp_path / "rx.duckdb.received"
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    r = Rx(tmp_path)
    assert r.staging.backlog == 2
    assert r.staging.settle(LATER) == 1 and r.staging.backlog == 0
    assert list(folder.glob("*.rx")) == []  # settled, then gone
    for p in copy.iterdir():  # a crash after the settle committed and before its segments were deleted
        shutil.copy(p, folder / p.name)
    r.staging.close()
    r.store.close()
    r = Rx(tmp_path)
    assert r.staging.settle(LATER) == 0
    assert r.rows("SELECT util_gpu_percent, temperature_celsius FROM gpu") == [(97.0, 71.0)]
