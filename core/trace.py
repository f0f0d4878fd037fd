"""Trace files: the exact batches a set of agents sent, behind a small header.

Layout (all integers little-endian):

    offset 0   8 bytes   magic b"IRSTRACE"
    offset 8   u32       format version (this code writes and reads 1)
    offset 12  u32       header length H
    offset 16  H bytes   ironsight.v1.TraceHeader (protobuf): interval, nodes, labels, source
    then       one zstd frame, with its content checksum, holding records:
                         varint length L, then L bytes of ironsight.v1.Batch

The version comes before anything else so a reader refuses a newer file
instead of misreading it; the zstd checksum makes a truncated or corrupted
file fail as a whole, which is why readers verify a file completely before
anything of it is stored.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import zstandard

from ironsight.core.columnar import values_in
from ironsight.v1 import telemetry_pb2 as pb

MAGIC = b"IRSTRACE"
VERSION = 1
_PREFIX = struct.Struct("<8sII")
MAX_RECORD_BYTES = 256 * 1024 * 1024


class TraceError(Exception):
    """The file is not a trace this version can read, or it is damaged."""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class TraceWriter:
    """Writes a trace; the header may still change (labels found while writing) until close().

    Records are compressed into PATH.part.body; close() writes PATH.part as
    prefix, header and body, then renames it to PATH, so a half-written trace
    never carries the real name.
    """

    def __init__(self, path: str | Path, header: pb.TraceHeader, level: int = 6) -> None:
        self.path = Path(path)
        self.header = header
        self._part = self.path.with_name(self.path.name + ".part")
        self._body_path = self.path.with_name(self.path.name + ".part.body")
        self._body: IO[bytes] = open(self._body_path, "wb")  # noqa: SIM115 - closed in close()
        self._zstd: Any = zstandard.ZstdCompressor(level=level, write_checksum=True).stream_writer(
            self._body, closefd=False
        )
        self.batches = 0

    def write(self, batch: pb.Batch) -> None:
        raw = batch.SerializeToString()
        self._zstd.write(_varint(len(raw)) + raw)
        self.batches += 1

    def close(self) -> None:
        self._zstd.close()  # ends the one frame, checksum included
        self._body.close()
        self.header.version = VERSION
        raw = self.header.SerializeToString()
        with open(self._part, "wb") as out, open(self._body_path, "rb") as body:
            out.write(_PREFIX.pack(MAGIC, VERSION, len(raw)) + raw)
            while chunk := body.read(1 << 20):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        self._body_path.unlink()
        os.replace(self._part, self.path)

    def abort(self) -> None:
        self._zstd.close()
        self._body.close()
        self._body_path.unlink(missing_ok=True)
        self._part.unlink(missing_ok=True)

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.abort()


def read_header(path: str | Path) -> tuple[pb.TraceHeader, int]:
    """The header and the offset where the compressed records start."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            prefix = f.read(_PREFIX.size)
            if len(prefix) < _PREFIX.size:
                raise TraceError(f"{path}: too short to be an ironsight trace")
            magic, version, length = _PREFIX.unpack(prefix)
            if magic != MAGIC:
                raise TraceError(f"{path}: not an ironsight trace (no IRSTRACE magic)")
            if version > VERSION:
                raise TraceError(
                    f"{path}: trace format version {version} is newer than this ironsight reads ({VERSION}); "
                    "upgrade ironsight to read it"
                )
            if version < 1:
                raise TraceError(f"{path}: invalid trace format version {version}")
            raw = f.read(length)
    except OSError as exc:
        raise TraceError(f"{path}: {exc.strerror or exc}") from exc
    if len(raw) < length:
        raise TraceError(f"{path}: truncated inside its header")
    header = pb.TraceHeader()
    try:
        header.ParseFromString(raw)
    except Exception as exc:
        raise TraceError(f"{path}: corrupt header ({exc})") from exc
    return header, _PREFIX.size + length


def _plain_chunks(path: Path, offset: int) -> Iterator[bytes]:
    """The decompressed record stream; raises TraceError unless the zstd frame ends, checksum-verified, at EOF."""
    dobj = zstandard.ZstdDecompressor().decompressobj()
    with open(path, "rb") as f:
        f.seek(offset)
        try:
            while chunk := f.read(1 << 20):
                if dobj.eof:
                    raise TraceError(f"{path}: unexpected data after the end of the trace")
                out = dobj.decompress(chunk)
                if out:
                    yield out
        except zstandard.ZstdError as exc:
            raise TraceError(f"{path}: truncated or corrupt compressed data ({exc})") from exc
    if not dobj.eof:
        raise TraceError(f"{path}: truncated (the compressed data stops before its end)")
    if dobj.unused_data:
        raise TraceError(f"{path}: unexpected data after the end of the trace")


def iter_batches(path: str | Path) -> Iterator[pb.Batch]:
    """Every batch in order. Damage raises TraceError, possibly after some batches: callers
    that must not act half-way call verify() first (or read_all)."""
    path = Path(path)
    _, offset = read_header(path)
    buf = b""
    pos = 0
    chunks = _plain_chunks(path, offset)
    while True:
        # Decode the varint length, pulling more data as needed.
        length, shift, start = 0, 0, pos
        while True:
            if start >= len(buf):
                chunk = next(chunks, b"")
                if not chunk:
                    if start == pos:
                        return  # clean end between records
                    raise TraceError(f"{path}: truncated inside a record length")
                buf, start, pos = buf[pos:] + chunk, start - pos, 0
                continue
            byte = buf[start]
            length |= (byte & 0x7F) << shift
            start += 1
            if not byte & 0x80:
                break
            shift += 7
            if shift > 63:
                raise TraceError(f"{path}: corrupt record length")
        if length > MAX_RECORD_BYTES:
            raise TraceError(f"{path}: record of {length} bytes is larger than any batch")
        while len(buf) - start < length:
            chunk = next(chunks, b"")
            if not chunk:
                raise TraceError(f"{path}: truncated inside a batch")
            buf, start, pos = buf[pos:] + chunk, start - pos, 0
        batch = pb.Batch()
        try:
            batch.ParseFromString(buf[start : start + length])
        except Exception as exc:
            raise TraceError(f"{path}: corrupt batch record ({exc})") from exc
        pos = start + length
        yield batch


def verify(path: str | Path) -> tuple[pb.TraceHeader, int, int]:
    """Reads the whole file, checksum included; returns the header, batch count and value count."""
    header, _ = read_header(path)
    batches = values = 0
    for batch in iter_batches(path):
        batches += 1
        for t in batch.tables:
            values += values_in(t)
    return header, batches, values


def read_all(path: str | Path) -> tuple[pb.TraceHeader, list[pb.Batch]]:
    header, _ = read_header(path)
    return header, list(iter_batches(path))
