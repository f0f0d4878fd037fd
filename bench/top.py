"""`ironsight top` on a 1,000-node fleet through a real collector, beside procps top on the same terminal."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from harness import BIN, cpu_seconds, start_collector

NAME = "top"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--top-nodes", type=int, default=1000, help="nodes of 8 GPUs and 16 cores")
    p.add_argument(
        "--top-seconds",
        type=int,
        default=60,
        help="seconds each view is watched",
    )


def _fleet(db: Path, nodes: int) -> int:
    """Ten minutes at 1 s ending now, in time order as agents deliver them (SQL: the simulator would
    take most of an hour for this fleet), with a finding open on every fiftieth node."""
    from ironsight.collector.database import connect
    from ironsight.collector.migrations import migrate

    seconds, gpus, cores = 600, 8, 16
    t0 = datetime.now(UTC).replace(tzinfo=None, microsecond=0) - timedelta(seconds=seconds)
    con = connect(db)
    migrate(con)
    grid = f"""SELECT s, n, TIMESTAMP '{t0}' + to_seconds(s) AS time, 'gpu-' || lpad(n::VARCHAR, 4, '0') AS node
               FROM range({seconds}) r(s), range({nodes}) m(n)"""
    con.execute(
        f"""INSERT INTO gpu_hot BY NAME SELECT time, node, g::VARCHAR AS device,
            CASE WHEN n % 50 = 7 THEN 20 + random() * 10 ELSE 90 + random() * 10 END AS util_gpu_percent,
            600 + random() * 50 AS power_watts, 700.0 AS power_limit_watts,
            (60::BIGINT << 30) AS memory_used_bytes, (80::BIGINT << 30) AS memory_total_bytes,
            60 + random() * 5 + (n % 50 = 3)::INT * 25 AS temperature_celsius, 87.0 AS temperature_slowdown_celsius,
            1.98e9 AS sm_clock_hertz, 1.98e9 AS sm_clock_max_hertz,
            CASE WHEN n % 50 = 3 THEN 96 ELSE 0 END AS clocks_event_reasons
        FROM ({grid}), range({gpus}) q(g) ORDER BY time, node, device"""
    )
    con.execute(
        f"""INSERT INTO cpu_hot BY NAME SELECT time, node, c::VARCHAR AS device, s * 0.5 AS user_seconds,
            0.0 AS nice_seconds, s * 0.05 AS system_seconds, s * 0.45 AS idle_seconds, 0.0 AS iowait_seconds,
            0.0 AS irq_seconds, 0.0 AS softirq_seconds, 0.0 AS steal_seconds
            FROM ({grid}), range({cores}) k(c) ORDER BY time, node, device"""
    )
    for table, cols in (
        ("memory", "(2048::BIGINT << 30) AS mem_total_bytes, (1500::BIGINT << 30) AS mem_available_bytes"),
        ("load", "8.0 + random() AS load1"),
        ("pressure", "s * 0.01 AS cpu_some_seconds, s * 0.02 AS io_some_seconds, 0.0 AS memory_some_seconds"),
    ):
        con.execute(
            f"INSERT INTO {table}_hot BY NAME SELECT time, node, '' AS device, {cols} FROM ({grid}) ORDER BY time"
        )
    con.execute(
        f"""INSERT INTO disk_hot BY NAME SELECT time, node, 'nvme0n1' AS device, (s * 3e8)::BIGINT AS read_bytes,
            (s * 1e6)::BIGINT AS written_bytes, s * 0.3 AS io_time_seconds FROM ({grid}) ORDER BY time"""
    )
    con.execute(
        f"""INSERT INTO nic_hot BY NAME SELECT time, node, 'eth0' AS device, (s * 5e7)::BIGINT AS rx_bytes,
            (s * 1e7)::BIGINT AS tx_bytes, 1 AS up, 3125000000 AS speed_bytes_per_second FROM ({grid}) ORDER BY time"""
    )
    con.execute(
        f"""INSERT INTO nodes BY NAME SELECT node, node AS hostname, 1.0 AS interval_s, TIMESTAMP '{t0}' AS first_seen,
                   now()::TIMESTAMP AS last_seen
            FROM (SELECT DISTINCT node FROM ({grid}))"""
    )
    con.execute(
        f"""INSERT INTO events (kind, severity, node, device, start_time, evidence, detected_at)
            SELECT 'thermal', 'critical', node, '0', TIMESTAMP '{t0}' + INTERVAL 5 MINUTE, '{{}}', now()::TIMESTAMP
            FROM (SELECT DISTINCT n, node FROM ({grid})) WHERE n % 50 = 3"""
    )
    con.execute("CHECKPOINT")
    rows = sum(con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in ("gpu", "cpu", "memory"))
    con.close()
    return int(rows)


def _watch(command: list[str], seconds: int, keys: list[str], pids: dict[str, int]) -> dict[str, float]:
    """Runs command in a 200x50 tmux window, sends keys once it shows, and returns each process's
    share of a core over `seconds` (the command's own pid under the name 'tui')."""
    sock = f"bench-{uuid.uuid4().hex[:8]}"
    tmux = ["tmux", "-L", sock]
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", "w", "-x", "200", "-y", "50", " ".join(command)], check=True
    )
    try:
        time.sleep(5)  # started, first screen drawn
        for k in keys:
            subprocess.run([*tmux, "send-keys", "-t", "w", k], check=True)
            time.sleep(0.3)
        time.sleep(2)
        pane = subprocess.run(
            [*tmux, "list-panes", "-t", "w", "-F", "#{pane_pid}"], capture_output=True, text=True
        )
        shell = int(pane.stdout.split()[0])
        child = subprocess.run(["pgrep", "-P", str(shell)], capture_output=True, text=True).stdout.split()
        watched = {"tui": int(child[0]) if child else shell, **pids}
        before = {k: cpu_seconds(p) for k, p in watched.items()}
        time.sleep(seconds)
        return {k: (cpu_seconds(p) - before[k]) / seconds for k, p in watched.items()}
    finally:
        subprocess.run([*tmux, "kill-server"], check=False)


