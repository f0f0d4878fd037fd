"""Stored Arrow tables -> Prometheus remote-write requests, whole columns at a time.

The series and values are the agent's /metrics ones (core/series_rules.py,
the equivalence to the row-by-row renderer is tested), but nothing here runs
Python per sample: each (table, node, device) gets its rules' label sets
encoded once (protobuf Label fields, sorted by name) and kept; a table's rows
are sorted by series and time with numpy; the value columns of all its rules
are masked in one go; and each request is assembled by Arrow, which joins a
header, the cached labels and the samples (18 bytes each, built as a numpy
matrix) of every TimeSeries element-wise in C++.

Protocol 1.0 repeats a series' labels in every request it appears in, so with
1 s batches most of a request is labels: their bytes, not the samples, set the
cost, and the cache of encoded labels is what makes it cheap.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ironsight.core.reading import DeviceInfo
from ironsight.core.series_rules import (
    CORE_THROTTLES,
    FB_FREE,
    MIB,
    PACKAGE_THROTTLES,
    RULES,
    XID_COUNT,
    XID_LAST,
    Rule,
    device_labels,
)
from ironsight.prompb import remote_pb2 as prompb
from ironsight.v1 import telemetry_pb2 as pb

SAMPLE_BYTES = 18  # field tag, length, tag + 8-byte double, tag + 6-byte varint milliseconds
_MS_LO, _MS_HI = 1 << 35, 1 << 42  # a 6-byte varint: 1971-02 to 2109-05
MAX_LABEL_BYTES = 256 << 20  # encoded label sets kept; past it the cache starts again
_SEP = "\x00"  # between node and device in a key: neither may hold a control character
# Arrow scalars made once: a Python str or bytes argument costs pyarrow a failed import per call.
_SEP_SCALAR, _COLON, _NOTHING = pa.scalar(_SEP), pa.scalar(":"), pa.scalar(b"", pa.binary())

# Rules of the series that are not one column each: the renderer below computes their columns.
_GPU_EXTRA = (Rule("fb_free", FB_FREE, "gauge"), Rule("xid_last", XID_LAST, "gauge"),
              Rule("xid_count", XID_COUNT, "counter"))  # fmt: skip
_CORE = (Rule("core_throttles", CORE_THROTTLES, "counter"),)
_PACKAGE = (Rule("package_throttles", PACKAGE_THROTTLES, "counter"),)


@dataclass
class _Node:
    hostname: str
    inventory: dict[tuple[str, str], DeviceInfo]


_Events = dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]  # (node, gpu) -> XID times (us), XIDs


@dataclass
class Samples:
    """One table's samples in request order: (series label id, milliseconds, value) each."""

    ids: np.ndarray
    ms: np.ndarray
    values: np.ndarray


