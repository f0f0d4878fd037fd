"""Many concurrent streams into a real collector, counting values in committed rows per second."""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import grpc

from harness import start_collector

NAME = "ingest"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--streams", type=int, default=8)
    p.add_argument("--batches", type=int, default=40, help="batches per stream")
    p.add_argument("--ticks", type=int, default=100, help="ticks per batch")
    p.add_argument("--gpus", type=int, default=8)


def _gpu_batch(node: str, seq: int, t0: int, ticks: int, gpus: int) -> bytes:
    from ironsight.core.columnar import TableBuilder
    from ironsight.core.schema import TABLES
    from ironsight.v1 import telemetry_pb2 as pb

    builder = TableBuilder("gpu")
    fields = TABLES["gpu"].fields
    for i in range(ticks):
        for g in range(gpus):
            builder.add(
                t0 + i * 10**8, str(g), {f.name: (i + g if f.type == "int" else 0.5 * i + g) for f in fields}
            )
    batch = pb.Batch(node_id=node, boot_id="bench", seq=seq, interval_s=0.1)
    batch.tables.append(builder.to_proto())
    return batch.SerializeToString()


def run(args: argparse.Namespace) -> dict[str, object]:
    """Many concurrent streams into a real collector, counting values in committed rows per second."""
    from ironsight.core.schema import TABLES
    from ironsight.v1 import telemetry_pb2 as pb

    values_per_batch = args.ticks * args.gpus * len(TABLES["gpu"].fields)
    t0 = time.time_ns() - 120 * 10**9
    payloads = [
        [
            _gpu_batch(f"bench-{s}", seq, t0 + seq * args.ticks * 10**8, args.ticks, args.gpus)
            for seq in range(args.batches)
        ]
        for s in range(args.streams)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        col, port = start_collector(f"{tmp}/i.duckdb")
        acked = [0] * args.streams
        errors: list[str] = []

        def stream(i: int) -> None:
            with grpc.insecure_channel(
                f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 2**26)]
            ) as ch:
                call = ch.stream_stream(
                    "/ironsight.v1.Ingest/Stream",
                    request_serializer=lambda b: b,
                    response_deserializer=pb.Ack.FromString,
                )
                try:
                    for ack in call(iter(payloads[i]), timeout=600):
                        acked[i] += ack.status == pb.Ack.STORED
                except grpc.RpcError as exc:
                    errors.append(exc.details() or str(exc))

        threads = [threading.Thread(target=stream, args=(i,)) for i in range(args.streams)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        col.terminate()
        col.wait()
        size = Path(f"{tmp}/i.duckdb").stat().st_size
    if errors:
        raise SystemExit(f"ingest errors: {errors[:3]}")
    total = sum(acked) * values_per_batch
    return {
        "streams": args.streams,
        "batches": sum(acked),
        "values_per_batch": values_per_batch,
        "values": total,
        "seconds": wall,
        "values_per_second": total / wall,
        "db_bytes_per_value": size / total,
    }
