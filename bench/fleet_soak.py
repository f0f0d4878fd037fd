"""A fleet at its real pace for minutes: ingest, the live detector, rollups and forwarding all at once.

--soak-nodes nodes of 8 GPUs each send one 1 s batch a second (the
simulator's nodes copied, their node ids rewritten in the serialized bytes,
each node a gRPC stream, from a separate process), for --soak-seconds, into
one collector with its live detector, retention (rollups every minute) and
remote write to a counting sink in a separate process (the receiver a
fleet would have elsewhere). Every 5 s the collector's /metrics is read:
the detector's last step duration and steps run, the remote-write queue,
and the newest-sample lag of every node. Keeping up means: every batch
stored and acknowledged within a few seconds of being sent, detector steps
shorter than their 10 s and none skipped, the forward queue not growing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import remote_write

from harness import (
    collector_metrics,
    cpu_seconds,
    free_port,
    record,
    records,
    run_sender,
    start_collector,
    wait_port,
)

NAME = "fleet-soak"
LEAD_S = 20  # the first batch is due this long after the sender starts


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--soak-nodes", type=int, default=400, help="nodes of 8 GPUs, a stream each")
    p.add_argument(
        "--soak-seconds", type=int, default=600, help="seconds each node sends, one batch a second"
    )


def build(seconds: int, out: Path, start_ns: int) -> None:
    """out/source-K: the simulator's 8 nodes' batches (ids fleet-0000K, fixed width for rewriting)."""
    from ironsight.offline.simulate import simulate

    _, batches = simulate("mixed", nodes=8, gpus=8, duration_s=seconds, seed=17, batch_s=1, start_ns=start_ns)
    files: dict[str, list[bytes]] = {}
    for b in batches:
        k = int(b.node_id.removeprefix("sim-"))
        b.node_id = f"fleet-{k:05d}"
        if b.HasField("node"):
            b.node.node_id = b.node.hostname = b.node_id
        files.setdefault(b.node_id, []).append(b.SerializeToString())
    for name, raws in files.items():
        Path(out, name).write_bytes(b"".join(record(r) for r in raws))


async def send(target: str, folder: Path, nodes: int, start: float) -> dict[str, object]:
    """Each node's batches at start + i seconds (a node's own offset within the second); returns acks and
    the delay from each batch's due time to its acknowledgement."""
    import grpc

    from ironsight.v1 import telemetry_pb2 as pb

    sources = [records(p) for p in sorted(folder.iterdir())]
    delays: list[float] = []
    stored, errors = [0], list[str]()

    async def one(n: int) -> None:
        src = sources[n % len(sources)]
        old, new = f"fleet-{n % len(sources):05d}".encode(), f"fleet-{n:05d}".encode()
        offset = (n * 0.6180339) % 1.0  # nodes' ticks spread over the second, as real agents' are
        due: list[float] = []

        async def requests() -> AsyncIterator[bytes]:
            for i, raw in enumerate(src):
                at = start + i + offset
                await asyncio.sleep(max(0.0, at - time.time()))
                due.append(at)
                yield raw.replace(old, new)

        call = channel.stream_stream(
            "/ironsight.v1.Ingest/Stream", request_serializer=None, response_deserializer=pb.Ack.FromString
        )
        acked = 0  # acknowledgements come in the order the batches went
        try:
            async for ack in call(requests(), timeout=len(src) + 600):
                delays.append(time.time() - due[acked])
                acked += 1
                stored[0] += ack.status == pb.Ack.STORED
        except grpc.aio.AioRpcError as exc:
            errors.append(exc.details() or str(exc))

    async with grpc.aio.insecure_channel(target) as channel:
        await asyncio.gather(*(one(n) for n in range(nodes)))
    delays.sort()
    return {
        "batches": stored[0],
        "errors": errors[:3],
        "ack_delay_p50_s": round(delays[len(delays) // 2], 3) if delays else None,
        "ack_delay_p99_s": round(delays[int(len(delays) * 0.99)], 3) if delays else None,
        "ack_delay_max_s": round(delays[-1], 3) if delays else None,
    }


def run(args: argparse.Namespace) -> dict[str, object]:
    """A fleet at its real pace for minutes: ingest, the live detector, rollups and forwarding all at once."""
    with tempfile.TemporaryDirectory() as tmp:
        load = Path(tmp) / "load"
        load.mkdir()
        start = time.time() + 60 + LEAD_S  # building takes well under a minute
        build(args.soak_seconds, load, int(start) * 10**9)
        sink, url = remote_write._sink(tmp)
        http_port = free_port()
        col, port = start_collector(f"{tmp}/c.duckdb", [
            "--http-listen", f"127.0.0.1:{http_port}", "--remote-write-url", url])  # fmt: skip
        samples: list[dict[str, float]] = []
        done = threading.Event()

        def watch() -> None:
            while not done.wait(5):
                samples.append(collector_metrics(http_port, max_of=("ironsight_collector_node_lag_seconds",)))

        try:
            wait_port(http_port)
            watcher = threading.Thread(target=watch, daemon=True)
            cpu0, wall0 = cpu_seconds(col.pid), time.time()
            watcher.start()
            sent, _ = run_sender(
                __file__, f"127.0.0.1:{port}", load, col.pid, (str(args.soak_nodes), str(start))
            )
            done.set()
            watcher.join()
            final = collector_metrics(http_port, max_of=("ironsight_collector_node_lag_seconds",))
            cpu = cpu_seconds(col.pid) - cpu0
            wall = time.time() - max(wall0, start)
        finally:
            col.terminate()
            col.wait()
            sink.terminate()
            sink.wait()
    expected = args.soak_nodes * args.soak_seconds
    if sent["errors"] or sent["batches"] != expected:
        raise SystemExit(f"fleet-soak: {sent['batches']} of {expected} stored; {sent['errors']}")
    during = [s for s in samples if s.get("ironsight_detector_steps_total", 0) > 0]
    steps = [s["ironsight_detector_step_seconds"] for s in during]
    queue = [s.get("ironsight_remote_write_queue_values", 0.0) for s in samples]
    return {
        "nodes": args.soak_nodes,
        "seconds": args.soak_seconds,
        "batches": expected,
        **{k: v for k, v in sent.items() if k.startswith("ack_")},
        "detector_steps": final.get("ironsight_detector_steps_total"),
        "detector_step_p50_s": round(statistics.median(steps), 3) if steps else None,
        "detector_step_max_s": round(max(steps), 3) if steps else None,
        "detector_failures": final.get("ironsight_detector_failures_total"),
        "forward_queue_max_values": max(queue) if queue else None,
        "forward_queue_last_values": queue[-1] if queue else None,
        "samples_forwarded": final.get("ironsight_remote_write_samples_sent_total"),
        "values_dropped": final.get("ironsight_remote_write_values_dropped_total"),
        "rollup_rows": final.get("ironsight_retention_rollup_rows_total"),
        "node_lag_max_s": max(
            (s.get("ironsight_collector_node_lag_seconds", 0.0) for s in samples), default=None
        ),
        "collector_cores": round(cpu / wall, 2),
    }


def _main() -> None:
    target, folder, nodes, start = sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    began = time.process_time()
    result = asyncio.run(send(target, folder, nodes, start))
    result["cpu_s"] = time.process_time() - began
    print(json.dumps(result))


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--send":
    _main()
