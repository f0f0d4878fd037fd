"""The collector's Prometheus API beside Prometheus on the same samples: a dashboard load, a day of one
metric, and the collector's memory.

- dashboard: every panel of the GPU dashboard ($node, $gpu = all) over 1 h at Grafana's step for a
  1-hour panel (5 s; $__rate_interval 6 s), for 8 nodes x 8 GPUs stored at 1 s (`ironsight simulate
  --scenario mixed --nodes 8 --gpus 8 --duration 1h`); the panels' queries 6 at a time, as a browser
  sends them to one host, the median of 3 loads, each until every answer's last byte (parsed after).
  The first load fills the collector's head (the recent samples it keeps in memory, as Prometheus's
  head block holds them) from its store and is reported on its own (dashboard_first_s); being the
  slowest, it leaves the median the slower of the two warm loads, as a dashboard that refreshes sees.
- day: DCGM_FI_DEV_GPU_UTIL of 64 GPUs over 24 h at 1 s (5.5 M stored values, utilization-like
  integers), one query_range with a 60 s step, the median of 5.
- memory: the collector's peak resident memory (VmHWM) after all of it.

Each is measured twice: asking for gzip (Accept-Encoding: gzip), as Grafana's Prometheus data source
does (Go's HTTP client asks for it by default, and both servers then compress), and without it
(keys with _plain): the JSON as it is, 26 MB a dashboard load.

Prometheus 2.42 (Debian's) gets every sample the collector would forward, by remote write in time
order, and both answer over HTTP on loopback; each answer's series and points are compared.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import cramjam

from harness import BIN, cpu_seconds, free_port, rss_bytes, start_collector, wait_port

NAME = "promql"
ROOT = Path(__file__).resolve().parents[1]
SLICE = "10 minutes"  # fed in time order: Prometheus takes samples up to an hour behind its newest only


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--promql-nodes", type=int, default=8, help="nodes of 8 GPUs (issue 18: 8)")
    p.add_argument(
        "--promql-hours", type=float, default=24, help="the day query's span in hours (issue 18: 24)"
    )


def _prometheus(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    exe = shutil.which("prometheus")
    if exe is None:
        raise SystemExit("promql needs Debian's prometheus package")
    port = free_port()
    (tmp / "p.yml").write_text("global:\n  scrape_interval: 15s\n  evaluation_interval: 1m\n")
    proc = subprocess.Popen(
        [exe, f"--config.file={tmp}/p.yml", f"--storage.tsdb.path={tmp}/tsdb",
         f"--web.listen-address=127.0.0.1:{port}", "--web.enable-remote-write-receiver"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_port(port, proc)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.2)
    return proc, url


def _feed(db: Path, url: str) -> int:
    """Every stored sample, as the collector forwards it, into Prometheus, ten minutes at a time."""
    import duckdb

    from ironsight.collector.promql.source import Source
    from ironsight.collector.remote_write.encode import Encoder
    from ironsight.core.schema import TABLES

    con = duckdb.connect(str(db), read_only=True)
    encoder = Encoder()
    Source(con).inform(encoder, [r[0] for r in con.execute("SELECT node FROM nodes").fetchall()])
    lo, hi = con.execute("SELECT min(time), max(time) FROM gpu").fetchall()[0]
    sent = 0
    at = lo
    while at <= hi:
        tables = [(n, con.sql(f"SELECT * FROM {n} WHERE time >= ? AND time < ? + INTERVAL {SLICE} ORDER BY time",
                              params=[at, at]).to_arrow_table()) for n in TABLES]  # fmt: skip
        for body, n in encoder.encode(tables, 10_000):
            request = urllib.request.Request(f"{url}/api/v1/write", data=bytes(cramjam.snappy.compress_raw(body)),
                                             headers={"Content-Encoding": "snappy",
                                                      "Content-Type": "application/x-protobuf"})  # fmt: skip
            urllib.request.urlopen(request, timeout=120).read()
            sent += n
        at = con.execute(f"SELECT ?::TIMESTAMP + INTERVAL {SLICE}", [at]).fetchall()[0][0]
    con.close()
    return sent


def _day_store(db: Path, nodes: int, hours: float) -> None:
    """One GPU metric of nodes x 8 GPUs at 1 s, written straight into a collector's store."""
    from ironsight.collector.store import Store

    Store(db).close()  # the schema
    import duckdb

    con = duckdb.connect(str(db))
    seconds = int(hours * 3600)
    con.execute("INSERT INTO nodes (node, hostname, first_seen, last_seen) SELECT 'gpu-' || lpad(i::VARCHAR, 3, '0'), "
                "'gpu-' || lpad(i::VARCHAR, 3, '0'), TIMESTAMP '2026-11-01', TIMESTAMP '2026-11-02' "
                f"FROM range({nodes}) t(i)")  # fmt: skip
    con.execute("INSERT INTO devices SELECT 'gpu-' || lpad((i // 8)::VARCHAR, 3, '0'), 'gpu', (i % 8)::VARCHAR, "
                "MAP {'uuid': 'GPU-' || i, 'model': 'NVIDIA H200', 'pci_bus_id': '00000000:' || (i % 8) || ':00.0'}, "
                f"TIMESTAMP '2026-11-01' FROM range({nodes * 8}) t(i)")  # fmt: skip
    con.execute("INSERT INTO gpu_hot (node, device, time, util_gpu_percent) "
                "SELECT 'gpu-' || lpad((i // 8)::VARCHAR, 3, '0'), (i % 8)::VARCHAR, "
                "TIMESTAMP '2026-11-01' + to_seconds(s), (hash(i, s // 60) % 101)::DOUBLE "
                f"FROM range({nodes * 8}) t(i), range({seconds}) u(s) ORDER BY s")  # fmt: skip
    con.execute("CHECKPOINT")
    con.close()


