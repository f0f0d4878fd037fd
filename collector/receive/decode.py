"""A remote-write request -> the samples ironsight has columns for, as one Arrow table, and what it left.

Protocol 1.0 (snappy block compression, prometheus.WriteRequest). Each series'
labels are looked up once per distinct label set (a sender repeats its series
in every request), so a request costs a dict lookup per series and its samples
go straight into arrays. Prometheus's staleness markers (a NaN with one bit
pattern) are not values and are skipped; any other NaN or infinity is refused
with its series, as the agent refuses them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import cramjam
import numpy as np
import pyarrow as pa
from google.protobuf.message import DecodeError

from ironsight.collector.receive.mapping import INVENTORY_LABELS, device, family, target
from ironsight.collector.remote_write.encode import length_delimited
from ironsight.prompb import remote_pb2 as prompb

STALE_NAN = 0x7FF0000000000002  # Prometheus's staleness marker: "this series ended", not a value
MAX_BODY = 64 << 20  # decompressed; Prometheus sends a few MB at most
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_PORT = re.compile(r":\d+$")
CACHE_SERIES = 1_000_000  # label sets remembered; past it the cache starts again

ROWS = pa.schema([("part", pa.int32()), ("time", pa.timestamp("ms")), ("value", pa.float64())])
Part = tuple[str, str, str, str]  # node, table, device, column: a place samples are stored in


class BadRequest(ValueError):
    """The whole request is unreadable: nothing in it could be stored."""


@dataclass(frozen=True)
class _Series:
    """Where a label set's samples go: node, table, device, column and factor, or why nowhere."""

    node: str = ""
    table: str = ""
    device: str = ""
    column: str = ""
    factor: float = 1.0
    dropped: str = ""  # the family: ironsight has no column for it
    refused: str = ""  # why it is malformed
    hostname: str = ""
    inventory: tuple[tuple[str, str], ...] = ()
    part: int = -1  # the place's number in received_parts


# A refused series' sample: (why, series as name{labels}, time in ms, value); time None when unreadable.
Kept = tuple[str, str, int | None, float | None]


@dataclass
class Decoded:
    rows: pa.Table  # part, time, value
    nodes: set[str] = field(default_factory=set)  # the nodes it has samples of
    hostnames: dict[str, str] = field(default_factory=dict)
    inventory: dict[tuple[str, str, str], dict[str, str]] = field(
        default_factory=dict
    )  # (node, kind, device)
    refused: list[str] = field(default_factory=list)  # "series: why", one per refused series
    kept: list[Kept] = field(default_factory=list)  # the refused series' samples, to be kept
    dropped: Counter[str] = field(default_factory=Counter)  # samples per family without a column
    series: int = 0  # series mapped to a column
    samples: int = 0  # samples in the request, stored or not


def node_of(value: str, strip_port: bool) -> str:
    """A node id from an instance label: "gpu-7:9100" -> "gpu-7", "[fe80::1]:9400" -> "fe80::1"."""
    if strip_port and _PORT.search(value):
        value = _PORT.sub("", value)
    return value.removeprefix("[").removesuffix("]") if value.startswith("[") else value


