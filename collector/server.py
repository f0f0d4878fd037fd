"""The collector's gRPC server: ingest stream, read-only query service, standard health service."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import grpc
import numpy as np
import pyarrow as pa
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ironsight.collector.clocks import Clocks
from ironsight.collector.database import QueryRejected, run_query
from ironsight.collector.detect.findings import detect
from ironsight.collector.detect.thresholds import Thresholds, with_overrides
from ironsight.collector.jobnames import NamingError
from ironsight.collector.jobnames import apply as apply_naming
from ironsight.collector.store import Pending, Store
from ironsight.core.transport import READER_URI, Tls, peer_names, server_credentials
from ironsight.core.unixtime import from_ns
from ironsight.core.validate import (
    REJECTED_REASON_KEY,
    REJECTED_SEQ_KEY,
    InvalidBatch,
    Limits,
    ValidBatch,
    check_head,
)
from ironsight.v1 import telemetry_pb2 as pb
from ironsight.v1 import telemetry_pb2_grpc as pb_grpc

log = logging.getLogger("ironsight.collector")

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
]
IN_FLIGHT_PER_STREAM = 64
DEFAULT_MAX_ROWS = 100_000
SERVICE_NAMES = ("ironsight.v1.Ingest", "ironsight.v1.Query")


class _StreamEnd:
    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


def parse(raw: bytes) -> pb.BatchView:
    try:
        return pb.BatchView.FromString(raw)
    except DecodeError as exc:  # grpc would answer INTERNAL for a deserializer's exception
        raise InvalidBatch(f"not an ironsight.v1.Batch message ({len(raw)} bytes): {exc}") from None


def shift_times(batch: pb.BatchView, shift_ns: int) -> None:
    """Moves every sample of the batch by shift_ns (a node's clock offset, collector.clocks)."""
    for t in batch.tables:
        if len(t.time_ns) % 8 == 0:  # a malformed array is refused by check() as it is
            t.time_ns = (np.frombuffer(t.time_ns, "<i8") + np.int64(shift_ns)).astype("<i8").tobytes()


class _Outcomes:
    """Acknowledgements from the writer thread to the event loop, a commit group's at once: one
    wake-up of the loop for all of them, not one for each batch."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.lock = threading.Lock()
        self.waiting: list[tuple[asyncio.Future[pb.Ack], pb.Ack | None, BaseException | None]] = []

    def add(self, fut: asyncio.Future[pb.Ack], ack: pb.Ack | None, exc: BaseException | None) -> None:
        with self.lock:
            self.waiting.append((fut, ack, exc))
            if len(self.waiting) > 1:  # a wake-up is on its way
                return
        self.loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        with self.lock:
            waiting, self.waiting = self.waiting, []
        for fut, ack, exc in waiting:
            if fut.done():
                continue
            if exc is not None or ack is None:
                fut.set_exception(exc or RuntimeError("no acknowledgement"))
                # The stream may have ended before this batch's turn: nobody awaits it then,
                # and asyncio would log a traceback per batch. The stream reports the failure.
                fut.exception()
            else:
                fut.set_result(ack)


class IngestService(pb_grpc.IngestServicer):
    def __init__(self, store: Store, limits: Limits) -> None:
        self.store = store
        self.limits = limits
        self.rejected: dict[str, int] = {}
        self.clocks = Clocks()
        self._outcomes: _Outcomes | None = None

    def _submit(self, batch: ValidBatch) -> asyncio.Future[pb.Ack]:
        loop = asyncio.get_running_loop()
        if self._outcomes is None or self._outcomes.loop is not loop:
            self._outcomes = _Outcomes(loop)
        fut: asyncio.Future[pb.Ack] = loop.create_future()
        outcomes = self._outcomes

        def done(ack: pb.Ack | None, exc: BaseException | None) -> None:
            outcomes.add(fut, ack, exc)

        self.store.submit(Pending(batch, done))
        return fut

    async def Stream(self, request_iterator: AsyncIterator[bytes], context: Any) -> AsyncIterator[pb.Ack]:
        # Reading and acknowledging run side by side, so one stream keeps
        # several batches in the writer's queue instead of one commit at a time.
        pending: asyncio.Queue[asyncio.Future[pb.Ack] | _StreamEnd] = asyncio.Queue(IN_FLIGHT_PER_STREAM)
        names = peer_names(context)  # None in plaintext: no identity to hold batches to
        if names is not None and READER_URI in names:
            refusal = InvalidBatch(
                f"the sender's certificate ({_who(names)}) is a reader's: it may query, not send data;"
                " an agent needs its node's certificate (ironsight certs issue NODE)",
                reason="identity",
            )
            await self._reject(context, refusal)

        async def reader() -> None:
            try:
                async for raw in request_iterator:
                    batch = parse(raw)
                    if names is not None and batch.node_id not in names:
                        raise InvalidBatch(
                            f"batch {batch.seq} is for node {batch.node_id!r}, but the sender's certificate "
                            f"names {', '.join(sorted(names)) or 'no node'}: a node may only write its own data",
                            batch.seq,
                            reason="identity",
                        )
                    shift = self.clocks.shift(
                        batch.node_id, batch.boot_id, batch.sent_ns, time.time_ns(), batch.interval_s
                    )
                    if shift:
                        shift_times(batch, shift)
                    # The batch's own fields here; its tables' structure and values in the store, per
                    # commit group (which reads the tables' fields anyway).
                    valid = check_head(batch, len(raw), self.limits)
                    valid.shift_ns = shift
                    valid.clock_offset_ns = (
                        self.clocks.offset_ns(batch.node_id) if batch.sent_ns > 0 else None
                    )
                    await pending.put(self._submit(valid))
                await pending.put(_StreamEnd())
            except Exception as exc:
                await pending.put(_StreamEnd(exc))

        task = asyncio.create_task(reader())
        try:
            while True:
                item = await pending.get()
                if isinstance(item, _StreamEnd):
                    if isinstance(item.error, InvalidBatch):
                        await self._reject(context, item.error)
                    if item.error is not None and not isinstance(item.error, asyncio.CancelledError):
                        log.debug("ingest stream ended: %s", item.error)
                    return
                try:
                    ack = await item
                except InvalidBatch as exc:
                    await self._reject(context, exc)
                except Exception as exc:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, f"store failed, resend later: {exc}")
                yield ack
        finally:
            task.cancel()

    async def _reject(self, context: Any, error: InvalidBatch) -> None:
        self.rejected[error.reason] = self.rejected.get(error.reason, 0) + 1
        if error.seq is not None:  # so the agent drops that batch, not resends it forever
            context.set_trailing_metadata(
                ((REJECTED_SEQ_KEY, str(error.seq)), (REJECTED_REASON_KEY, error.reason))
            )
        denied = error.reason == "identity"
        await context.abort(
            grpc.StatusCode.PERMISSION_DENIED if denied else grpc.StatusCode.INVALID_ARGUMENT, str(error)
        )


def _who(names: set[str]) -> str:
    return ", ".join(sorted(names - {READER_URI})) or "no name"


async def _readers_only(context: Any) -> None:
    """Reading the fleet's data takes a reader's certificate; a node's may only send its own (plaintext: anyone)."""
    names = peer_names(context)
    if names is not None and READER_URI not in names:
        await context.abort(
            grpc.StatusCode.PERMISSION_DENIED,
            f"the client's certificate ({_who(names)}) is a node's: it may only send that node's data;"
            " querying needs a reader's certificate (ironsight certs issue NAME --reader)",
        )


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


class QueryService(pb_grpc.QueryServicer):
    def __init__(self, store: Store) -> None:
        self.store = store

    async def Sql(self, request: pb.QueryRequest, context: Any) -> pb.QueryResponse:
        await _readers_only(context)
        max_rows = request.max_rows or DEFAULT_MAX_ROWS
        try:
            table, truncated = await asyncio.to_thread(self._run, request.sql, max_rows)
        except QueryRejected as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return pb.QueryResponse(arrow_ipc=_ipc(table), truncated=truncated)

    async def Detect(self, request: pb.DetectRequest, context: Any) -> pb.QueryResponse:
        await _readers_only(context)
        try:
            t = with_overrides(list(request.thresholds))
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        start, end = from_ns(request.start_ns), from_ns(request.end_ns)
        if not start < end:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the range's start must be before its end")
        table = await asyncio.to_thread(self._detect, start, end, t)
        return pb.QueryResponse(arrow_ipc=_ipc(table))

    async def NameJob(self, request: pb.NameJobRequest, context: Any) -> pb.QueryResponse:
        await _readers_only(context)
        try:
            table = await asyncio.to_thread(self._name, request)
        except NamingError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except duckdb.Error as exc:  # the store is failing (disk full) or busy past retries
            await context.abort(
                grpc.StatusCode.UNAVAILABLE
                if isinstance(exc, duckdb.TransactionException)
                else grpc.StatusCode.INTERNAL,
                str(exc).splitlines()[0],
            )
        return pb.QueryResponse(arrow_ipc=_ipc(table))

    def _name(self, request: pb.NameJobRequest) -> pa.Table:
        cursor = self.store.reader()
        try:
            with self.store.ingester.lock:  # no look stored half under the old names
                return apply_naming(cursor, request)
        finally:
            cursor.close()

    def _detect(self, start: datetime, end: datetime, t: Thresholds) -> pa.Table:
        cursor = self.store.reader()
        try:
            return detect(cursor, start, end, t)
        finally:
            cursor.close()

    def _run(self, sql: str, max_rows: int) -> tuple[pa.Table, bool]:
        cursor = self.store.reader()
        try:
            return run_query(cursor, sql, max_rows)
        finally:
            cursor.close()


@dataclass
class Collector:
    store: Store
    server: Any
    health: Any
    port: int
    ingest: IngestService

    async def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM path: stop being healthy, drain in-flight batches, checkpoint."""
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(grace_s)
        await asyncio.to_thread(self.store.close)


async def start(store: Store, listen: str, limits: Limits | None = None, tls: Tls | None = None) -> Collector:
    server = grpc.aio.server(options=SERVER_OPTIONS)
    ingest = IngestService(store, limits or Limits())
    # Registered by hand rather than through the generated helper, so requests
    # are parsed as BatchView (arrays as bytes) instead of Batch.
    handler = grpc.method_handlers_generic_handler(
        "ironsight.v1.Ingest",
        {
            "Stream": grpc.stream_stream_rpc_method_handler(
                ingest.Stream,
                request_deserializer=None,  # raw bytes: a message that does not parse is the sender's error
                response_serializer=pb.Ack.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    pb_grpc.add_QueryServicer_to_server(QueryService(store), server)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = (
        server.add_secure_port(listen, server_credentials(tls)) if tls else server.add_insecure_port(listen)
    )
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    store.start()
    await server.start()
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return Collector(store, server, health_servicer, port, ingest)
