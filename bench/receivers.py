"""fleet-ingest's load as Prometheus remote write into Prometheus and VictoriaMetrics, same run.

The peers a user would pick instead of ironsight's collector, fed the same
nodes, values and cadence: each node's 1 s batches rendered as the
collector's forwarder renders them (node_exporter and dcgm-exporter series,
instance = node), one snappy WriteRequest per node and second, posted in
time order per node over keep-alive connections from a separate process.
ironsight's own row runs fleet-ingest on the same load. Each receiver's CPU
seconds per million samples (values for ironsight); acknowledged means:
ironsight after its commit, Prometheus after its WAL append, VictoriaMetrics
once buffered in memory (it flushes within a second).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import fleet_ingest

from harness import free_port, record, records, run_sender, wait_port

NAME = "receivers"
CONNECTIONS = 32


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--recv-nodes", type=int, default=128, help="nodes of 8 GPUs, each a stream (connection share)"
    )
    p.add_argument("--recv-seconds", type=int, default=60, help="seconds of 1 s batches each node sends")


def build(nodes: int, seconds: int, out: Path, start_ns: int) -> int:
    """out/NODE: each node's requests (length-prefixed, snappy); returns the samples in all."""
    import cramjam

    from ironsight.collector.remote_write.series import Series, SeriesBuilder
    from ironsight.core.columnar import decode_group, group_arrow, view
    from ironsight.offline.simulate import simulate
    from ironsight.prompb import remote_pb2 as prompb

    sources = min(8, nodes)
    _, batches = simulate(
        "mixed", nodes=sources, gpus=8, duration_s=seconds, seed=17, batch_s=1, start_ns=start_ns
    )
    rendered: dict[int, list[bytes]] = {}
    builder, samples = SeriesBuilder(), [0] * sources
    for b in batches:
        k = int(b.node_id.removeprefix("sim-"))
        node = f"fleet-{k:05d}"  # the copies' names are as long: their bytes replace these
        b.node.node_id = b.node.hostname = node
        builder.learn(node, b.node)
        v = view(b)
        series: Series = {}
        samples[k] += builder.add(
            [(t.name, group_arrow(decode_group(t.name, [(node, t)]))) for t in v.tables], series
        )
        req = prompb.WriteRequest()
        for labels, points in series.items():
            ts = req.timeseries.add()
            ts.labels.extend(prompb.Label(name=n, value=x) for n, x in labels)
            ts.samples.extend(prompb.Sample(value=x, timestamp=ms) for ms, x in points)
        rendered.setdefault(k, []).append(req.SerializeToString())
    total = 0
    for n in range(nodes):
        k = n % sources
        with (out / f"n{n:05d}").open("wb") as f:
            for raw in rendered[k]:
                body = bytes(
                    cramjam.snappy.compress_raw(
                        raw.replace(f"fleet-{k:05d}".encode(), f"fleet-{n:05d}".encode())
                    )
                )
                f.write(record(body))
        total += samples[k]
    return total


def _receiver(kind: str, tmp: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    if kind == "prometheus":
        exe = shutil.which("prometheus")
        Path(tmp, "p.yml").write_text("global:\n  scrape_interval: 15s\n")
        cmd = [str(exe), f"--config.file={tmp}/p.yml", f"--storage.tsdb.path={tmp}/tsdb",
               f"--web.listen-address=127.0.0.1:{port}", "--web.enable-remote-write-receiver"]  # fmt: skip
    else:
        exe = shutil.which("victoria-metrics")
        cmd = [
            str(exe),
            f"-storageDataPath={tmp}/vm",
            f"-httpListenAddr=127.0.0.1:{port}",
            "-loggerLevel=ERROR",
        ]
    if exe is None:
        raise SystemExit(f"receivers needs Debian's {kind} package")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, proc)
    return proc, f"http://127.0.0.1:{port}/api/v1/write"


