"""Replay of trace files: into a running collector as live agents would, or straight into a DuckDB file.

Every file is verified whole (checksum included) before anything is sent or
stored, so a damaged trace loads nothing. Each node streams on its own gRPC
stream with its own recorded sequence numbers: replaying a trace twice
stores it once, because the collector drops what it already has.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from ironsight.collector.store import Store
from ironsight.core.columnar import values_in
from ironsight.core.trace import iter_batches
from ironsight.core.transport import Tls, channel
from ironsight.core.validate import InvalidBatch, Limits, validate
from ironsight.v1 import telemetry_pb2 as pb


class ReplayError(Exception):
    """A user-facing failure: one line."""


@dataclass
class ReplayStats:
    batches: int = 0
    values: int = 0
    stored: int = 0
    duplicate: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


def _values(batch: pb.Batch) -> int:
    return sum(values_in(t) for t in batch.tables)


def first_time_ns(batch: pb.Batch) -> int:
    return min((t.time_ns[0] for t in batch.tables if t.time_ns), default=0)


def last_time_ns(batch: pb.Batch) -> int:
    return max((max(t.time_ns) for t in batch.tables if t.time_ns), default=0)


def shift_batch(batch: pb.Batch, shift_ns: int) -> None:
    for t in batch.tables:
        shifted = [v + shift_ns for v in t.time_ns]
        del t.time_ns[:]
        t.time_ns.extend(shifted)


@dataclass
class Plan:
    """What a set of trace files holds, known before anything is sent."""

    files: list[Path]
    batches: int
    values: int
    start_ns: int
    end_ns: int


def load(files: list[Path]) -> tuple[Plan, list[pb.Batch]]:
    """Every batch of every file, in one pass. Reading a file whole verifies it (a damaged
    one raises TraceError), so nothing is sent or stored before all files have been read."""
    batches = [b for f in files for b in iter_batches(f)]
    values = sum(_values(b) for b in batches)
    start = min((first_time_ns(b) for b in batches), default=0)
    end = max((last_time_ns(b) for b in batches), default=0)
    return Plan(files, len(batches), values, start, end), batches


def to_db(files: list[Path], db: Path, shift_to_now: bool = False) -> ReplayStats:
    """Loads traces into a DuckDB file in one transaction: all of it, or (on any error) none."""
    p, loaded = load(files)
    shift = time.time_ns() - p.end_ns if shift_to_now else 0
    # Offline loading takes history of any age; only the sender-side checks apply.
    limits = Limits(max_age_ns=2**62)
    now = time.time_ns() if shift_to_now else max(time.time_ns(), p.end_ns)
    batches = []
    for b in loaded:
        if shift:
            shift_batch(b, shift)
        try:
            batches.append(validate(b, limits, now_ns=now))
        except InvalidBatch as exc:
            raise ReplayError(f"invalid batch in trace: {exc}") from exc
    start = time.perf_counter()
    store = Store(db)
    try:
        outcomes = store.ingest(batches)
    finally:
        store.close()
    # Every batch was validated whole above, so none can be refused here.
    acks = [o for o in outcomes if isinstance(o, pb.Ack)]
    stats = ReplayStats(batches=len(batches), values=p.values, seconds=time.perf_counter() - start)
    stats.stored = sum(a.status == pb.Ack.STORED for a in acks)
    stats.duplicate = len(acks) - stats.stored
    return stats


def to_collector(
    files: list[Path],
    target: str,
    tls: Tls | None,
    speed: float | None,
    shift_to_now: bool = False,
    progress: Callable[[int], None] = lambda values: None,
    on_plan: Callable[[Plan], None] = lambda plan: None,
) -> ReplayStats:
    """Streams traces into a collector, one stream per node. speed None means as fast as it takes them.

    on_plan hears what the files hold once they are read, before anything is sent;
    progress hears each acknowledged batch's value count."""
    p, loaded = load(files)
    on_plan(p)
    by_node: dict[str, list[pb.Batch]] = {}
    for b in loaded:
        by_node.setdefault(b.node_id, []).append(b)
    wall_start_ns = time.time_ns()
    if shift_to_now:
        # Paced: data arrives "live" from now on. As fast as possible: the trace ends now.
        shift = wall_start_ns - p.start_ns if speed is not None else wall_start_ns - p.end_ns
    else:
        shift = 0
    stats = ReplayStats(batches=p.batches, values=p.values)
    lock = threading.Lock()
    t0 = 0.0

    # Shifted and serialized before the clock starts: the stream then only sends bytes.
    wire: dict[str, list[tuple[int, int, bytes]]] = {}
    for node, batches in by_node.items():
        for b in batches:
            due_ns = first_time_ns(b) - p.start_ns
            if shift:
                shift_batch(b, shift)
            wire.setdefault(node, []).append((due_ns, b.seq, b.SerializeToString()))

    def paced(records: list[tuple[int, int, bytes]]) -> Iterator[bytes]:
        for due_ns, _, raw in records:
            if speed is not None:
                delay = t0 + due_ns / 1e9 / speed - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            yield raw

    def stream(node: str, records: list[tuple[int, int, bytes]]) -> None:
        values = {b.seq: _values(b) for b in by_node[node]}
        options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
        try:
            with channel(target, tls, options) as ch:
                call = ch.stream_stream(
                    "/ironsight.v1.Ingest/Stream",
                    request_serializer=lambda raw: raw,  # already the wire bytes
                    response_deserializer=pb.Ack.FromString,
                )
                for ack in call(paced(records)):
                    with lock:
                        if ack.status == pb.Ack.STORED:
                            stats.stored += 1
                        else:
                            stats.duplicate += 1
                    progress(values.get(ack.seq, 0))
        except grpc.RpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.UNAVAILABLE:
                message = f"collector {target} is unreachable ({exc.details()})"
            else:
                message = f"node {node}: {code.name}: {exc.details()}"
            with lock:
                stats.errors.append(message)

    t0 = time.monotonic()
    threads = [threading.Thread(target=stream, args=(n, r), name=f"replay-{n}") for n, r in wire.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats.seconds = time.monotonic() - t0
    return stats