class Decoder:
    """Remembers each label set's place, across requests, for one collector's mapping settings."""

    def __init__(
        self,
        node_label: str = "instance",
        strip_port: bool = True,
        parts: dict[Part, int] | None = None,
        register: Callable[[list[tuple[int, Part]]], None] | None = None,
    ) -> None:
        """parts: the places numbered so far (received_parts); register(new): stores new ones, committed,
        before any sample names them."""
        self.node_label = node_label
        self.strip_port = strip_port
        self.parts: dict[Part, int] = dict(parts or {})
        self._node_of = {i: p[0] for p, i in self.parts.items()}
        self._next = max(self.parts.values(), default=-1) + 1
        self._register = register
        self._new: list[tuple[int, Part]] = []
        self._fresh: list[_Series] = []  # places first met in this request: their hostname and inventory
        self._cache: dict[bytes, _Series] = {}

    def decode(self, body: bytes, allowed: Callable[[str], bool]) -> Decoded:
        """The request's samples; allowed(node) says whether the sender may write for that node."""
        series = parse(body).timeseries
        places: list[_Series] = []
        counts: list[int] = []
        blobs: list[bytes] = []
        out = Decoded(ROWS.empty_table())
        cache = self._cache
        may: dict[str, bool] = {}  # allowed(node), asked once a node
        for raw, cut in zip(series, _tails(series), strict=True):
            # Most series carry one sample, encoded last: the bytes before it are the labels, a key.
            key = raw[:-cut] if cut else b""
            place = (cache.get(key) or self._place(key)) if cut else None
            if place is not None:
                samples = [raw[2 - cut :]]
            else:
                key, samples = _whole(raw)
                place = (
                    cache.get(key)
                    or self._place(key)
                    or _Series(refused="a series whose labels cannot be read")
                )
            out.samples += len(samples)
            if place.dropped:
                out.dropped[place.dropped] += len(samples)
                continue
            if not place.refused:
                ok = may.get(place.node)
                if ok is None:
                    ok = may[place.node] = allowed(place.node)
                if not ok:
                    place = _Series(refused=f"this sender may not write for instance {place.node!r}")
            if place.refused:
                shown = _show(raw)
                out.refused.append(f"{shown}: {place.refused}")
                out.kept.extend(_kept(raw, place.refused, shown))
                continue
            places.append(place)
            counts.append(len(samples))
            blobs.extend(samples)
        out.series = len(places)
        times, values = samples_of(blobs)
        self._announce(out)
        out.rows = self._rows(places, np.array(counts, np.int64), times, values, out)
        out.nodes = {self._node_of[i] for i in np.unique(out.rows.column("part").to_numpy()).tolist()}
        return out

    def _announce(self, out: Decoded) -> None:
        """New places stored before a sample names them; what they say of their node and device."""
        new, self._new = self._new, []
        if new and self._register is not None:
            try:
                self._register(new)
            except Exception:
                for _, part in new:  # met again, they are numbered and stored again
                    del self.parts[part]
                self._cache.clear()
                raise
        fresh, self._fresh = self._fresh, []
        for p in fresh:
            if p.hostname:
                out.hostnames[p.node] = p.hostname
            if p.inventory:
                out.inventory.setdefault((p.node, p.table, p.device), {}).update(p.inventory)

    def _place(self, key: bytes) -> _Series | None:
        """Where the series with these label bytes goes; None when they are not labels alone."""
        try:
            ts = prompb.TimeSeriesView.FromString(key)
            labels = {label.name: label.value for label in map(prompb.Label.FromString, ts.labels)}
        except DecodeError:
            return None
        if ts.samples:
            return None  # more than one sample: the bytes before the last are not the labels alone
        if len(self._cache) >= CACHE_SERIES:
            self._cache.clear()
        place = _where(labels, self.node_label, self.strip_port)
        if not place.dropped and not place.refused:
            where = (place.node, place.table, place.device, place.column)
            number = self.parts.get(where)
            if number is None:
                number = self.parts[where] = self._next
                self._next += 1
                self._node_of[number] = place.node
                self._new.append((number, where))
            place = replace(place, part=number)
            self._fresh.append(place)
        self._cache[key] = place
        return place

    @staticmethod
    def _rows(
        places: list[_Series], counts: np.ndarray, t: np.ndarray, v: np.ndarray, out: Decoded
    ) -> pa.Table:
        if not places:
            return ROWS.empty_table()
        which = np.repeat(np.arange(len(places)), counts)
        keep = v.view(np.uint64) != STALE_NAN
        bad = ~np.isfinite(v) & keep
        if bad.any():
            for i in np.unique(which[bad]):
                p = places[i]
                shown = f"{p.node} {p.table}.{p.column} {p.device!r}"
                out.refused.append(f"{shown}: a value that is not finite")
                mine = which == i
                out.kept.extend(("a value that is not finite", shown, int(when), float(value))
                                for when, value in zip(t[mine], v[mine], strict=True))  # fmt: skip
            keep &= ~np.isin(which, which[bad])
        part = np.fromiter((p.part for p in places), np.int32, len(places))[which]
        factor = np.fromiter((p.factor for p in places), np.float64, len(places))[which]
        return pa.table(
            [pa.array(part[keep]), pa.array(t[keep], pa.timestamp("ms")), pa.array(v[keep] * factor[keep])],
            schema=ROWS,
        )


def _tails(series: Sequence[bytes]) -> list[int]:
    """Per series, how many bytes its one sample takes at the end (tag, length and 16 or 7 bytes); 0
    where it does not end so (several samples, another encoding): those are parsed whole."""
    if not series:
        return []
    lengths = np.fromiter(map(len, series), np.int64, len(series))
    joined = np.frombuffer(b"".join(series), np.uint8)
    ends = np.cumsum(lengths)
    out = np.zeros(len(series), np.int64)
    for size in (18, 9):  # 0x12, length 16 (a value and a time) or 7 (a time: the value is 0)
        at = np.flatnonzero((out == 0) & (lengths > size))
        head = joined[ends[at] - size], joined[ends[at] - size + 1]
        out[at[(head[0] == 0x12) & (head[1] == size - 2)]] = size
    return out.tolist()


