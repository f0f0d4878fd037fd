"""The decoder's fast path (one sample at the end of each series, found for all series at once) against
what the requests say, for requests drawn at random and encoded two ways: as Prometheus encodes them, and
with every field in another legal order, which the fast path cannot take."""

from __future__ import annotations

import math
import struct

import cramjam
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from ironsight.collector.receive.decode import STALE_NAN, Decoder
from ironsight.collector.remote_write.encode import length_delimited
from ironsight.prompb import remote_pb2 as prompb

(STALE,) = struct.unpack("<d", STALE_NAN.to_bytes(8, "little"))
# name -> (table, column, factor, extra labels it needs); None: ironsight has no column for it
NAMES = {
    "node_load1": ("load", "load1", 1.0, {}),
    "node_load5": ("load", "load5", 1.0, {}),
    "DCGM_FI_DEV_SM_CLOCK": ("gpu", "sm_clock_hertz", 1e6, {"gpu": "3"}),
    "DCGM_FI_DEV_GPU_UTIL": ("gpu", "util_gpu_percent", 1.0, {"gpu": "0"}),
    "go_goroutines": None,
}
Series = tuple[str, str, list[tuple[int, float]]]  # name, instance ("" for none), samples

times = st.one_of(st.integers(0, 300), st.integers(1_600_000_000_000, 1_900_000_000_000), st.just(2**45))
values = st.one_of(
    st.just(0.0), st.just(STALE), st.just(math.inf), st.floats(-1e12, 1e12), st.integers(0, 100).map(float)
)
series = st.tuples(st.sampled_from(sorted(NAMES)), st.sampled_from(["a:9100", "b:9100", "nöde-ü", ""]),
                   st.lists(st.tuples(times, values), max_size=3))  # fmt: skip


def _labels(name: str, instance: str) -> list[tuple[str, str]]:
    spec = NAMES[name]
    labels = {"__name__": name, **(spec[3] if spec else {})}
    if instance:
        labels["instance"] = instance
    return sorted(labels.items())


def _prometheus(request: list[Series]) -> bytes:
    req = prompb.WriteRequest()
    for name, instance, samples in request:
        ts = req.timeseries.add()
        for k, label in _labels(name, instance):
            ts.labels.add(name=k, value=label)
        for t, v in samples:
            ts.samples.add(timestamp=t, value=v)
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


def _reordered(request: list[Series]) -> bytes:
    """Samples before labels, a sample's time before its value, labels' value before name: all legal."""
    out = b""
    for name, instance, samples in request:
        body = b"".join(length_delimited(0x12, prompb.Sample(timestamp=t).SerializeToString()
                                         + (b"\x09" + struct.pack("<d", v) if v != 0 else b""))
                        for t, v in samples)  # fmt: skip
        for k, v in _labels(name, instance):
            body += length_delimited(
                0x0A, length_delimited(0x12, v.encode()) + length_delimited(0x0A, k.encode())
            )
        out += length_delimited(0x0A, body)
    return bytes(cramjam.snappy.compress_raw(out))


def _expected(request: list[Series]) -> tuple[list[tuple[object, ...]], int, dict[str, int]]:
    rows: list[tuple[object, ...]] = []
    refused, dropped = 0, dict[str, int]()
    for name, instance, samples in request:
        spec = NAMES[name]
        if spec is None:
            if samples:
                dropped[name] = dropped.get(name, 0) + len(samples)
            continue
        values = [v for _, v in samples if struct.pack("<d", v) != struct.pack("<d", STALE)]
        if not instance or not all(math.isfinite(v) for v in values):
            refused += 1
            continue
        node = instance.removesuffix(":9100")
        device = spec[3].get("gpu", "")
        rows += [(node, spec[0], device, spec[1], t, v * spec[2]) for t, v in samples
                 if struct.pack("<d", v) != struct.pack("<d", STALE)]  # fmt: skip
    return sorted(rows), refused, dropped


def _decoded(decoder: Decoder, body: bytes) -> tuple[list[tuple[object, ...]], int, dict[str, int]]:
    got = decoder.decode(body, lambda node: True)
    where = {number: place for place, number in decoder.parts.items()}
    parts, times, vals = (got.rows.column(c).cast(pa.int64() if c == "time" else got.rows.schema.field(c).type)
                          .to_pylist() for c in ("part", "time", "value"))  # fmt: skip
    return (
        sorted((*where[p], t, v) for p, t, v in zip(parts, times, vals, strict=True)),
        len(got.refused),
        dict(got.dropped),
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(series, max_size=12))
def test_both_encodings_decode_to_what_the_request_says(request: list[Series]) -> None:
    want = _expected(request)
    decoder = Decoder()
    assert _decoded(decoder, _prometheus(request)) == want
    assert _decoded(decoder, _reordered(request)) == want  # its label sets met again, parsed whole
    assert _decoded(Decoder(), _reordered(request)) == want  # and met first that way
    assert _decoded(decoder, _prometheus(request)) == want  # and again, from the cache
