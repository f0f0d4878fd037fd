"""The agent's on-disk spool: every batch is written here before it is sent and removed once acknowledged.

Segment files of checksummed records (length, CRC-32 of the payload, the
serialized Batch), appended in order; a new segment at each start and every
segment_bytes. A segment is deleted when all its batches are acknowledged
and it is no longer written to. On start the segments left behind (a restart,
a crash) are read back and their batches sent again, oldest first; the
collector's dedupe makes the ones it already had harmless. A torn or corrupt
record ends the reading of its segment with one log line: what came before it
is kept. Past max_bytes the oldest segment is dropped and its unacknowledged
batches counted. Writes go to the page cache (a killed agent loses nothing;
a power cut may lose the last seconds): segments are fsynced when closed.
"""

from __future__ import annotations

import bisect
import fcntl
import logging
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("ironsight.agent")

HEADER = struct.Struct("<II")  # payload length, CRC-32 of the payload
SUFFIX = ".spool"
MAX_RECORD = 64 * 1024 * 1024


class OrderedBacklog:
    """Unacknowledged batches by seq, ascending: what the sender sends next, and how far ahead it is."""

    def __init__(self) -> None:
        self._order: list[int] = []  # pending seqs, ascending

    def next_after(self, seq: int) -> int | None:
        """The oldest pending seq above seq."""
        i = bisect.bisect_right(self._order, seq)
        return self._order[i] if i < len(self._order) else None

    def count_through(self, seq: int) -> int:
        """Pending batches with a seq up to seq (sent on this stream, not yet acknowledged)."""
        return bisect.bisect_right(self._order, seq)

    def __len__(self) -> int:
        return len(self._order)

    def _insert(self, seq: int) -> None:
        bisect.insort(self._order, seq)

    def _discard(self, seq: int) -> None:
        i = bisect.bisect_left(self._order, seq)
        if i < len(self._order) and self._order[i] == seq:
            del self._order[i]


class SpoolError(Exception):
    """The spool directory cannot be used (not writable, or another agent holds it)."""


@dataclass
class _Segment:
    number: int
    path: Path
    size: int = 0
    pending: set[int] = field(default_factory=set)  # seqs not yet acknowledged


@dataclass
class _Entry:
    segment: _Segment
    offset: int  # of the payload
    length: int


