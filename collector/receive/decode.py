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
from collections.abc import Callable
from dataclasses import dataclass, field

import cramjam
import numpy as np
import pyarrow as pa
from google.protobuf.message import DecodeError

from ironsight.collector.receive.mapping import INVENTORY_LABELS, device, family, target
from ironsight.prompb import remote_pb2 as prompb

STALE_NAN = 0x7FF0000000000002  # Prometheus's staleness marker: "this series ended", not a value
MAX_BODY = 64 << 20  # decompressed; Prometheus sends a few MB at most
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_PORT = re.compile(r":\d+$")
CACHE_SERIES = 1_000_000  # label sets remembered; past it the cache starts again

ROWS = pa.schema(
    [("node", pa.string()), ("tbl", pa.string()), ("device", pa.string()), ("col", pa.string()),
     ("time", pa.timestamp("ms")), ("value", pa.float64())]
)  # fmt: skip


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


@dataclass
class Decoded:
    rows: pa.Table
    hostnames: dict[str, str] = field(default_factory=dict)
    inventory: dict[tuple[str, str, str], dict[str, str]] = field(
        default_factory=dict
    )  # (node, kind, device)
    refused: list[str] = field(default_factory=list)  # "series: why", one per refused series
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

    def __init__(self, node_label: str = "instance", strip_port: bool = True) -> None:
        self.node_label = node_label
        self.strip_port = strip_port
        self._cache: dict[tuple[tuple[str, str], ...], _Series] = {}

    def decode(self, body: bytes, allowed: Callable[[str], bool]) -> Decoded:
        """The request's samples; allowed(node) says whether the sender may write for that node."""
        request = parse(body)
        places: list[_Series] = []
        counts: list[int] = []
        times: list[int] = []
        values: list[float] = []
        out = Decoded(ROWS.empty_table())
        for ts in request.timeseries:
            key = tuple((label.name, label.value) for label in ts.labels)
            place = self._cache.get(key)
            if place is None:
                place = self._place(key)
            n = len(ts.samples)
            out.samples += n
            if place.dropped:
                out.dropped[place.dropped] += n
                continue
            if not place.refused and not allowed(place.node):
                place = _Series(refused=f"this sender may not write for instance {place.node!r}")
            if place.refused:
                out.refused.append(f"{_show(key)}: {place.refused}")
                continue
            places.append(place)
            counts.append(n)
            for s in ts.samples:
                times.append(s.timestamp)
                values.append(s.value)
        out.series = len(places)
        out.rows = self._rows(places, np.array(counts, np.int64), times, values, out)
        return out

    def _place(self, key: tuple[tuple[str, str], ...]) -> _Series:
        if len(self._cache) >= CACHE_SERIES:
            self._cache.clear()
        place = self._cache[key] = _where(dict(key), self.node_label, self.strip_port)
        return place

    @staticmethod
    def _rows(places: list[_Series], counts: np.ndarray, times: list[int], values: list[float],
              out: Decoded) -> pa.Table:  # fmt: skip
        if not places:
            return ROWS.empty_table()
        v = np.array(values, np.float64)
        t = np.array(times, np.int64)
        which = np.repeat(np.arange(len(places)), counts)
        keep = v.view(np.uint64) != STALE_NAN
        bad = ~np.isfinite(v) & keep
        if bad.any():
            for i in np.unique(which[bad]):
                p = places[i]
                out.refused.append(f"{p.node} {p.table}.{p.column} {p.device!r}: a value that is not finite")
            keep &= ~np.isin(which, which[bad])
        for p in places:
            if p.hostname:
                out.hostnames[p.node] = p.hostname
            if p.inventory:
                out.inventory.setdefault((p.node, p.table, p.device), {}).update(p.inventory)
        factor = np.array([p.factor for p in places])[which]
        which, t, v, factor = which[keep], t[keep], v[keep], factor[keep]
        idx = pa.array(which, pa.int32())

        def column(attr: str) -> pa.Array:
            return pa.DictionaryArray.from_arrays(idx, pa.array([getattr(p, attr) for p in places])).cast(
                pa.string()
            )

        return pa.table(
            [column("node"), column("table"), column("device"), column("column"),
             pa.array(t, pa.timestamp("ms")), pa.array(v * factor)],
            schema=ROWS,
        )  # fmt: skip


def parse(body: bytes) -> prompb.WriteRequest:
    """Snappy-compressed WriteRequest bytes -> the message; BadRequest when they are not that."""
    try:
        raw = bytes(cramjam.snappy.decompress_raw(body))
    except Exception as exc:  # cramjam raises its own DecompressionError
        raise BadRequest(f"the body is not snappy-compressed (block format): {exc}") from None
    if len(raw) > MAX_BODY:
        raise BadRequest(f"the decompressed request is {len(raw)} bytes, over {MAX_BODY}")
    request = prompb.WriteRequest()
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


def _show(key: tuple[tuple[str, str], ...]) -> str:
    labels = dict(key)
    name = labels.pop("__name__", "")
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"