def _get(url: str, params: dict[str, Any], gzip: bool = False) -> bytes:
    """The answer's bytes as sent: read, not decompressed or parsed (a client's own time, see _load).
    gzip: ask for it, as Grafana's Prometheus data source does (Go's HTTP client asks by default)."""
    request = urllib.request.Request(
        f"{url}/api/v1/query_range?{urllib.parse.urlencode(params)}",
        headers={"Accept-Encoding": "gzip"} if gzip else {},
    )
    with urllib.request.urlopen(request, timeout=600) as r:
        return bytes(r.read())


def _body(sent: bytes) -> dict[str, Any]:
    """An answer as JSON, whether it came gzipped or not."""
    import gzip

    return dict(json.loads(gzip.decompress(sent) if sent[:2] == b"\x1f\x8b" else sent))


def _shape(body: dict[str, Any]) -> tuple[int, int]:
    result = body["data"]["result"]
    return len(result), sum(len(r["values"]) for r in result)


def _panels() -> list[str]:
    text = (ROOT / "dashboards" / "ironsight-gpu.json").read_text()
    exprs = re.findall(r'"expr": "((?:[^"\\]|\\.)*)"', text)
    out = []
    for e in (json.loads(f'"{x}"') for x in exprs):
        for var, value in (("$__rate_interval", "6s"), ("$node", ".+"), ("$gpu", ".+")):
            e = e.replace(var, value)
        out.append(e)
    return out


def _load(
    urls: dict[str, tuple[str, int]], queries: list[dict[str, Any]], rounds: int, parallel: int, gzip: bool
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, int]]:
    """Each round's wall time of each endpoint (url, server pid) for all queries, `parallel` at a time
    (a browser opens 6 connections to a host: Grafana's panels load so), the server's CPU seconds in
    it, and the bytes a round's answers took; the answers' shapes must agree. The time is until every
    answer's last byte: decompressing and parsing the answers (26 MB of JSON for the dashboard, a second
    of this process's interpreter, the same for either server) come after, untimed, as Grafana's parse
    is Grafana's time on its own machine, not the data source's."""
    from concurrent.futures import ThreadPoolExecutor

    times: dict[str, list[float]] = {k: [] for k in urls}
    cpu: dict[str, list[float]] = {k: [] for k in urls}
    sent: dict[str, int] = {}
    shapes: dict[int, set[tuple[int, int]]] = {i: set() for i in range(len(queries))}
    with ThreadPoolExecutor(parallel) as pool:
        for _ in range(rounds):
            for name, (url, pid) in urls.items():
                used = cpu_seconds(pid)
                began = time.perf_counter()
                bodies = list(pool.map(lambda q, u=url: _get(u, q, gzip), queries))
                times[name].append(time.perf_counter() - began)
                cpu[name].append(cpu_seconds(pid) - used)
                sent[name] = sum(map(len, bodies))
                for i, body in enumerate(bodies):
                    shapes[i].add(_shape(_body(body)))
    for i, q in enumerate(queries):
        if len(shapes[i]) != 1:
            raise SystemExit(f"{q['query']}: answers differ in shape {shapes[i]}")
    return times, cpu, sent