class Spool(OrderedBacklog):
    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int = 4 * 1024 * 1024) -> None:
        super().__init__()
        self.dir = directory
        self.max_bytes = max_bytes
        self.segment_bytes = min(segment_bytes, max(max_bytes // 4, 64 * 1024))
        self.dropped = 0  # batches dropped unacknowledged because the spool was full
        self.corrupt = 0  # records skipped as torn or corrupt
        self._entries: dict[int, _Entry] = {}
        self._segments: list[_Segment] = []
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._lock = open(directory / "lock", "a+")  # noqa: SIM115 - held for the agent's life
        except OSError as exc:
            raise SpoolError(f"spool directory {directory}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SpoolError(f"spool directory {directory} is in use by another agent") from None
        self._recover()
        self._file = self._new_segment()

    # -- reading back what a previous run left ------------------------------------------------

    def _recover(self) -> None:
        numbers = sorted(int(p.stem) for p in self.dir.glob(f"*{SUFFIX}") if p.stem.isdigit())
        for number in numbers:
            seg = _Segment(number, self.dir / f"{number:012d}{SUFFIX}")
            seg.size = self._scan(seg)
            if seg.pending:
                self._segments.append(seg)
            else:
                seg.path.unlink(missing_ok=True)
        if self._entries:
            log.info(
                "spool: %d unacknowledged batches from a previous run will be sent first", len(self._order)
            )

    def _scan(self, seg: _Segment) -> int:
        from ironsight.v1 import telemetry_pb2 as pb

        data = seg.path.read_bytes()
        pos = 0
        while pos < len(data):
            if pos + HEADER.size > len(data):
                self._corrupt(seg, pos, "torn header")
                break
            length, crc = HEADER.unpack_from(data, pos)
            start = pos + HEADER.size
            payload = data[start : start + length]
            if length > MAX_RECORD or len(payload) < length or zlib.crc32(payload) != crc:
                self._corrupt(seg, pos, "bad length or checksum")
                break
            try:
                seq = pb.Batch.FromString(payload).seq
            except Exception:
                self._corrupt(seg, pos, "not a batch")
                break
            self._add(seq, _Entry(seg, start, length))
            pos = start + length
        return pos

    def _corrupt(self, seg: _Segment, pos: int, why: str) -> None:
        self.corrupt += 1
        log.warning("spool: %s in %s at byte %d (%s); skipping the rest of that file", why, seg.path.name, pos,
                    "a torn write from a crash, or damage")  # fmt: skip

    # -- writing ----------------------------------------------------------------------------------

    def _new_segment(self) -> _Segment:
        number = self._segments[-1].number + 1 if self._segments else 1
        seg = _Segment(number, self.dir / f"{number:012d}{SUFFIX}")
        self._segments.append(seg)
        self._fd = os.open(seg.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return seg

    def append(self, seq: int, payload: bytes) -> None:
        seg = self._file
        if seg.size >= self.segment_bytes:
            self._close_segment()
            seg = self._file = self._new_segment()
        os.write(self._fd, HEADER.pack(len(payload), zlib.crc32(payload)) + payload)
        self._add(seq, _Entry(seg, seg.size + HEADER.size, len(payload)))
        seg.size += HEADER.size + len(payload)
        self._enforce_limit()

    def _close_segment(self) -> None:
        os.fsync(self._fd)
        os.close(self._fd)
        if not self._file.pending:
            self._remove(self._file)

    def _enforce_limit(self) -> None:
        while self.bytes() > self.max_bytes and len(self._segments) > 1:
            oldest = self._segments[0]
            lost = len(oldest.pending)
            for seq in list(oldest.pending):
                self._forget(seq)
            self._remove(oldest)
            self.dropped += lost
            log.warning("spool full (%d bytes): dropped %d oldest batches (%d so far)", self.max_bytes, lost,
                        self.dropped)  # fmt: skip

    # -- bookkeeping ------------------------------------------------------------------------------

    def _add(self, seq: int, entry: _Entry) -> None:
        if seq in self._entries:  # the same batch twice (a resend spooled again): keep the first
            return
        self._entries[seq] = entry
        entry.segment.pending.add(seq)
        self._insert(seq)

    def _forget(self, seq: int) -> _Entry | None:
        entry = self._entries.pop(seq, None)
        if entry is not None:
            entry.segment.pending.discard(seq)
            self._discard(seq)
        return entry

    def _remove(self, seg: _Segment) -> None:
        seg.path.unlink(missing_ok=True)
        if seg in self._segments:
            self._segments.remove(seg)

    def ack(self, seq: int) -> bool:
        entry = self._forget(seq)
        if entry is None:
            return False
        seg = entry.segment
        if not seg.pending and seg is not self._file:
            self._remove(seg)
        return True

    def read(self, seq: int) -> bytes | None:
        """The batch as it was spooled; None (and forgotten) when its record no longer checks out."""
        entry = self._entries.get(seq)
        if entry is None:
            return None
        try:
            with open(entry.segment.path, "rb") as f:
                f.seek(entry.offset - HEADER.size)
                header = f.read(HEADER.size)
                payload = f.read(entry.length)
        except OSError as exc:
            log.warning("spool: cannot read back batch %d: %s; skipping it", seq, exc)
            payload, header = b"", b""
        if len(header) == HEADER.size and HEADER.unpack(header) == (len(payload), zlib.crc32(payload)):
            return payload
        self.corrupt += 1
        self.ack(seq)
        return None

    def bytes(self) -> int:
        return sum(s.size for s in self._segments)

    def close(self) -> None:
        self._close_segment()
        self._lock.close()