def _settle(pid: int, timeout: float = 600.0) -> float:
    """Waits until the collector has been idle for 30 s (under 5 % of a core in each 5 s) after its
    first rollups of the loaded fleet (they start a minute after it does and come in several
    passes), so what is measured after is what top costs it; returns the seconds waited."""
    started, quiet = time.monotonic(), 0
    time.sleep(75)
    while time.monotonic() - started < timeout and quiet < 6:
        before = cpu_seconds(pid)
        time.sleep(5)
        quiet = quiet + 1 if cpu_seconds(pid) - before < 0.25 else 0
    return time.monotonic() - started


def _query_cpu(db: Path, repeats: int = 20) -> dict[str, float]:
    """The CPU one refresh's query takes in DuckDB, in this process on the same file: what the
    collector spends per refresh (its share above also holds its retention pass, once a minute)."""
    from ironsight.cli.backend import LocalBackend
    from ironsight.cli.top.session import Session

    session = Session(LocalBackend(db))
    out = {}
    try:
        for name, node in (("fleet", None), ("node", "gpu-0003")):
            session.snapshot(node)  # the first refresh reads further back
            before = time.process_time()
            for _ in range(repeats):
                session.snapshot(node)
            out[name] = (time.process_time() - before) / repeats
    finally:
        session.close()
    return out


def run(args: argparse.Namespace) -> dict[str, object]:
    """`ironsight top` watching a 1,000-node fleet (8 GPUs, 16 cores each, ten minutes at 1 s in a
    real collector's store) at a 1 s refresh in a 200x50 terminal, fleet view then node view: the
    CLI's and the collector's share of a core, beside procps `top -d 1` (the tool people keep open
    on one host) in the same terminal; then the CPU of one refresh's query in DuckDB on that file
    (what the collector spends per refresh: its own share while watched also holds its retention
    pass, which rolls up the loaded fleet). Target: the CLI a few percent of a core."""
    if shutil.which("tmux") is None:
        raise SystemExit("top: needs tmux (apt-get install tmux)")
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "fleet.duckdb"
        started = time.perf_counter()
        rows = _fleet(db, args.top_nodes)
        load_s = time.perf_counter() - started
        proc, port = start_collector(str(db), ["--no-detect"])
        try:
            settled = _settle(proc.pid)
            cli = [str(BIN / "ironsight"), "--collector", f"127.0.0.1:{port}", "top"]
            fleet = _watch(cli, args.top_seconds, [], {"collector": proc.pid})
            node = _watch(cli, args.top_seconds, ["Enter"], {"collector": proc.pid})
        finally:
            proc.terminate()
            proc.wait(timeout=300)  # its rollups of the fleet loaded above may still be running
        query = _query_cpu(db)
        peer = _watch(["top", "-d", "1"], args.top_seconds, [], {})
    return {
        "nodes": args.top_nodes,
        "stored_rows": rows,
        "load_seconds": round(load_s, 1),
        "collector_settle_seconds": round(settled, 1),
        "fleet_view_cli_core_share": round(fleet["tui"], 4),
        "fleet_view_collector_core_share": round(fleet["collector"], 4),
        "fleet_query_cpu_seconds": round(query["fleet"], 4),
        "node_view_cli_core_share": round(node["tui"], 4),
        "node_view_collector_core_share": round(node["collector"], 4),
        "node_query_cpu_seconds": round(query["node"], 4),
        "procps_top_core_share": round(peer["tui"], 4),
        "cli_vs_procps_top": round(fleet["tui"] / max(peer["tui"], 1e-6), 2),
    }