class Encoder:
    def __init__(
        self, extra_labels: Mapping[str, str] | None = None, job: str = "ironsight", keep_labels: bool = False
    ) -> None:
        """keep_labels: keep each label id's labels (label_set) instead of encoding them, for readers."""
        self.extra = {"job": job, **(extra_labels or {})}
        self.keep_labels = keep_labels
        self.only: frozenset[str] | None = None  # a reader's metric names: the others are not computed
        self.nodes: dict[str, _Node] = {}
        self.xids: dict[tuple[str, str], tuple[int, int]] = {}  # (node, gpu) -> (last XID, how many)
        self._forget_labels()

    def _forget_labels(self) -> None:
        self._ids: dict[tuple[str, str], int] = {}  # (table, node NUL device) -> its first label id
        self._blobs: list[bytes] = []  # label id -> the TimeSeries' encoded label fields
        self._blob_bytes = 0
        self._array: pa.BinaryArray | None = None
        # keep_labels: each (table, node, device)'s first label id, its common labels and its rules; its
        # label ids are first + k. One entry, not one a rule: a query reads a few of a GPU's 50 rules.
        self._parts: list[tuple[int, dict[str, str], tuple[Rule, ...]]] = []
        self._firsts: list[int] = []
        self._next_id = 0
        self._index: dict[str, tuple[pa.Array, np.ndarray]] = {}  # table -> keys in _ids, their first ids

    def learn(self, node_id: str, info: pb.NodeInfo) -> None:
        """A batch carrying the node's inventory: its series' labels are built again if it changed."""
        self.know(node_id, info.hostname, [DeviceInfo(d.kind, d.name, dict(d.attrs)) for d in info.devices])

    def know(self, node_id: str, hostname: str, devices: Iterable[DeviceInfo]) -> None:
        """A node's hostname and inventory, which its series' labels are built from."""
        node = _Node(hostname or node_id, {(d.kind, d.name): d for d in devices})
        old = self.nodes.get(node_id)
        if old != node:
            self.nodes[node_id] = node
            if old is not None:  # a node first seen has no label sets yet
                for key in [k for k in self._ids if k[1].startswith(node_id + _SEP)]:
                    del self._ids[key]
                self._index = {}

    def encode(self, tables: Iterable[tuple[str, pa.Table]], max_send: int) -> list[tuple[bytes, int]]:
        """Requests (protobuf WriteRequest, not compressed) of at most max_send samples each, and how
        many samples each holds; a series' samples oldest first."""
        if self._blob_bytes > MAX_LABEL_BYTES:
            self._forget_labels()  # bounded memory: series still being sent are encoded again
        samples = self.samples(tables)
        return [] if samples is None else self._requests(samples, max_send)

    def samples(self, tables: Iterable[tuple[str, pa.Table]]) -> Samples | None:
        """The series' samples of these stored rows: each label id's contiguous, oldest first."""
        by_name: dict[str, list[pa.Table]] = {}
        for name, table in tables:
            if table.num_rows:
                by_name.setdefault(name, []).append(table)
        merged = {
            name: pa.concat_tables(ts).combine_chunks() if len(ts) > 1 else ts[0]
            for name, ts in by_name.items()
        }
        events = xid_events(merged.get("gpu_xid"))
        parts = [self._table(name, table, events) for name, table in merged.items() if name in RULES]
        if "cpu" in merged and {"core_id", "package_id"} <= set(merged["cpu"].column_names):
            parts += self._throttles(merged["cpu"])
        for key, (_, xids) in events.items():
            self.xids[key] = (int(xids[-1]), self.xids.get(key, (0, 0))[1] + len(xids))
        if not parts:
            return None
        return Samples(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("ids", "ms", "values")))

    # -- series of each table

    def _table(self, name: str, table: pa.Table, events: _Events) -> Samples:
        rules = table_rules(name)
        columns: dict[str, pa.ChunkedArray | pa.Array] = dict(
            zip(table.column_names, table.columns, strict=True)
        )
        if name == "gpu":
            columns |= self._gpu_columns(table, events)
        return self._series(name, table, rules, columns, lambda dev, node: self._labels(name, dev, node))

    def _series(
        self,
        key_table: str,
        table: pa.Table,
        rules: tuple[Rule, ...],
        columns: Mapping[str, pa.ChunkedArray | pa.Array],
        labels: Callable[[str, str], dict[str, str]],
    ) -> Samples:
        """A table's samples, rule by rule, each series' oldest first."""
        codes, keys = _key_codes(table)
        us = _micros(table)
        order = np.lexsort((us, codes))
        base = self._bases(key_table, keys, rules, labels)
        # Only the rules with a column here (a reader may have asked for a few) and a name wanted.
        have = [r for r, rule in enumerate(rules) if rule.column in columns and self._wanted(rule.name)]
        ids = base[codes[order]][None, :] + np.array(have, dtype=np.int64).reshape(-1, 1)  # (rules, rows)
        values = np.zeros((len(have), len(order)))
        valid = np.zeros((len(have), len(order)), dtype=bool)
        for k, r in enumerate(have):
            rule = rules[r]
            # NULL becomes NaN, which is never a stored value (the collector refuses NaN): one call a column.
            v = np.asarray(columns[rule.column].to_numpy(zero_copy_only=False), dtype=np.float64)[order]
            valid[k] = ~np.isnan(v)
            values[k] = v * rule.scale if rule.scale != 1 else v
        ms = np.broadcast_to(us[order] // 1000, valid.shape)
        return Samples(ids[valid], ms[valid], values[valid])

    def _bases(
        self,
        table: str,
        keys: pa.Array,
        rules: tuple[Rule, ...],
        labels: Callable[[str, str], dict[str, str]],
    ) -> np.ndarray:
        """_base of each key, the known ones found by Arrow at once: a fleet's CPU table has a key per
        core (16,000 at 128 nodes), and a dict lookup each was a fifth of the forwarder's time."""
        known = self._index.get(table)
        where = np.full(len(keys), -1, dtype=np.int64)
        if known is not None:
            found = pc.index_in(keys.cast(known[0].type), value_set=known[0])
            where = np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
        out = np.empty(len(keys), dtype=np.int64)
        hit = where >= 0
        if known is not None:
            out[hit] = known[1][where[hit]]
        miss = np.flatnonzero(~hit)
        if len(miss):
            names = keys.take(pa.array(miss)).to_pylist()
            ids = np.array([self._base(table, k, rules, labels) for k in names], dtype=np.int64)
            out[miss] = ids
            new = pa.array(names, known[0].type if known is not None else pa.string())
            self._index[table] = (new, ids) if known is None else (
                pa.concat_arrays([known[0], new]), np.r_[known[1], ids])  # fmt: skip
        return out

    def series_id(self, table: str, node: str, device: str) -> int:
        """The label id of a stored table's node and device under its first rule (table_rules(table));
        rule k's is this + k."""
        return self._base(
            table, node + _SEP + device, table_rules(table), lambda d, n: self._labels(table, d, n)
        )

    def _base(
        self, table: str, key: str, rules: tuple[Rule, ...], labels: Callable[[str, str], dict[str, str]]
    ) -> int:
        """The first label id of a (table, node, device)'s rules; encoded on first sight."""
        got = self._ids.get((table, key))
        if got is None:
            node, device = _node_device(key)
            common = {**self.extra, "instance": node, **labels(device, node)}
            if self.keep_labels:  # a reader's: label sets made when asked for (label_set), no protobuf
                got = self._ids[(table, key)] = self._next_id
                self._parts.append((got, common, rules))
                self._firsts.append(got)
                self._next_id += len(rules)
                return got
            got = self._ids[(table, key)] = len(self._blobs)
            for rule in rules:
                blob = _label_fields({**common, **dict(rule.labels), "__name__": rule.name})
                self._blobs.append(blob)
                self._blob_bytes += len(blob)
        return got

    def label_set(self, label_id: int) -> dict[str, str]:
        """A label id's labels (keep_labels only); an empty value is no label, as in a request."""
        first, common, rules = self._parts[bisect.bisect_right(self._firsts, label_id) - 1]
        rule = rules[label_id - first]
        labels = {**common, **dict(rule.labels), "__name__": rule.name}
        return {k: v for k, v in labels.items() if v}

    def _labels(self, table: str, device: str, node_id: str) -> dict[str, str]:
        node = self.nodes.get(node_id) or _Node(node_id, {})
        return device_labels(table, device, node.inventory, node.hostname)

    def _wanted(self, name: str) -> bool:
        return self.only is None or name in self.only

    def _gpu_columns(self, gpu: pa.Table, events: _Events) -> dict[str, pa.ChunkedArray | pa.Array]:
        out: dict[str, pa.ChunkedArray | pa.Array] = {}
        if self._wanted(FB_FREE) and {"memory_used_bytes", "memory_total_bytes"} <= set(gpu.column_names):
            used, total = gpu.column("memory_used_bytes"), gpu.column("memory_total_bytes")
            out["fb_free"] = pc.divide(
                pc.cast(pc.subtract(total, used), pa.float64(), safe=False), float(MIB)
            )
        if not (self._wanted(XID_LAST) or self._wanted(XID_COUNT)):
            return out
        last, count = self._xid_columns(gpu, events)
        return out | {"xid_last": pa.array(last), "xid_count": pa.array(count)}

    def _xid_columns(self, gpu: pa.Table, events: _Events) -> tuple[np.ndarray, np.ndarray]:
        """Each GPU row's last XID and XID count so far, as the scrape renderer's history has them."""
        codes, keys = _keys(gpu)
        split = [_node_device(k) for k in keys]
        prior = np.array([self.xids.get(k, (0, 0)) for k in split], dtype=np.int64).reshape(-1, 2)
        last, count = prior[codes, 0], prior[codes, 1]
        us = _micros(gpu) if any(key in events for key in split) else None
        for code, key in enumerate(split):
            if us is not None and key in events:  # rare: XIDs in this very group
                times, xids = events[key]
                rows = np.flatnonzero(codes == code)
                seen = np.searchsorted(times, us[rows], side="right")
                count[rows] += seen
                last[rows] = np.where(seen > 0, xids[np.maximum(seen - 1, 0)], last[rows])
        return last, count

    def _throttles(self, cpu: pa.Table) -> list[Samples]:
        """node_exporter's core and package throttle counters: the first CPU's of each, per tick."""
        have = pc.and_(pc.is_valid(cpu.column("core_id")), pc.is_valid(cpu.column("package_id")))
        cpu = cpu.filter(have)
        if not cpu.num_rows:
            return []
        core, package = (pc.cast(cpu.column(c), pa.string()) for c in ("core_id", "package_id"))
        out = []
        for table, device, rules, split in (
            ("cpu:core", pc.binary_join_element_wise(core, package, _COLON), _CORE, _core_labels),
            ("cpu:package", package, _PACKAGE, _package_labels),
        ):
            if rules[0].column not in cpu.column_names:  # a reader that asked for the other one only
                continue
            firsts = pa.array(_first_per_tick(cpu, device))
            t = pa.table({"node": cpu.column("node").take(firsts), "device": pc.take(device, firsts),
                          "time": cpu.column("time").take(firsts)})  # fmt: skip
            cols = {rules[0].column: cpu.column(rules[0].column).take(firsts)}
            out.append(self._series(table, t, rules, cols, split))
        return out

    # -- requests

    def _label_array(self) -> pa.BinaryArray:
        """The encoded label sets as one Arrow array, extended with the new ones only."""
        have = 0 if self._array is None else len(self._array)
        if have < len(self._blobs):
            new = pa.array(self._blobs[have:], type=pa.binary())
            self._array = new if self._array is None else pa.concat_arrays([self._array, new])
        assert self._array is not None
        return self._array

    def _requests(self, s: Samples, max_send: int) -> list[tuple[bytes, int]]:
        n = len(s.ids)
        if n == 0:
            return []
        if s.ms.min() < _MS_LO or s.ms.max() >= _MS_HI:
            return _requests_slowly(s, self._blobs, max_send)
        position = np.arange(n)
        starts = np.flatnonzero(np.r_[True, s.ids[1:] != s.ids[:-1]] | (position % max_send == 0))
        counts = np.diff(np.r_[starts, n])
        entries = s.ids[starts]
        labels = self._label_array().take(pa.array(entries))
        label_len = pc.binary_length(labels).to_numpy()
        header = _headers(label_len + SAMPLE_BYTES * counts)
        sample_offsets = np.r_[0, np.cumsum(counts)] * SAMPLE_BYTES
        samples = pa.Array.from_buffers(pa.binary(), len(entries), [
            None, pa.py_buffer(sample_offsets.astype(np.int32)), pa.py_buffer(_sample_bytes(s.ms, s.values))])  # fmt: skip
        records = pc.binary_join_element_wise(header, labels, samples, _NOTHING)
        offsets = np.frombuffer(records.buffers()[1], dtype=np.int32)[records.offset :]
        data = records.buffers()[2]
        out = []
        request_of_entry = starts // max_send
        cuts = np.r_[np.flatnonzero(np.r_[True, request_of_entry[1:] != request_of_entry[:-1]]), len(starts)]
        for a, b in itertools.pairwise(cuts):
            out.append((data[offsets[a] : offsets[b]].to_pybytes(), int(counts[a:b].sum())))
        return out


def table_rules(table: str) -> tuple[Rule, ...]:
    """The rules of a stored table's series, in label id order."""
    return RULES[table] + _GPU_EXTRA if table == "gpu" else RULES[table]


def _keys(table: pa.Table) -> tuple[np.ndarray, list[str]]:
    """Each row's series key (node and device) as a code into the distinct keys."""
    codes, keys = _key_codes(table)
    return codes, keys.to_pylist()


def _key_codes(table: pa.Table) -> tuple[np.ndarray, pa.Array]:
    """Each row's series key (node and device) as a code into the distinct keys, an Arrow array."""
    joined = pc.binary_join_element_wise(table.column("node"), table.column("device"), _SEP_SCALAR)
    encoded = joined.combine_chunks().dictionary_encode() if isinstance(joined, pa.ChunkedArray) else (
        joined.dictionary_encode())  # fmt: skip
    return encoded.indices.to_numpy(), encoded.dictionary


def _node_device(key: str) -> tuple[str, str]:
    node, _, device = key.partition(_SEP)
    return node, device


def _micros(table: pa.Table) -> np.ndarray:
    # As integers: naive datetimes would be read in the local time zone.
    us = pc.cast(table.column("time"), pa.timestamp("us"), safe=False).cast(pa.int64())
    return np.asarray(us.to_numpy(), dtype=np.int64)


def xid_events(table: pa.Table | None) -> _Events:
    """This group's XIDs per GPU, oldest first (the table's order among equal times); the query API's
    XID series from its head place rows among them too (promql/xids.py)."""
    if table is None:
        return {}
    table = table.filter(pc.is_valid(table.column("xid")))
    codes, keys = _keys(table)
    us, xids = _micros(table), table.column("xid").to_numpy()
    out: _Events = {}
    for code, key in enumerate(keys):
        rows = np.flatnonzero(codes == code)
        rows = rows[np.argsort(us[rows], kind="stable")]
        out[_node_device(key)] = (us[rows], xids[rows].astype(np.int64))
    return out


def _first_per_tick(cpu: pa.Table, device: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Row index of the first row of each (node, device, time), in the table's own order."""
    t = pa.table({"node": cpu.column("node"), "device": device, "time": cpu.column("time")})
    codes, _ = _keys(t)
    us = _micros(t)
    order = np.lexsort((np.arange(len(codes)), us, codes))
    first = np.r_[True, (codes[order][1:] != codes[order][:-1]) | (us[order][1:] != us[order][:-1])]
    return np.sort(order[first])


def _core_labels(device: str, _node: str) -> dict[str, str]:
    core, _, package = device.partition(":")
    return {"core": core, "package": package}


def _package_labels(device: str, _node: str) -> dict[str, str]:
    return {"package": device}


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def length_delimited(tag: int, raw: bytes) -> bytes:
    """One protobuf field of wire type 2 (bytes, string, a message): tag, varint length, the bytes.
    The receiver builds a series' label bytes with it as well (collector/receive/decode.py)."""
    return bytes([tag]) + _varint(len(raw)) + raw


@lru_cache(maxsize=1 << 16)  # names and most values repeat across series: job, instance, hostname, ...
def _label_field(name: str, value: str) -> bytes:
    """One TimeSeries.labels field, as protobuf serializes it (an empty value is left out)."""
    inner = length_delimited(0x0A, name.encode()) + (length_delimited(0x12, value.encode()) if value else b"")
    return length_delimited(0x0A, inner)


def _label_fields(labels: dict[str, str]) -> bytes:
    """A TimeSeries' label fields, sorted by name (receivers want them so)."""
    return b"".join(_label_field(k, labels[k]) for k in sorted(labels))


def _headers(payload: np.ndarray) -> pa.Array:
    """0x0a (WriteRequest.timeseries) and each TimeSeries' length as a varint (up to 4 bytes)."""
    if payload.max() >= 1 << 28:
        raise ValueError("a TimeSeries over 256 MiB: lower max_send")
    size = 1 + (payload >= 1 << 7) + (payload >= 1 << 14) + (payload >= 1 << 21)
    matrix = np.zeros((len(payload), 5), dtype=np.uint8)
    matrix[:, 0] = 0x0A
    for k in range(4):
        more = size > k + 1
        matrix[:, k + 1] = ((payload >> (7 * k)) & 0x7F) | np.where(more, 0x80, 0)
    keep = np.arange(5)[None, :] <= size[:, None]
    offsets = np.r_[0, np.cumsum(size + 1)].astype(np.int32)
    return pa.Array.from_buffers(pa.binary(), len(payload), [None, pa.py_buffer(offsets),
                                                             pa.py_buffer(matrix[keep])])  # fmt: skip


def _sample_bytes(ms: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each Sample as TimeSeries.samples: tag, length 16, value (double), timestamp (6-byte varint)."""
    out = np.empty((len(ms), SAMPLE_BYTES), dtype=np.uint8)
    out[:, 0], out[:, 1], out[:, 2], out[:, 11] = 0x12, 16, 0x09, 0x10
    out[:, 3:11] = values.astype("<f8").view(np.uint8).reshape(-1, 8)
    u = ms.astype(np.uint64)
    for k in range(6):
        out[:, 12 + k] = ((u >> np.uint64(7 * k)) & np.uint64(0x7F)) | np.uint64(0x80 if k < 5 else 0)
    return out


def _requests_slowly(s: Samples, blobs: list[bytes], max_send: int) -> list[tuple[bytes, int]]:
    """Timestamps outside 1971-2109 (a clock far off): protobuf's own encoder, a sample at a time."""
    out = []
    for a in range(0, len(s.ids), max_send):
        req = prompb.WriteRequest()
        ids, ms, values = s.ids[a : a + max_send], s.ms[a : a + max_send], s.values[a : a + max_send]
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        for i, j in zip(starts, np.r_[starts[1:], len(ids)], strict=True):
            ts = prompb.TimeSeries.FromString(blobs[ids[i]])
            ts.samples.extend(prompb.Sample(value=float(v), timestamp=int(t)) for t, v in zip(ms[i:j], values[i:j],
                                                                                          strict=True))  # fmt: skip
            req.timeseries.append(ts)
        out.append((req.SerializeToString(), len(ids)))
    return out
