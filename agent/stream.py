"""Sends batches to the collector over one bidirectional gRPC stream and keeps what is unacknowledged.

Batches stay in a bounded in-memory backlog until the collector acknowledges
them (after its commit). When the collector is unreachable the agent keeps
sampling, the backlog drops its oldest batches once full (and counts them),
and reconnection backs off exponentially with jitter. An outage is logged
once when it starts and once when it ends, never per retry.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import grpc

from ironsight.v1 import telemetry_pb2 as pb
from ironsight.v1 import telemetry_pb2_grpc as pb_grpc

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
# Trailing metadata key the collector sets when it rejects a batch, so the
# agent can drop exactly that batch instead of resending it forever.
REJECTED_SEQ_KEY = "ironsight-rejected-seq"


class Sender:
    def __init__(
        self,
        target: str,
        max_backlog: int = 3600,
        max_in_flight: int = 64,
        backoff_initial_s: float = 0.2,
        backoff_max_s: float = 10.0,
    ) -> None:
        self.target = target
        self.max_backlog = max_backlog
        self.max_in_flight = max_in_flight
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.backlog: OrderedDict[int, pb.Batch] = OrderedDict()
        self.cond = threading.Condition()
        self.dropped = 0
        self.acked = 0
        self.rejected = 0
        self.reconnects = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sender", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, batch: pb.Batch) -> None:
        with self.cond:
            self.backlog[batch.seq] = batch
            while len(self.backlog) > self.max_backlog:
                self.backlog.popitem(last=False)
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 100 == 0:
                    log.warning(
                        "backlog full (%d batches): dropped %d oldest so far", self.max_backlog, self.dropped
                    )
            self.cond.notify_all()

    def pending(self) -> int:
        with self.cond:
            return len(self.backlog)

    def stop(self, drain_s: float = 5.0) -> None:
        """Give the stream up to drain_s to deliver what is pending, then stop."""
        deadline = time.monotonic() + drain_s
        with self.cond:
            while self.backlog and time.monotonic() < deadline:
                self.cond.wait(0.05)
        self._stop.set()
        with self.cond:
            self.cond.notify_all()
        self._thread.join(timeout=2.0)

    def _requests(self, alive: threading.Event) -> Iterator[pb.Batch]:
        last_sent = -1
        while alive.is_set() and not self._stop.is_set():
            with self.cond:
                nxt = next((seq for seq in self.backlog if seq > last_sent), None)
                in_flight = sum(1 for seq in self.backlog if seq <= last_sent)
                if nxt is None or in_flight >= self.max_in_flight:
                    self.cond.wait(0.2)
                    continue
                batch = self.backlog[nxt]
            last_sent = nxt
            yield batch

    def _run(self) -> None:
        delay = self.backoff_initial_s
        down_since: float | None = None
        while not self._stop.is_set():
            alive = threading.Event()
            alive.set()
            channel = grpc.insecure_channel(self.target, options=CHANNEL_OPTIONS)
            error: grpc.RpcError | None = None
            try:
                stub = pb_grpc.IngestStub(channel)
                for ack in stub.Stream(self._requests(alive)):
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
                        if self.backlog.pop(ack.seq, None) is not None:
                            self.acked += 1
                        self.cond.notify_all()
            except grpc.RpcError as exc:
                error = exc
            finally:
                alive.clear()
                channel.close()
            if self._stop.is_set():
                break
            if error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                self._drop_rejected(error)
                continue
            if down_since is None:
                down_since = time.monotonic()
                reason = error.details() if error is not None else "stream closed"
                log.warning(
                    "collector %s unreachable (%s); buffering up to %d batches",
                    self.target,
                    reason,
                    self.max_backlog,
                )
            self.reconnects += 1
            # Full jitter: spread reconnects of a whole fleet after a collector restart.
            self._stop.wait(random.uniform(0, delay))
            delay = min(self.backoff_max_s, delay * 2)

    def _drop_rejected(self, error: grpc.RpcError) -> None:
        trailing: Any = error.trailing_metadata() or ()
        seq = next((str(v) for k, v in trailing if k == REJECTED_SEQ_KEY), None)
        log.error("collector rejected a batch: %s", error.details())
        with self.cond:
            if seq is not None and self.backlog.pop(int(seq), None) is not None:
                self.rejected += 1
