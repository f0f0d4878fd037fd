"""`ironsight record`: run the agent's samplers and write a trace file, optionally streaming too."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from ironsight.agent.batch import Batcher, boot_id, node_info
from ironsight.agent.loop import Sink, sample_loop
from ironsight.agent.main import (
    add_sampling_args,
    add_tls_args,
    budget,
    build_samplers,
    check_tls_args,
    sampler_context,
    stop_on_signals,
)
from ironsight.agent.runner import Runner
from ironsight.agent.samplers.base import Paths, raise_fd_limit
from ironsight.core.flags import dial_address, duration_arg, setup_logging
from ironsight.core.trace import TraceWriter
from ironsight.v1 import telemetry_pb2 as pb

log = logging.getLogger("ironsight.agent")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ironsight record",
        description="Sample this node like the agent does and write the batches to a trace file.",
        epilog=(
            "examples:\n  ironsight record --out idle.trace --duration 60s\n"
            "  ironsight record --out burn.trace --interval 0.1 --duration 5m --tee-collector 127.0.0.1:7070"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, required=True, help="trace file to write (refuses to overwrite)")
    p.add_argument("--duration", type=duration_arg, help="stop after this long (default: until Ctrl-C)")
    p.add_argument(
        "--tee-collector", type=dial_address, metavar="HOST:PORT", help="also stream to this collector"
    )
    add_sampling_args(p)
    add_tls_args(p)
    return p


class TraceSink:
    def __init__(self, writer: TraceWriter) -> None:
        self.writer = writer

    def submit(self, batch: pb.Batch) -> None:
        self.writer.write(batch)


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    problem = check_tls_args(args, args.tee_collector)
    if problem:
        p.error(problem)
    setup_logging(args.log_level, args.log_format)
    if args.out.exists():
        print(f"ironsight record: {args.out} exists; choose another --out or remove it", file=sys.stderr)
        return 2
    if not args.out.parent.is_dir():
        print(f"ironsight record: {args.out.parent} is not a directory", file=sys.stderr)
        return 2
    paths = Paths(procfs=args.procfs, sysfs=args.sysfs, rootfs=args.rootfs)
    raise_fd_limit()
    runner = Runner(build_samplers(args, sampler_context(args, paths)), budget_s=budget(args.interval))
    stop = stop_on_signals()
    try:
        header = pb.TraceHeader(interval_s=args.interval, source="record", created_ns=time.time_ns())
        header.nodes.append(node_info(runner.inventory(), paths, args.node_id))
        writer = TraceWriter(args.out, header)
        sinks: list[Sink] = [TraceSink(writer)]
        sender = None
        if args.tee_collector:
            from ironsight.agent.stream import Sender

            sender = Sender(args.tee_collector, tls=args.tls)
            sender.start()
            sinks.append(sender)
        batcher = Batcher(args.node_id, boot_id(paths), args.interval)
        log.info(
            "recording every %gs into %s%s",
            args.interval,
            args.out,
            "" if args.duration is None else f" for {args.duration:g}s",
        )
        ticks = sample_loop(runner, batcher, paths, sinks, stop, args.batch_seconds, args.duration)
        writer.close()
        if sender is not None:
            sender.stop()
        print(f"wrote {writer.batches} batches ({ticks} ticks) to {args.out}")
        return 0
    finally:
        runner.close()


if __name__ == "__main__":
    raise SystemExit(main())
