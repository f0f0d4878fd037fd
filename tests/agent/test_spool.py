"""The agent's on-disk spool: order, acknowledgement, restarts, torn and corrupt records, the byte bound."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ironsight.agent.spool import Spool, SpoolError
from ironsight.v1 import telemetry_pb2 as pb


def batch(seq: int, size: int = 100) -> bytes:
    """A serialized batch of about size bytes."""
    return pb.Batch(
        node_id="n1", boot_id="b", seq=seq, node=pb.NodeInfo(hostname="x" * size)
    ).SerializeToString()


def pending(s: Spool) -> list[int]:
    out, seq = [], -1
    while (seq := s.next_after(seq)) is not None:  # type: ignore[assignment]
        out.append(seq)
    return out


def test_batches_come_back_in_order_until_acknowledged(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=1000)
    for seq in range(1, 31):
        s.append(seq, batch(seq))
    assert pending(s) == list(range(1, 31)) and len(s) == 30
    assert pb.Batch.FromString(s.read(7) or b"").seq == 7
    segments = len(list(tmp_path.glob("*.spool")))
    assert segments > 3
    for seq in range(1, 21):
        assert s.ack(seq)
    assert not s.ack(5)  # twice: nothing
    assert pending(s) == list(range(21, 31)) and s.count_through(25) == 5
    assert len(list(tmp_path.glob("*.spool"))) < segments  # fully acknowledged files are gone
    s.close()


def test_a_restart_sends_what_was_not_acknowledged(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_bytes=1 << 20)
    for seq in range(1, 11):
        s.append(seq, batch(seq))
    for seq in range(1, 4):
        s.ack(seq)
    s.close()
    again = Spool(tmp_path, max_bytes=1 << 20)
    # Acknowledgements are not written down: a file not wholly acknowledged is resent whole
    # (the collector dedupes).
    assert pending(again) == list(range(1, 11))
    again.append(11, batch(11))
    assert pending(again)[-1] == 11
    again.close()


def test_a_torn_tail_keeps_what_came_before(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    s = Spool(tmp_path, max_bytes=1 << 20)
    for seq in range(1, 6):
        s.append(seq, batch(seq))
    s.close()
    (f,) = tmp_path.glob("*.spool")
    f.write_bytes(f.read_bytes()[:-7])  # a crash in the middle of the last write
    with caplog.at_level(logging.WARNING):
        again = Spool(tmp_path, max_bytes=1 << 20)
    assert pending(again) == [1, 2, 3, 4] and again.corrupt == 1
    assert sum("skipping the rest" in r.message for r in caplog.records) == 1
    again.close()


def test_a_corrupt_record_and_garbage_files_never_crash(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_bytes=1 << 20)
    for seq in range(1, 6):
        s.append(seq, batch(seq))
    s.close()
    (f,) = tmp_path.glob("*.spool")
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped bit in the third record
    f.write_bytes(bytes(data))
    (tmp_path / "000000000000.spool").write_bytes(b"\xff" * 50)  # garbage, sorts first
    again = Spool(tmp_path, max_bytes=1 << 20)
    assert pending(again) == [1, 2] and again.corrupt == 2
    # Damage after start is caught when the batch is read back: skipped, not sent.
    again.append(9, batch(9))
    seg = next(p for p in sorted(tmp_path.glob("*.spool")) if p.stat().st_size > 0 and p.name != f.name)
    raw = bytearray(seg.read_bytes())
    raw[-3] ^= 0xFF
    seg.write_bytes(bytes(raw))
    assert again.read(9) is None and 9 not in pending(again)
    again.close()


def test_a_full_spool_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_bytes=100_000, segment_bytes=10_000)
    for seq in range(1, 201):
        s.append(seq, batch(seq, size=1000))  # ~1 kB each: 200 kB offered
    assert s.bytes() <= 100_000 + 10_000
    kept = pending(s)
    assert kept == list(range(kept[0], 201))  # the newest, contiguous
    assert s.dropped == 200 - len(kept) > 0
    s.close()


def test_one_agent_per_spool_and_clear_errors(tmp_path: Path) -> None:
    s = Spool(tmp_path, max_bytes=1 << 20)
    with pytest.raises(SpoolError, match="in use by another agent"):
        Spool(tmp_path, max_bytes=1 << 20)
    s.close()
    (tmp_path / "file").write_text("x")
    with pytest.raises(SpoolError, match=r"spool directory .*file/spool"):
        Spool(tmp_path / "file" / "spool", max_bytes=1 << 20)
