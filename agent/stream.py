"""Sends batches to the collector over one bidirectional gRPC stream and keeps what is unacknowledged.

Batches stay in a bounded backlog (the agent's on-disk spool, or memory for
`record --tee-collector`) until the collector acknowledges them (after its
commit), and are sent from there oldest first, at most max_in_flight ahead of
the acknowledgements, so a resend after an outage flows at the collector's
pace while new batches join its tail. When the collector is unreachable the
agent keeps sampling, the backlog drops its oldest batches once full (and
counts them), and reconnection backs off exponentially with jitter. An outage
is logged once when it starts and once when it ends, never per retry.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from typing import Any, Protocol, cast

import grpc

from ironsight.agent.clock import TIMELINE
from ironsight.agent.quarantine import Quarantine
from ironsight.agent.spool import OrderedBacklog
from ironsight.core import transport
from ironsight.core.transport import Tls
from ironsight.core.validate import REJECTED_REASON_KEY, REJECTED_SEQ_KEY
from ironsight.core.worker import Worker
from ironsight.v1 import telemetry_pb2 as pb

log = logging.getLogger("ironsight.agent")

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]
# A collector acknowledges within a commit (well under a second, seconds when busy): this long without
# one while batches are in flight means the connection is dead even if TCP has not noticed.
ACK_TIMEOUT_S = 15.0
# Trailing metadata key the collector sets when it rejects a batch, so the
# agent can drop exactly that batch instead of resending it forever.


SENT_NS_TAG = bytes([7 << 3])  # Batch.sent_ns: field 7, varint


def sent_field(ns: int) -> bytes:
    """Batch.sent_ns encoded on its own, to append to a serialized Batch."""
    out = bytearray(SENT_NS_TAG)
    while True:
        low, ns = ns & 0x7F, ns >> 7
        out.append(low | (0x80 if ns else 0))
        if not ns:
            return bytes(out)


class Backlog(Protocol):
    dropped: int

    def append(self, seq: int, payload: bytes) -> None: ...
    def read(self, seq: int) -> bytes | None: ...
    def ack(self, seq: int) -> bool: ...
    def next_after(self, seq: int) -> int | None: ...
    def count_through(self, seq: int) -> int: ...
    def __len__(self) -> int: ...
    def close(self) -> None: ...


class MemoryBacklog(OrderedBacklog):
    """Serialized batches in memory, the oldest dropped past max_batches (no spool: record's tee)."""

    def __init__(self, max_batches: int = 3600) -> None:
        super().__init__()
        self.max_batches = max_batches
        self.dropped = 0
        self._data: dict[int, bytes] = {}

    def append(self, seq: int, payload: bytes) -> None:
        if seq not in self._data:
            self._data[seq] = payload
            self._insert(seq)
        while len(self._order) > self.max_batches:
            del self._data[self._order.pop(0)]
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning(
                    "backlog full (%d batches): dropped %d oldest so far", self.max_batches, self.dropped
                )

    def read(self, seq: int) -> bytes | None:
        return self._data.get(seq)

    def ack(self, seq: int) -> bool:
        if self._data.pop(seq, None) is None:
            return False
        self._discard(seq)
        return True

    def close(self) -> None:
        pass


class Sender(Worker):
    def __init__(
        self,
        target: str,
        backlog: Backlog | None = None,
        max_in_flight: int = 64,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 10.0,
        tls: Tls | None = None,
        quarantine: Quarantine | None = None,
    ) -> None:
        super().__init__("sender")
        self.target = target
        self.tls = tls
        self.backlog: Backlog = backlog if backlog is not None else MemoryBacklog()
        self.quarantine = quarantine if quarantine is not None else Quarantine(None)
        self.max_in_flight = max_in_flight
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.acked = 0
        self.rejected = 0
        self.reconnects = 0
        self._last_ack = time.monotonic()
        self._stalled = False
        self._call: Any = None

    @property
    def dropped(self) -> int:
        return self.backlog.dropped

    def submit(self, batch: pb.Batch) -> None:
        payload = batch.SerializeToString()
        with self.cond:
            self.backlog.append(batch.seq, payload)
            self.cond.notify_all()

    def pending(self) -> int:
        with self.cond:
            return len(self.backlog)

    def idle(self) -> bool:
        return not len(self.backlog)

    def stop(self, timeout_s: float | None = 5.0, join_s: float | None = 2.0) -> bool:
        """Give the stream up to timeout_s to deliver what is pending, then stop; the rest stays spooled."""
        ended = super().stop(timeout_s, join_s)
        with self.cond:
            self.backlog.close()
        return ended

    def _requests(self, alive: threading.Event) -> Iterator[bytes]:
        last_sent = -1
        self._stalled = False
        while alive.is_set() and not self.stopping:
            with self.cond:
                in_flight = self.backlog.count_through(last_sent)
                if in_flight and time.monotonic() - self._last_ack > ACK_TIMEOUT_S and self._call is not None:
                    # HTTP/2 keepalive pings wait behind our own writes on a busy stream (grpc/grpc#14717),
                    # so a frozen or unreachable collector is noticed here: reconnect and resend.
                    self._stalled = True
                    self._call.cancel()
                    return
                nxt = self.backlog.next_after(last_sent)
                if nxt is None or in_flight >= self.max_in_flight:
                    self.cond.wait(0.2)
                    continue
                payload = self.backlog.read(nxt)
            last_sent = nxt
            if payload is not None:
                # The send time joins the spooled bytes as one more field (protobuf merges appended fields).
                yield payload + sent_field(TIMELINE.now_ns())

    def run(self) -> None:
        delay = self.backoff_initial_s
        down_since: float | None = None
        while not self.stopping:
            alive = threading.Event()
            alive.set()
            channel = transport.channel(self.target, self.tls, CHANNEL_OPTIONS)
            error: grpc.RpcError | None = None
            try:
                # Spooled batches go out as the bytes they were stored as: no second serialization.
                stream = channel.stream_stream(
                    "/ironsight.v1.Ingest/Stream",
                    request_serializer=bytes,
                    response_deserializer=pb.Ack.FromString,
                )
                self._last_ack = time.monotonic()
                self._call = None  # set before the request generator may cancel it
                call = stream(self._requests(alive))
                self._call = call
                for ack in call:
                    if down_since is not None:
                        log.info(
                            "collector %s reachable again after %.1fs; resending %d batches",
                            self.target,
                            time.monotonic() - down_since,
                            self.pending(),
                        )
                        down_since = None
                    delay = self.backoff_initial_s
                    with self.cond:
                        self._last_ack = time.monotonic()
                        if self.backlog.ack(ack.seq):
                            self.acked += 1
                        self.cond.notify_all()
            except grpc.RpcError as exc:
                error = exc
            finally:
                alive.clear()
                channel.close()
            if self.stopping:
                break
            if error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                self._quarantine_rejected(error)
                continue
            if down_since is None:
                down_since = time.monotonic()
                reason = error.details() if error is not None else "stream closed"
                if error is not None and error.code() == grpc.StatusCode.CANCELLED and self._stalled:
                    reason = f"no acknowledgement for {ACK_TIMEOUT_S:.0f}s with batches in flight"
                log.warning(
                    "collector %s unreachable (%s); keeping batches until it is back", self.target, reason
                )
            self.reconnects += 1
            # Full jitter: spread reconnects of a whole fleet after a collector restart.
            self.sleep(random.uniform(0, delay))
            delay = min(self.backoff_max_s, delay * 2)

    def _quarantine_rejected(self, error: grpc.RpcError) -> None:
        """The batch the collector refused leaves the spool for the quarantine: not resent, not lost."""
        trailing: dict[str, Any] = dict(cast(Any, error.trailing_metadata()) or ())
        seq, reason = trailing.get(REJECTED_SEQ_KEY), str(trailing.get(REJECTED_REASON_KEY, "unknown"))
        if seq is None:
            log.error("collector refused the stream without naming a batch: %s", error.details())
            return
        with self.cond:
            payload = self.backlog.read(int(seq))
            if not self.backlog.ack(int(seq)):
                return
            self.rejected += 1
        self.quarantine.keep(int(seq), payload, reason, error.details() or "")
