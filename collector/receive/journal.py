"""Received samples made durable before the sender hears 2xx: an append-only journal beside the store.

A DuckDB commit of a request's samples costs some 2.5 ms of CPU (a statement,
an Arrow scan, the WAL's fdatasync) whatever its size, and commits are one at
a time: that fixed cost capped what the receiver could take. The same samples
written to a file and fdatasync'd cost about 0.1 ms, with the same guarantee
(DuckDB's own commit is a WAL write and an fdatasync). Settling then moves a
second's worth of samples into the store in one transaction.

The folder holds segments, NNNNNNNNNNNN.rx, each a run of chunks: a header
(magic, sample count, arrival in microseconds since the epoch, CRC-32 of the
payload) and the samples as packed little-endian records (part int32, time
int64 ms, value float64). The settling thread closes the segment in use once a
pass; a closed segment whose newest chunk arrived by the cutoff is settled and
then deleted. A chunk cut short by a crash was never acknowledged (its
fdatasync did not return), so the journal ends before it on reopening.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger("ironsight.collector")

RECORD = np.dtype([("part", "<i4"), ("time", "<i8"), ("value", "<f8")])  # packed: 20 bytes
HEADER = struct.Struct("<4sIqI")  # magic, count, arrival (us), crc32
MAGIC = b"IRX1"
SUFFIX = ".rx"


@dataclass
class Segment:
    path: Path
    samples: int = 0
    newest_us: int = 0  # the newest chunk's arrival
    size: int = 0  # bytes of whole chunks


class Journal:
    """Thread safe: append() from the committing request thread, the rest from the settling thread."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.closed: list[Segment] = [_recover(p) for p in sorted(folder.glob(f"*{SUFFIX}"))]
        self._next = max((int(s.path.stem) for s in self.closed), default=0) + 1
        self._open: Segment | None = None
        self._fd = -1

    @property
    def pending(self) -> int:
        """Samples written and not yet settled."""
        with self._lock:
            return sum(s.samples for s in self.closed) + (self._open.samples if self._open else 0)

    def append(self, part: np.ndarray, time_ms: np.ndarray, value: np.ndarray, arrival_us: int) -> None:
        """The samples on disk when this returns (written and fdatasync'd), or an OSError."""
        records = np.empty(len(part), RECORD)
        records["part"], records["time"], records["value"] = part, time_ms, value
        payload = records.tobytes()
        chunk = HEADER.pack(MAGIC, len(records), arrival_us, zlib.crc32(payload)) + payload
        with self._lock:
            segment = self._open or self._start()
            try:
                if os.write(self._fd, chunk) != len(chunk):  # O_APPEND: one write, at the end
                    raise OSError(errno.ENOSPC, "the journal's write was cut short")
                os.fdatasync(self._fd)
            except OSError:
                # What was half written is cut off, so the next chunk starts where this one did.
                os.ftruncate(self._fd, segment.size)
                raise
            segment.size += len(chunk)
            segment.samples += len(records)
            segment.newest_us = max(segment.newest_us, arrival_us)

    def rotate(self) -> None:
        """Closes the segment in use (if it holds anything): its samples can settle once old enough."""
        with self._lock:
            if self._open is None:
                return
            os.close(self._fd)
            self.closed.append(self._open)
            self._open, self._fd = None, -1

    def ready(self, cutoff_us: int, now_us: int, most: int) -> list[Segment]:
        """Closed segments whose samples all arrived by cutoff, oldest first, up to about `most` samples.
        One that arrived after now was written before the clock was set back: it is ready at once
        rather than hours later (a part of a row that comes after it completes the row)."""
        out: list[Segment] = []
        taken = 0
        with self._lock:
            for s in self.closed:
                if cutoff_us < s.newest_us <= now_us or (out and taken + s.samples > most):
                    break
                out.append(s)
                taken += s.samples
        return out

    @staticmethod
    def read(segments: list[Segment]) -> np.ndarray:
        """Their samples as RECORD rows."""
        return np.concatenate([_records(s.path, s.size) for s in segments] or [np.empty(0, RECORD)])

    def remove(self, segments: list[Segment]) -> None:
        """Settled: gone from the journal."""
        with self._lock:
            for s in segments:
                s.path.unlink(missing_ok=True)
                self.closed.remove(s)
        _sync_dir(self.folder)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self.closed.append(self._open)  # type: ignore[arg-type]  # open while fd >= 0
                self._open, self._fd = None, -1

    def _start(self) -> Segment:
        path = self.folder / f"{self._next:012d}{SUFFIX}"
        self._next += 1
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        _sync_dir(self.folder)  # the new name survives a crash, as the data written to it will
        self._open = Segment(path)
        return self._open


def _chunks(data: bytes, verify: bool) -> Iterator[tuple[int, int, int, int]]:
    """(payload start, payload end, samples, arrival) of each whole chunk, in order; with verify, up to the
    first that is cut short or does not match its magic and CRC."""
    at = 0
    while at + HEADER.size <= len(data):
        magic, count, arrival, crc = HEADER.unpack_from(data, at)
        start, end = at + HEADER.size, at + HEADER.size + count * RECORD.itemsize
        if verify and (magic != MAGIC or end > len(data) or zlib.crc32(data[start:end]) != crc):
            return
        yield start, end, count, arrival
        at = end


def _records(path: Path, size: int) -> np.ndarray:
    with path.open("rb") as f:
        data = f.read(size)
    parts = [np.frombuffer(data, RECORD, count, start) for start, _, count, _ in _chunks(data, verify=False)]
    return np.concatenate(parts) if parts else np.empty(0, RECORD)


def _recover(path: Path) -> Segment:
    """A segment left by an earlier run: its whole chunks; a torn last one (never acknowledged) cut off."""
    data = path.read_bytes()
    segment, at = Segment(path), 0
    for _, end, count, arrival in _chunks(data, verify=True):
        segment.samples += count
        segment.newest_us = max(segment.newest_us, arrival)
        at = end
    if at < len(data):
        torn = path.with_suffix(".torn")
        torn.write_bytes(data[at:])
        log.warning("received-sample journal %s: %d bytes after the last whole chunk, a write a crash cut short "
                    "(never acknowledged, so its sender sent it again): moved to %s", path, len(data) - at, torn)  # fmt: skip
        with path.open("r+b") as f:
            f.truncate(at)
    segment.size = at
    return segment


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
