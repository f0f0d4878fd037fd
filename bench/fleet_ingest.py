"""A fleet's agents at 1 s into one collector: batches and values a second into committed rows.

The load is the simulator's nodes (8 GPUs, every table an agent sends, one
tick a batch, as agents send at --interval 1) copied to --fleet-nodes
nodes, each node its own gRPC stream, sent by a separate load-generator
process as fast as the collector acknowledges. Each batch counts once it is
acknowledged STORED (after its commit). The collector's and the
generator's CPU seconds are reported per million values, and the
collector's peak resident memory.

The generator shares the 2 cores with the collector. With `node` installed it
is bench/fleet_send.js (Node's HTTP/2, nghttp2 in C: some 25 us of CPU a
batch); otherwise, or with --fleet-generator python, this file's grpc.aio
sender (some 100-120 us a batch, a fifth of the machine at 2,000 batches/s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from harness import record, records, rss_bytes, run_sender, start_collector

NAME = "fleet-ingest"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fleet-nodes", type=int, default=256, help="nodes (streams) sending at once")
    p.add_argument("--fleet-seconds", type=int, default=60, help="simulated seconds each node sends")
    p.add_argument("--fleet-extra", nargs="*", default=[], help="extra collector flags")
    p.add_argument("--fleet-generator", choices=("auto", "node", "python"), default="auto",
                   help="the load generator: node (bench/fleet_send.js), python (grpc.aio); auto: node if installed")  # fmt: skip


def generator(choice: str) -> str:
    """The sender script for --fleet-generator."""
    if choice == "python" or (choice == "auto" and shutil.which("node") is None):
        return __file__
    return str(Path(__file__).with_name("fleet_send.js"))


def build(nodes: int, seconds: int, out: Path, start_ns: int | None = None) -> dict[str, int]:
    """Writes each node's serialized batches (length-prefixed) to out/NODE; returns counts."""
    from ironsight.core.columnar import values_in
    from ironsight.offline.simulate import simulate
    from ironsight.v1 import telemetry_pb2 as pb

    sim_nodes = min(8, nodes)
    if start_ns is None:
        _, batches = simulate("mixed", nodes=sim_nodes, gpus=8, duration_s=seconds, seed=17, batch_s=1)
    else:
        _, batches = simulate("mixed", nodes=sim_nodes, gpus=8, duration_s=seconds, seed=17, batch_s=1,
                              start_ns=start_ns)  # fmt: skip
    per_node: dict[str, list[pb.Batch]] = {}
    for b in batches:
        per_node.setdefault(b.node_id, []).append(b)
    values = 0
    sources = list(per_node.values())
    for n in range(nodes):
        with (out / f"n{n:05d}").open("wb") as f:
            for b in sources[n % sim_nodes]:
                copy = pb.Batch()
                copy.CopyFrom(b)
                copy.node_id = f"fleet-{n:05d}"
                if copy.HasField("node"):  # the first batch of a stream, as an agent's
                    copy.node.node_id = copy.node.hostname = copy.node_id
                copy.boot_id = f"boot-{n}"
                f.write(record(copy.SerializeToString()))
                values += sum(values_in(t) for t in copy.tables)
    return {"batches": nodes * len(sources[0]), "values": values}


async def send(target: str, files: list[Path]) -> dict[str, object]:
    """One stream per node file, all at once; returns what was acknowledged STORED, and when."""
    import grpc

    from ironsight.v1 import telemetry_pb2 as pb

    count = [0]
    errors: list[str] = []

    async def one(path: Path) -> None:
        msgs = records(path)
        call = channel.stream_stream(
            "/ironsight.v1.Ingest/Stream", request_serializer=None, response_deserializer=pb.Ack.FromString
        )
        try:
            async for ack in call(iter(msgs), timeout=900):
                count[0] += ack.status == pb.Ack.STORED
        except grpc.aio.AioRpcError as exc:
            errors.append(exc.details() or str(exc))

    async with grpc.aio.insecure_channel(
        target, options=[("grpc.max_send_message_length", 2**26)]
    ) as channel:
        start = time.perf_counter()
        await asyncio.gather(*(one(p) for p in files))
        wall = time.perf_counter() - start
    return {"batches": count[0], "errors": errors[:3], "seconds": wall}


def run(args: argparse.Namespace) -> dict[str, object]:
    """A fleet's agents at 1 s into one collector: batches and values a second into committed rows."""
    with tempfile.TemporaryDirectory() as tmp:
        load = Path(tmp) / "load"
        load.mkdir()
        counts = build(args.fleet_nodes, args.fleet_seconds, load)
        col, port = start_collector(f"{tmp}/f.duckdb", args.fleet_extra)
        sender = generator(args.fleet_generator)
        try:
            sent, used = run_sender(sender, f"127.0.0.1:{port}", load, col.pid)
            peak = rss_bytes(col.pid, "VmHWM")
        finally:
            col.terminate()
            col.wait()
    if sent["errors"] or sent["batches"] != counts["batches"]:
        raise SystemExit(f"fleet-ingest: {sent['batches']} of {counts['batches']} stored; {sent['errors']}")
    values, wall = counts["values"], float(sent["seconds"])
    return {
        "nodes": args.fleet_nodes,
        "batches": counts["batches"],
        "values_per_batch": round(values / counts["batches"]),
        "seconds": round(wall, 2),
        "batches_per_second": round(counts["batches"] / wall),
        "values_per_second": round(values / wall),
        "collector_cpu_s_per_million_values": round(used / values * 1e6, 3),
        "generator_cpu_s_per_million_values": round(float(sent["cpu_s"]) / values * 1e6, 3),
        "generator": "node" if sender.endswith(".js") else "python",
        "collector_peak_rss_mib": round(peak / 2**20),
    }


def _main() -> None:
    target, folder = sys.argv[2], Path(sys.argv[3])
    started = time.process_time()
    result = asyncio.run(send(target, sorted(folder.iterdir())))
    result["cpu_s"] = time.process_time() - started
    print(json.dumps(result))


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--send":
    _main()
