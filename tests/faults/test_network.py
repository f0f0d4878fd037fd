"""Network trouble between an agent and its collector, each in its own network namespace.

10 % loss each way, then 200 ms of delay with 100 ms of jitter, then a 30 s
partition, then a healthy link: every tick the agent took arrives exactly once.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from ironsight.agent.spool import Spool

from support.netns import Link
from support.paths import SUPPORT
from support.processes import BIN, free_port

pytestmark = pytest.mark.slow


def test_loss_delay_and_partition_lose_nothing(tmp_path: Path, agent_state: Path) -> None:
    link = Link()
    procs: list[subprocess.Popen[bytes]] = []
    log = open(tmp_path / "processes.log", "ab")  # noqa: SIM115

    def start(ns: str, argv: list[str]) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(link.exec(ns, argv), stdout=log, stderr=subprocess.STDOUT)
        procs.append(p)
        return p

    db = tmp_path / "n.duckdb"
    try:
        collector = start(link.collector_ns, [str(BIN / "ironsight-collector"), "--db", str(db), "--no-detect",
                                              "--listen", f"{link.collector_ip}:7070", "--insecure",
                                              "--allow-remote-insecure"])  # fmt: skip
        control = tmp_path / "delay"
        control.write_text("0 0")
        proxy_port = free_port()
        start(link.agent_ns, [sys.executable, str(SUPPORT / "delay_proxy.py"), str(proxy_port),
                              f"{link.collector_ip}:7070", str(control)])  # fmt: skip
        time.sleep(2)  # the collector opens its file, the proxy its port
        agent = start(link.agent_ns, [str(BIN / "ironsight-agent"), "--collector", f"127.0.0.1:{proxy_port}",
                                      "--node-id", "net-node", "--interval", "0.1", "--no-collector.nic",
                                      "--no-collector.hwmon", "--no-collector.gpu"])  # fmt: skip
        time.sleep(5)
        link.loss(10)
        time.sleep(10)
        link.heal()
        control.write_text("200 100")
        time.sleep(10)
        control.write_text("0 0")
        link.partition()
        time.sleep(30)
        link.heal()
        # Keepalive notices the dead stream within ~15 s; reconnect backoff is at most 10 s.
        time.sleep(35)
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=30) == 0
        collector.send_signal(signal.SIGTERM)
        assert collector.wait(timeout=30) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        link.close()
        log.close()
    left = Spool(agent_state / "spool" / "net-node", max_bytes=1 << 30)
    assert len(left) == 0, f"{len(left)} batches still spooled after the link healed"
    left.close()
    con = duckdb.connect(str(db), read_only=True)
    ticks, span, rows = con.execute(
        "SELECT count(DISTINCT time), CAST(round(epoch(max(time) - min(time)) * 10) AS BIGINT) + 1, count(*) "
        "FROM load WHERE node = 'net-node'"
    ).fetchall()[0]
    con.close()
    assert rows == ticks, "a tick stored twice"
    assert ticks == span, f"{span - ticks} ticks missing"
    assert ticks > 800  # ~90 s at 0.1 s
    text = (tmp_path / "processes.log").read_text()
    assert "Traceback" not in text
    assert "unreachable" in text and "reachable again" in text  # the partition was noticed, and its end