def _collector(db: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc, _ = start_collector(str(db), ["--http-listen", f"127.0.0.1:{port}", "--no-detect",
                                        "--retention-raw", "36500d", "--retention-rollups", "36500d"])  # fmt: skip
    wait_port(port, proc)
    return proc, f"http://127.0.0.1:{port}"


def run(args: argparse.Namespace) -> dict[str, object]:
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        trace, hour = tmp / "hour.trace", tmp / "hour.duckdb"
        subprocess.run([str(BIN / "ironsight"), "simulate", "--scenario", "mixed", "--nodes", str(args.promql_nodes),
                        "--gpus", "8", "--duration", "1h", "--seed", "31337", "--out", str(trace)],
                       check=True, capture_output=True)  # fmt: skip
        subprocess.run(
            [str(BIN / "ironsight"), "replay", str(trace), "--db", str(hour)], check=True, capture_output=True
        )
        day = tmp / "day.duckdb"
        _day_store(day, args.promql_nodes, args.promql_hours)
        import duckdb

        peak = 0
        for db, key, rounds, parallel in ((hour, "dashboard", 3, 6), (day, "day", 5, 1)):
            with duckdb.connect(str(db), read_only=True) as con:
                lo, hi = (
                    x / 1000
                    for x in con.execute(
                        "SELECT epoch_ms(min(time)), epoch_ms(max(time)) FROM gpu"
                    ).fetchall()[0]
                )
            queries = ([{"query": q, "start": lo, "end": hi, "step": 5} for q in _panels()] if key == "dashboard"
                       else [{"query": "DCGM_FI_DEV_GPU_UTIL", "start": lo, "end": hi, "step": 60}])  # fmt: skip
            (tmp / key).mkdir()
            prom, prom_url = _prometheus(tmp / key)  # one each: the two stores' times overlap
            out[f"{key}_samples_fed"] = _feed(db, prom_url)  # before the collector takes the file
            proc, url = _collector(db)
            urls = {"ironsight": (url, proc.pid), "prometheus": (prom_url, prom.pid)}
            try:
                # As Grafana asks (gzip), then without compression; each mode's first round is its own
                # (the collector's very first fills its head from the store).
                measured = {mode: _load(urls, queries, rounds, parallel, gzip=mode == "")
                            for mode in ("", "_plain")}  # fmt: skip
                peak = max(peak, rss_bytes(proc.pid, "VmHWM"))
            finally:
                for p in (proc, prom):
                    p.terminate()
                    p.wait(timeout=60)
            for mode, (rounds_s, cpu_s, sent) in measured.items():
                took = {k: statistics.median(v) for k, v in rounds_s.items()}
                # The first round fills the collector's head (promql/head.py) from the store; Prometheus's
                # head was filled by the feed. The first being the slowest, the median is a warm round's.
                out[f"{key}{mode}_first_s"] = rounds_s["ironsight"][0]
                out[f"{key}{mode}_prometheus_first_s"] = rounds_s["prometheus"][0]
                out[f"{key}{mode}_s"] = took["ironsight"]
                out[f"{key}{mode}_prometheus_s"] = took["prometheus"]
                out[f"{key}{mode}_ratio"] = took["ironsight"] / took["prometheus"]
                # CPU seconds a load (median): the work each server does for it, whatever cores it uses.
                out[f"{key}{mode}_cpu_s"] = statistics.median(cpu_s["ironsight"])
                out[f"{key}{mode}_prometheus_cpu_s"] = statistics.median(cpu_s["prometheus"])
                out[f"{key}{mode}_mb"] = round(sent["ironsight"] / 1e6, 2)
                out[f"{key}{mode}_prometheus_mb"] = round(sent["prometheus"] / 1e6, 2)
            out[f"{key}_queries"] = len(queries)
        out["collector_peak_rss_mib"] = peak / 2**20
    return out
