"""Forwarding: fleet-ingest's load stored by a collector that remote-writes every sample on.

fleet-ingest's nodes (8 GPUs, 1 s batches, a stream each, from a separate
process) go into a collector run with --remote-write-url, once per receiver:
a sink (a separate process that checks and counts each request's samples and
answers 204 at once: the forwarder's own ceiling), VictoriaMetrics and
Prometheus (Debian's, each a real receiver). A run ends when the last batch
is stored and the forward queue is empty; nothing may be dropped or refused.
Reported: samples forwarded a second over the whole run, the forwarder
thread's CPU seconds per million samples (ironsight_remote_write_cpu_seconds_total)
and the whole collector's, ingest included.
"""

from __future__ import annotations

import argparse
import http.server
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fleet_ingest
import receivers

from harness import collector_metrics, cpu_seconds, free_port, run_sender, start_collector, wait_port

NAME = "remote-write"
RECEIVERS = ("sink", "victoria-metrics", "prometheus")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rw-nodes", type=int, default=128, help="nodes of 8 GPUs, a stream each")
    p.add_argument("--rw-seconds", type=int, default=60, help="seconds of 1 s batches each node sends")
    p.add_argument("--rw-receivers", nargs="*", default=list(RECEIVERS), choices=RECEIVERS)


def _sink(tmp: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--sink", str(port), f"{tmp}/sink.json"])
    wait_port(port, proc)
    return proc, f"http://127.0.0.1:{port}/api/v1/write"


def one(kind: str, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        load = Path(tmp) / "load"
        load.mkdir()
        # Recent times: Prometheus takes samples within its head block's window only.
        start_ns = (time.time_ns() - args.rw_seconds * 10**9 - 60 * 10**9) // 10**9 * 10**9
        counts = fleet_ingest.build(args.rw_nodes, args.rw_seconds, load, start_ns)
        receiver, url = _sink(tmp) if kind == "sink" else receivers._receiver(kind, tmp)
        http_port = free_port()
        col, port = start_collector(f"{tmp}/c.duckdb", [
            "--no-detect", "--http-listen", f"127.0.0.1:{http_port}", "--remote-write-url", url,
            "--remote-write-queue-values", str(counts["values"] * 2)])  # fmt: skip
        try:
            wait_port(http_port)
            began, cpu0, rcpu0 = time.perf_counter(), cpu_seconds(col.pid), cpu_seconds(receiver.pid)
            sent, _ = run_sender(fleet_ingest.__file__, f"127.0.0.1:{port}", load, col.pid)
            while (f := collector_metrics(http_port))["ironsight_remote_write_queue_values"] > 0 or f[
                "ironsight_remote_write_requests_total"
            ] == 0:
                time.sleep(0.05)
            wall = time.perf_counter() - began
            cpu, rcpu = cpu_seconds(col.pid) - cpu0, cpu_seconds(receiver.pid) - rcpu0
        finally:
            col.terminate()
            col.wait()
            receiver.terminate()
            receiver.wait()
        received = json.loads(Path(tmp, "sink.json").read_text()) if kind == "sink" else None
    samples = f["ironsight_remote_write_samples_sent_total"]
    if sent["errors"] or sent["batches"] != counts["batches"]:
        raise SystemExit(f"remote-write: {sent['batches']} of {counts['batches']} stored; {sent['errors']}")
    lost = f["ironsight_remote_write_samples_failed_total"] + f["ironsight_remote_write_values_dropped_total"]
    if lost or (received is not None and received["samples"] != samples):
        raise SystemExit(f"remote-write to {kind}: {f}; the sink counted {received}")
    return {
        "samples": samples,
        "samples_per_second": round(samples / wall),
        "stored_values_per_second": round(counts["values"] / wall),
        "forwarder_cpu_s_per_million_samples": round(
            f["ironsight_remote_write_cpu_seconds_total"] / samples * 1e6, 3
        ),
        "collector_cpu_s_per_million_samples": round(cpu / samples * 1e6, 3),
        "receiver_cpu_s_per_million_samples": round(rcpu / samples * 1e6, 3),
        "requests": f["ironsight_remote_write_requests_total"],
        "seconds": round(wall, 2),
    }


def run(args: argparse.Namespace) -> dict[str, object]:
    """Forwarding: fleet-ingest's load stored by a collector that remote-writes every sample on."""
    out: dict[str, object] = {"nodes": args.rw_nodes, "seconds_each": args.rw_seconds}
    for kind in args.rw_receivers:
        for key, value in one(kind, args).items():
            out[f"{kind.replace('-', '_')}_{key}"] = value
    return out


class _Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver
    samples = 0
    requests = 0

    def do_POST(self) -> None:
        import cramjam

        from ironsight.prompb import remote_pb2 as prompb

        body = self.rfile.read(int(self.headers["Content-Length"]))
        req = prompb.WriteRequest.FromString(bytes(cramjam.snappy.decompress_raw(body)))
        _Sink.samples += sum(len(ts.samples) for ts in req.timeseries)
        _Sink.requests += 1
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


def _serve_sink(port: int, report: Path) -> None:
    import signal

    server = http.server.HTTPServer(("127.0.0.1", port), _Sink)

    def stop(*_: object) -> None:
        report.write_text(json.dumps({"samples": _Sink.samples, "requests": _Sink.requests}))
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    server.serve_forever()


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--sink":
    _serve_sink(int(sys.argv[2]), Path(sys.argv[3]))
