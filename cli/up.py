"""Running here: `up` (a collector and an agent on this machine) and `record` (sample to a trace file)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from ironsight.cli.common import Ctx
from ironsight.cli.top import run_top


@click.command()
@click.option(
    "--db",
    "db_path",
    type=click.Path(path_type=Path),
    default=Path("data/ironsight.duckdb"),
    show_default=True,
)
@click.option("--listen", default="127.0.0.1:7070", show_default=True, help="collector gRPC address")
@click.option("--interval", default=1.0, show_default=True, help="agent sampling interval, seconds")
@click.option("--duration", default=0.0, help="stop after this many seconds (0: until Ctrl-C)")
@click.option("--http-listen", metavar="HOST:PORT", help="also serve /metrics and the Prometheus API there "
              "(e.g. 127.0.0.1:9470, for Grafana; docs/promql.md)")  # fmt: skip
@click.pass_obj
def up(c: Ctx, db_path: Path, listen: str, interval: float, duration: float, http_listen: str | None) -> None:
    """Run a collector and an agent on this machine and show live telemetry until Ctrl-C.

    \b
    Example:
      ironsight up --db ./data/ironsight.duckdb
      ironsight up --http-listen 127.0.0.1:9470    # and point Grafana at http://127.0.0.1:9470
    """
    bindir = Path(sys.executable).parent
    log_dir = db_path.parent
    log_dir.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen[bytes]] = []

    def spawn(name: str, args: list[str]) -> subprocess.Popen[bytes]:
        exe = bindir / name
        cmd = (
            [str(exe)]
            if exe.exists()
            else [sys.executable, "-m", "ironsight." + name.replace("ironsight-", "") + ".main"]
        )
        log = open(log_dir / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the child
        p = subprocess.Popen(cmd + args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(p)
        return p

    http = ["--http-listen", http_listen] if http_listen else []
    collector = spawn("ironsight-collector", ["--db", str(db_path), "--listen", listen, "--insecure", *http])
    deadline = time.monotonic() + 15
    while not _port_open(listen):
        if collector.poll() is not None or time.monotonic() > deadline:
            _stop_all(procs)
            tail = (log_dir / "ironsight-collector.log").read_text(errors="replace").strip().splitlines()[-1:]
            raise click.ClickException(f"collector did not start: {tail[0] if tail else 'no output'}")
        time.sleep(0.1)
    # The spool beside the database: `up` is the one-machine demo, everything under its data folder.
    spawn(
        "ironsight-agent",
        ["--collector", listen, "--interval", str(interval), "--state-dir", str(db_path.parent / "agent")],
    )
    api = f"; Prometheus API on http://{http_listen}" if http_listen else ""
    click.echo(
        f"collector on {listen} storing in {db_path}{api}; agent every {interval:g}s; logs in {log_dir}/. "
        "Ctrl-C stops."
    )
    end = time.monotonic() + duration if duration else None
    try:
        run_top(Ctx(None, listen, c.fmt), 1.0, 0, alive=lambda: end is None or time.monotonic() < end)
    finally:
        _stop_all(procs)
    click.echo("stopped collector and agent")


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("agent_args", nargs=-1, type=click.UNPROCESSED)
def record(agent_args: tuple[str, ...]) -> None:
    """Sample this node like the agent and write a trace file (takes the agent's flags).

    \b
    Examples:
      ironsight record --out idle.trace --duration 60s
      ironsight record --out burn.trace --interval 0.1 --duration 5m --tee-collector 127.0.0.1:7070
      ironsight record --help
    """
    from ironsight.agent.record import main as record_main

    raise SystemExit(record_main(list(agent_args)))


def _port_open(target: str) -> bool:
    import socket

    host, _, port = target.rpartition(":")
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, int(port))) == 0


def _stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    # The agent first, so its last batch reaches the collector before it drains.
    for p in reversed(procs):
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


COMMANDS = (up, record)
