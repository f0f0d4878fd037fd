"""SIGHUP: the agent changes its samplers and interval in place, the collector its thresholds; what needs a
restart is said so; a broken file is refused and the running configuration kept."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from support.processes import BIN, CollectorProcess, free_port, scrape_metrics

pytestmark = pytest.mark.slow


def wait_log(path: Path, text: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        body = path.read_text()
        if text in body or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def ticks(port: int) -> float:
    line = next(x for x in scrape_metrics(port).splitlines() if x.startswith("ironsight_agent_ticks_total"))
    return float(line.split()[-1])


def test_agent_reloads_samplers_and_interval(tmp_path: Path) -> None:
    port = free_port()
    conf = tmp_path / "agent.toml"
    conf.write_text(
        f'metrics_listen = "127.0.0.1:{port}"\ninterval = 1\nnode_id = "a"\n[samplers]\ngpu = false\n'
    )
    log = tmp_path / "agent.log"
    with open(log, "wb") as out:
        agent = subprocess.Popen(
            [str(BIN / "ironsight-agent"), "--config", str(conf)], stdout=out, stderr=out
        )
    try:
        wait_log(log, "serving /metrics")
        time.sleep(2.5)
        before = ticks(port)
        conf.write_text(f'metrics_listen = "127.0.0.1:{port}"\ninterval = 0.2\nnode_id = "b"\n'
                        "[samplers]\ngpu = false\nrdma = false\n")  # fmt: skip
        agent.send_signal(signal.SIGHUP)
        body = wait_log(log, "next restart")
        assert "reload: interval 1.0 -> 0.2" in body and "reload: rdma sampler True -> False" in body
        assert "reload: node_id changed; it takes effect at the next restart" in body
        start = ticks(port)
        time.sleep(2)
        assert ticks(port) - start >= 7  # now about 5 a second, before 1
        assert start >= before
        conf.write_text("interval = \n")
        agent.send_signal(signal.SIGHUP)
        body = wait_log(log, "keeping the running one")
        assert "not valid TOML" in body and agent.poll() is None
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=30) == 0
    finally:
        if agent.poll() is None:
            agent.kill()


def test_collector_reloads_thresholds(tmp_path: Path) -> None:
    conf = tmp_path / "collector.toml"
    conf.write_text("[threshold]\nclose_after_s = 30\n")
    c = CollectorProcess(tmp_path / "r.duckdb", tmp_path / "collector.log", ["--config", str(conf)]).start()
    try:
        conf.write_text('log_format = "json"\n[threshold]\nclose_after_s = 60\n')
        assert c.proc is not None
        time.sleep(0.5)
        c.proc.send_signal(signal.SIGHUP)
        body = wait_log(tmp_path / "collector.log", "next restart")
        assert "reload: thresholds close_after_s 30.0 -> 60.0" in body or "close_after_s 30 -> 60" in body, (
            body
        )
        assert "reload: log_format changed; it takes effect at the next restart" in body
    finally:
        assert c.stop() == 0