def run(args: argparse.Namespace) -> dict[str, object]:
    """fleet-ingest's load as Prometheus remote write into Prometheus and VictoriaMetrics, same run."""
    out: dict[str, object] = {"nodes": args.recv_nodes}
    # The same kind of sender for all three (Python, on the same 2 cores): fleet-ingest's own row may
    # use the cheaper Node generator, these receivers have no counterpart of it here.
    ours = fleet_ingest.run(
        argparse.Namespace(
            fleet_nodes=args.recv_nodes,
            fleet_seconds=args.recv_seconds,
            fleet_extra=[],
            fleet_generator="python",
        )
    )
    out["ironsight_values_per_second"] = ours["values_per_second"]
    out["ironsight_batches_per_second"] = ours["batches_per_second"]
    out["ironsight_cpu_s_per_million"] = ours["collector_cpu_s_per_million_values"]
    for kind in ("victoria-metrics", "prometheus"):
        with tempfile.TemporaryDirectory() as tmp:
            load = Path(tmp) / "load"
            load.mkdir()
            # Recent times: Prometheus takes samples within its head block's window only.
            start_ns = (time.time_ns() - args.recv_seconds * 10**9 - 60 * 10**9) // 10**9 * 10**9
            samples = build(args.recv_nodes, args.recv_seconds, load, start_ns)
            proc, url = _receiver(kind, tmp)
            try:
                result, used = run_sender(__file__, url, load, proc.pid)
            finally:
                proc.terminate()
                proc.wait()
        if result["errors"]:
            raise SystemExit(f"{kind}: {result['errors']}")
        key = kind.replace("-", "_")
        out[f"{key}_samples_per_second"] = round(samples / float(result["seconds"]))
        # The same node-seconds: a node's second is more samples as series than values as rows.
        out[f"{key}_batches_per_second"] = round(
            args.recv_nodes * args.recv_seconds / float(result["seconds"])
        )
        out[f"{key}_cpu_s_per_million"] = round(used / samples * 1e6, 3)
        out[f"{key}_sender_cpu_s_per_million"] = round(float(result["cpu_s"]) / samples * 1e6, 3)
    for key in ("victoria_metrics", "prometheus"):
        out[f"ironsight_vs_{key}"] = round(
            float(str(out["ironsight_values_per_second"])) / float(str(out[f"{key}_samples_per_second"])), 2
        )
    return out


def send(url: str, folder: Path) -> dict[str, object]:
    """Posts each node's requests in order, CONNECTIONS at once; counts 2xx."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    files = sorted(folder.iterdir())
    ok, sent, retried, failed = [0], [0], [0], list[str]()
    lock = threading.Lock()

    def worker(k: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
        headers = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
                   "X-Prometheus-Remote-Write-Version": "0.1.0"}  # fmt: skip
        for path in files[k::CONNECTIONS]:
            for request in records(path):
                with lock:
                    sent[0] += 1
                for attempt in range(5):  # a dropped connection is retried on a new one, as senders do
                    try:
                        conn.request("POST", parts.path, body=request, headers=headers)
                        resp = conn.getresponse()
                        body = resp.read()
                        break
                    except (OSError, http.client.HTTPException) as exc:
                        conn.close()
                        with lock:
                            retried[0] += 1
                            if attempt == 4 and len(failed) < 3:
                                failed.append(f"{type(exc).__name__}: {exc}")
                else:
                    continue
                with lock:
                    if 200 <= resp.status < 300:
                        ok[0] += 1
                    elif len(failed) < 3:
                        failed.append(f"{resp.status} {body[:200]!r}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(CONNECTIONS)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    if ok[0] != sent[0] and not failed:
        failed.append(f"{sent[0] - ok[0]} of {sent[0]} requests not acknowledged")
    return {"requests": ok[0], "retried": retried[0], "errors": failed, "seconds": seconds}


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--send":
    began = time.process_time()
    result = send(sys.argv[2], Path(sys.argv[3]))
    result["cpu_s"] = time.process_time() - began
    print(json.dumps(result))