def _whole(raw: bytes) -> tuple[bytes, list[bytes]]:
    """A series parsed field by field: its label bytes (the cache's key) and its samples' bytes."""
    try:
        ts = prompb.TimeSeriesView.FromString(raw)
    except DecodeError:
        raise BadRequest("a series that is not a prometheus.TimeSeries message") from None
    key = b"".join(length_delimited(0x0A, label) for label in ts.labels)
    return key, list(ts.samples)


def samples_of(blobs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Encoded prometheus.Sample messages -> (milliseconds, values), all at once.

    A sample is a double (tag 0x09, 8 bytes; absent when 0) and a varint timestamp (tag 0x10), which
    for any time from 1971 to 2109 takes 6 bytes: so nearly every sample is 16 bytes (or 7 for a 0)
    laid out the same way, decoded as one numpy matrix. Any other shape is parsed one by one."""
    n = len(blobs)
    lengths = np.fromiter(map(len, blobs), np.int64, n)
    joined = np.frombuffer(b"".join(blobs), np.uint8)
    starts = np.cumsum(lengths) - lengths
    t, v = np.zeros(n, np.int64), np.zeros(n, np.float64)
    slow = np.ones(n, bool)
    for size, value_at in ((16, 1), (7, -1)):
        idx = np.flatnonzero(lengths == size)
        if not len(idx):
            continue
        m = joined[starts[idx, None] + np.arange(size)]
        ts = m[:, size - 7 :]  # tag 0x10 and 6 varint bytes: 5 with the continuation bit, 1 without
        ok = (ts[:, 0] == 0x10) & np.all(ts[:, 1:6] >= 0x80, axis=1) & (ts[:, 6] < 0x80)
        if value_at > 0:
            ok &= m[:, 0] == 0x09
            v[idx[ok]] = np.ascontiguousarray(m[ok, 1:9]).view("<f8").ravel()
        digits = (ts[ok, 1:] & 0x7F).astype(np.int64) << (7 * np.arange(6, dtype=np.int64))
        t[idx[ok]] = digits.sum(axis=1)
        slow[idx[ok]] = False
    for i in np.flatnonzero(slow):
        try:
            sample = prompb.Sample.FromString(blobs[i])
        except DecodeError:
            raise BadRequest("a sample that is not a prometheus.Sample message") from None
        t[i], v[i] = sample.timestamp, sample.value
    return t, v


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


def _where(labels: dict[str, str], node_label: str, strip_port: bool) -> _Series:
    name = labels.pop("__name__", "")
    if not _NAME.fullmatch(name):
        return _Series(refused="no valid __name__ label")
    t = target(name, labels)
    if t is None:
        return _Series(dropped=family(name))
    raw_node = labels.get(node_label, "")
    if not raw_node:
        return _Series(refused=f"no {node_label} label to name its node")
    node = node_of(raw_node, strip_port)
    dev = device(t.table, labels)
    if dev is None:
        return _Series(refused=f"{t.table} series without the labels that name its device")
    inventory = tuple((ours, labels[theirs]) for theirs, ours in INVENTORY_LABELS.get(t.table, {}).items()
                      if labels.get(theirs))  # fmt: skip
    # dcgm-exporter says Hostname, the agent's own /metrics hostname.
    hostname = labels.get("Hostname") or labels.get("hostname") or ""
    return _Series(node, t.table, dev, t.column, t.factor, hostname=hostname, inventory=inventory)


def _kept(raw: bytes, why: str, shown: str) -> list[Kept]:
    """A refused series' samples as they came (staleness markers too: kept means all of it)."""
    try:
        ts = prompb.TimeSeries.FromString(raw)
    except DecodeError:
        return [(why, shown, None, None)]
    return [(why, shown, s.timestamp, s.value) for s in ts.samples] or [(why, shown, None, None)]


def _show(raw: bytes) -> str:
    try:
        ts = prompb.TimeSeriesView.FromString(raw)
        labels = {label.name: label.value for label in map(prompb.Label.FromString, ts.labels)}
    except DecodeError:
        return "(unreadable labels)"
    name = labels.pop("__name__", "")
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"
