"""What every benchmark shares: the real processes it measures, their CPU and memory, node_exporter as the peer.

Free ports and waiting for a listener come from the tests' own helpers
(tests/support/processes.py), so a benchmark starts a collector exactly as
the tests do. A benchmark is a module with NAME, add_arguments(parser) and
run(args) -> dict of figures; bench/run.py lists them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT / "tests"))

from ironsight.core.trace import TraceWriter  # noqa: E402
from ironsight.v1 import telemetry_pb2 as pb  # noqa: E402

from support.processes import BIN, free_port, wait_port  # noqa: E402 - needs the path above

TICKS = os.sysconf("SC_CLK_TCK")
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
# node_exporter collectors that read what our host samplers read.
NODE_EXPORTER_COLLECTORS = [
    "cpu", "cpufreq", "stat", "loadavg", "meminfo", "meminfo_numa", "pressure", "diskstats", "nvme",
    "netdev", "netclass", "netstat", "infiniband", "hwmon", "thermal_zone",
]  # fmt: skip

__all__ = ["BIN", "OUT", "ROOT", "free_port", "wait_port"]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    """A process's resident memory now (VmRSS), or at its peak so far (field="VmHWM")."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    return 0


def start_collector(db: str, extra: list[str] | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """A real collector on a free loopback port, listening when this returns. BENCH_COLLECTOR_WRAP, if
    set, prefixes its command (a profiler: "py-spy record -o prof.txt --format raw --")."""
    port = free_port()
    proc = subprocess.Popen(
        [
            *os.environ.get("BENCH_COLLECTOR_WRAP", "").split(),
            str(BIN / "ironsight-collector"),
            "--db",
            db,
            "--listen",
            f"127.0.0.1:{port}",
            "--insecure",
            *(extra or []),
        ],
        stderr=subprocess.DEVNULL,
    )
    wait_port(port, proc)
    return proc, port


def collector_metrics(port: int, max_of: tuple[str, ...] = ()) -> dict[str, float]:
    """A collector's /metrics: each series without labels by name, and for the names in max_of the
    largest value over their labelled series (e.g. the most lagging node)."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out: dict[str, float] = {}
    for line in body.splitlines():
        if line.startswith("#") or not line:
            continue
        name, _, value = line.rpartition(" ")
        key = name.split("{")[0]
        if key in max_of:
            out[key] = max(out.get(key, 0.0), float(value))
        elif "{" not in name:
            out[key] = float(value)
    return out


def add_tree_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tree",
        choices=["host", "big"],
        default="host",
        help="what to sample: this machine, or a generated tree of a 192-cpu node with 8 HCAs, "
        "16 NVMe drives and 20 hwmon chips (bench/bignode.py)",
    )


def tree_roots(args: argparse.Namespace, where: str) -> dict[str, Path]:
    """{"procfs": ..., "sysfs": ...} of a tree made under where for --tree big; {} for this machine."""
    if args.tree != "big":
        return {}
    from bignode import make_tree

    root = make_tree(Path(where) / "tree")
    return {"procfs": root / "proc", "sysfs": root / "sys"}


def path_flags(roots: dict[str, Path]) -> list[str]:
    """--path.* flags for those roots: ours and node_exporter's spell them alike."""
    return [f"--path.{name}={path}" for name, path in roots.items()]


def node_exporter_scrape(rounds: int, paths: list[str] | None = None) -> tuple[float, int, int]:
    """node_exporter with the collectors matching our samplers: CPU seconds per scrape, bytes, series."""
    if not Path(NODE_EXPORTER).exists():
        raise SystemExit("needs Debian's prometheus-node-exporter: apt-get install prometheus-node-exporter")
    port = free_port()
    flags = ["--collector.disable-defaults", *[f"--collector.{c}" for c in NODE_EXPORTER_COLLECTORS]]
    if paths:  # a tree's files, not this machine's netlink
        flags += [*paths, "--no-collector.netdev.netlink", "--no-collector.netclass.netlink"]
    ne = subprocess.Popen(
        [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{port}", *flags], stderr=subprocess.DEVNULL
    )
    try:
        wait_port(port)
        return scrape_cost(ne.pid, f"http://127.0.0.1:{port}/metrics", rounds)
    finally:
        ne.terminate()
        ne.wait()


def node_exporter_version() -> str:
    out = subprocess.run([NODE_EXPORTER, "--version"], capture_output=True, text=True)
    return (out.stderr or out.stdout).split("\n")[0]


def scrape_cost(pid: int, url: str, rounds: int) -> tuple[float, int, int]:
    """CPU seconds of the serving process per scrape, bytes and series of the last one."""
    urllib.request.urlopen(url).read()  # warm up
    before = cpu_seconds(pid)
    for _ in range(rounds):
        body = urllib.request.urlopen(url).read()
    cost = (cpu_seconds(pid) - before) / rounds
    series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
    return cost, len(body), series


def write_trace(path: Path, header: pb.TraceHeader, batches: Iterable[pb.Batch]) -> Path:
    """A simulated trace to a file."""
    with TraceWriter(path, header) as writer:
        for batch in batches:
            writer.write(batch)
    return path


def record(raw: bytes) -> bytes:
    """One message of a load file (fleet-ingest, receivers): its length, then it."""
    return len(raw).to_bytes(4, "little") + raw


def records(path: Path) -> list[bytes]:
    """The messages of a load file, in order."""
    data, at, out = path.read_bytes(), 0, []
    while at < len(data):
        n = int.from_bytes(data[at : at + 4], "little")
        out.append(data[at + 4 : at + 4 + n])
        at += 4 + n
    return out


def run_sender(
    script: str, target: str, load: Path, receiver_pid: int, extra: tuple[str, ...] = ()
) -> tuple[dict[str, Any], float]:
    """Runs script's sender in its own process against target (a .js script with node, a Python one with
    --send); its JSON result and the receiver's CPU seconds."""
    before = cpu_seconds(receiver_pid)
    command = ["node", script] if script.endswith(".js") else [sys.executable, script, "--send"]
    sent = subprocess.run(
        [*command, target, str(load), *extra],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    result: dict[str, Any] = json.loads(sent.stdout)
    return result, cpu_seconds(receiver_pid) - before
