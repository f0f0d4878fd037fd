"""Remote write 1.0 on the wire: a request's series as one byte buffer, their samples decoded many at once.

A sender repeats its series in every request and nearly every series carries
one sample, encoded last (gogo-protobuf writes labels, then samples): so a
series' bytes are its label bytes, which name its place, then 18 bytes (tag,
length, a double and a 6-byte varint timestamp) or 9 (a 0 value is left out).
The functions here find that shape for all series of a request with numpy and
decode those samples as one matrix; anything else is parsed message by message.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import cramjam
import numpy as np
from google.protobuf.message import DecodeError

from ironsight.collector.remote_write.encode import length_delimited
from ironsight.prompb import remote_pb2 as prompb

STALE_NAN = 0x7FF0000000000002  # Prometheus's staleness marker: "this series ended", not a value
MAX_BODY = 64 << 20  # decompressed; Prometheus sends a few MB at most

# A refused series' sample: (why, series as name{labels}, time in ms, value); time None when unreadable.
Kept = tuple[str, str, int | None, float | None]


# The slice that leaves out a series' last `tail` bytes, by tail (0: b"", not that shape).
_CUTS = np.array([slice(0, 0)] + [slice(None, -tail) for tail in range(1, 19)], dtype=object)


_slice = cast(Callable[[bytes, slice], bytes], operator.getitem)  # map() over it: no Python call per series


class BadRequest(ValueError):
    """The whole request is unreadable: nothing in it could be stored."""


@dataclass
class Wire:
    """A request's series, joined: series i is buf[ends[i] - lengths[i] : ends[i]]."""

    series: Sequence[bytes]
    buf: np.ndarray  # uint8
    lengths: np.ndarray  # int64
    ends: np.ndarray  # int64
    tails: np.ndarray  # int64: bytes its one sample takes at the end (18 or 9), 0 when not so

    @classmethod
    def of(cls, series: Sequence[bytes]) -> Wire:
        n = len(series)
        lengths = np.fromiter(map(len, series), np.int64, n)
        buf = np.frombuffer(b"".join(series), np.uint8)
        ends = np.cumsum(lengths)
        return cls(series, buf, lengths, ends, _tails(buf, lengths, ends))

    def keys(self) -> list[bytes]:
        """Per series, the label bytes before its one sample; b"" where it has not that shape."""
        return list(map(_slice, self.series, _CUTS[self.tails].tolist()))

    def last_samples(self, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The one sample of each of these series (their tails are not 0): (milliseconds, values)."""
        cut = self.tails[which]
        return samples_at(self.buf, self.ends[which] - cut + 2, cut - 2)


def _tails(buf: np.ndarray, lengths: np.ndarray, ends: np.ndarray) -> np.ndarray:
    out = np.zeros(len(lengths), np.int64)
    for size in (18, 9):  # 0x12, length 16 (a value and a time) or 7 (a time: the value is 0)
        at = np.flatnonzero((out == 0) & (lengths > size))
        head = buf[ends[at] - size], buf[ends[at] - size + 1]
        out[at[(head[0] == 0x12) & (head[1] == size - 2)]] = size
    return out


def whole(raw: bytes) -> tuple[bytes, list[bytes]]:
    """A series parsed field by field: its label bytes (as a key) and its samples' bytes."""
    try:
        ts = prompb.TimeSeriesView.FromString(raw)
    except DecodeError:
        raise BadRequest("a series that is not a prometheus.TimeSeries message") from None
    key = b"".join(length_delimited(0x0A, label) for label in ts.labels)
    return key, list(ts.samples)


def labels_of(key: bytes) -> dict[str, str] | None:
    """Label bytes -> the labels; None when they are not labels alone (a sample among them, bad bytes)."""
    try:
        ts = prompb.TimeSeries.FromString(key)
    except DecodeError:
        return None
    return None if len(ts.samples) else {label.name: label.value for label in ts.labels}


def samples_of(blobs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Encoded prometheus.Sample messages -> (milliseconds, values), all at once."""
    lengths = np.fromiter(map(len, blobs), np.int64, len(blobs))
    return samples_at(np.frombuffer(b"".join(blobs), np.uint8), np.cumsum(lengths) - lengths, lengths)


def samples_at(buf: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The prometheus.Sample messages at buf[starts[i] : starts[i] + sizes[i]] -> (milliseconds, values).

    A sample is a double (tag 0x09, 8 bytes; absent when 0) and a varint timestamp (tag 0x10), which
    for any time from 1971 to 2109 takes 6 bytes: so nearly every sample is 16 bytes (or 7 for a 0)
    laid out the same way, decoded as a numpy matrix. Any other shape is parsed one by one."""
    n = len(starts)
    t, v = np.zeros(n, np.int64), np.zeros(n, np.float64)
    slow = np.ones(n, bool)
    every = sizes == 16
    idx = np.arange(n) if every.all() else np.flatnonzero(every)
    if len(idx):
        ok, t16, v16 = _sixteen(buf, starts[idx])
        t[idx], v[idx], slow[idx] = t16, v16, ~ok
    idx = np.flatnonzero(sizes == 7)
    if len(idx):  # a 0: no value field
        m = _rows(buf, starts[idx], 7)
        ok = (m[:, 0] == 0x10) & np.all(m[:, 1:6] >= 0x80, axis=1) & (m[:, 6] < 0x80)
        t[idx[ok]] = ((m[ok, 1:] & 0x7F).astype(np.int64) << (7 * np.arange(6, dtype=np.int64))).sum(axis=1)
        slow[idx[ok]] = False
    for i in np.flatnonzero(slow).tolist():  # other shapes, and those the checks above turned down
        try:
            sample = prompb.Sample.FromString(buf[starts[i] : starts[i] + sizes[i]].tobytes())
        except DecodeError:
            raise BadRequest("a sample that is not a prometheus.Sample message") from None
        t[i], v[i] = sample.timestamp, sample.value
    return t, v


# The 16-byte shape as two little-endian words: lo = 0x09 and the value's first 7 bytes; hi = its last byte,
# 0x10, five varint bytes with the continuation bit and a last one without.
_CONTINUED = np.uint64(sum(1 << (8 * k + 7) for k in range(2, 7)))
_CONTINUATION = _CONTINUED | np.uint64(1 << 63)


def _sixteen(buf: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(whether each has the shape, milliseconds, values) of 16-byte samples, on whole words."""
    w = _rows(buf, starts, 16).view("<u8")  # the gather's copy is contiguous: two words a row
    lo, hi = w[:, 0], w[:, 1]
    ok = ((lo & np.uint64(0xFF)) == 0x09) & (((hi >> np.uint64(8)) & np.uint64(0xFF)) == 0x10)
    ok &= (hi & _CONTINUATION) == _CONTINUED
    value = ((lo >> np.uint64(8)) | (hi << np.uint64(56))).view("<f8")
    ms = np.zeros(len(hi), np.uint64)
    for k in range(6):
        ms |= ((hi >> np.uint64(16 + 8 * k)) & np.uint64(0x7F)) << np.uint64(7 * k)
    return ok, ms.view(np.int64), value


def _rows(buf: np.ndarray, starts: np.ndarray, size: int) -> np.ndarray:
    """Each sample's bytes as a row of a window view of buf: one gather, no index matrix."""
    windows: np.ndarray = np.lib.stride_tricks.as_strided(
        buf, (len(buf) - size + 1, size), (1, 1), writeable=False
    )
    rows: np.ndarray = windows[starts]
    return rows


def parse(body: bytes) -> prompb.WriteRequestRaw:
    """Snappy-compressed WriteRequest bytes -> the message; BadRequest when they are not that."""
    try:
        raw = bytes(cramjam.snappy.decompress_raw(body))
    except Exception as exc:  # cramjam raises its own DecompressionError
        raise BadRequest(f"the body is not snappy-compressed (block format): {exc}") from None
    if len(raw) > MAX_BODY:
        raise BadRequest(f"the decompressed request is {len(raw)} bytes, over {MAX_BODY}")
    request = prompb.WriteRequestRaw()
    try:
        request.ParseFromString(raw)
    except DecodeError as exc:
        raise BadRequest(f"the body is not a prometheus.WriteRequest: {exc}") from None
    return request


def kept(raw: bytes, why: str, shown: str) -> list[Kept]:
    """A refused series' samples as they came (staleness markers too: kept means all of it)."""
    try:
        ts = prompb.TimeSeries.FromString(raw)
    except DecodeError:
        return [(why, shown, None, None)]
    return [(why, shown, s.timestamp, s.value) for s in ts.samples] or [(why, shown, None, None)]


def show(raw: bytes) -> str:
    """A series as name{labels} for a person, sorted labels, whatever its encoding."""
    try:
        ts = prompb.TimeSeriesView.FromString(raw)
        labels = {label.name: label.value for label in map(prompb.Label.FromString, ts.labels)}
    except DecodeError:
        return "(unreadable labels)"
    name = labels.pop("__name__", "")
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"
