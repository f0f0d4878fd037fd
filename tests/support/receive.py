"""A remote-write receiver on a real store, driven through its WSGI app: requests as Prometheus encodes them."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path
from typing import Any

import cramjam

from ironsight.collector.receive.decode import Decoder
from ironsight.collector.receive.endpoint import Receiver
from ironsight.collector.receive.senders import Sender
from ironsight.collector.receive.staging import Staging, journal_of
from ironsight.collector.store import Store
from ironsight.prompb import remote_pb2 as prompb

T = 1_764_000_000_000  # ms
LATER = datetime(2100, 1, 1)
GPU = {
    "instance": "gpu-1:9400",
    "gpu": "0",
    "UUID": "GPU-1",
    "modelName": "NVIDIA H200",
    "Hostname": "gpu-1.lab",
}
Labels = dict[str, str]


def request(*series: tuple[str, Labels, list[tuple[int, float]]]) -> bytes:
    req = prompb.WriteRequest()
    for name, labels, samples in series:
        ts = req.timeseries.add()
        for k, v in sorted({"__name__": name, **labels}.items()):
            ts.labels.add(name=k, value=v)
        for t, value in samples:
            ts.samples.add(timestamp=t, value=value)
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


class Rx:
    def __init__(self, tmp: Path, senders: list[Sender] | None = None) -> None:
        self.store = Store(tmp / "rx.duckdb")
        self.staging = Staging(self.store.reader, journal_of(self.store.path), changes=self.store.changes)
        decoder = Decoder(parts=self.staging.parts(), register=self.staging.register)
        self.app = Receiver(self.staging, decoder, senders)

    def post(self, body: bytes, **headers: Any) -> tuple[int, str]:
        environ: dict[str, Any] = {
            "PATH_INFO": "/api/v1/write", "REQUEST_METHOD": "POST", "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": "application/x-protobuf", "HTTP_CONTENT_ENCODING": "snappy",
            "wsgi.input": io.BytesIO(body), **headers,
        }  # fmt: skip
        got: list[str] = []
        out = b"".join(self.app(environ, lambda status, _headers: got.append(status)))
        return int(got[0].split()[0]), out.decode()

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self.store.con.sql(sql).fetchall()
