"""Hosts that are legal but unusual lose nothing: UTF-8 device names end to end, refused batches kept.

Real processes: an agent and a collector inside a network namespace whose
veth pair has non-ASCII names, and a real collector refusing batches that an
in-process sender spooled.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ironsight.agent.quarantine import Quarantine, held
from ironsight.agent.spool import Spool
from ironsight.agent.stream import Sender
from ironsight.core.columnar import TableBuilder
from ironsight.v1 import telemetry_pb2 as pb

from support.processes import BIN, CollectorProcess, run_cli, wait_for

pytestmark = pytest.mark.slow

NAMES = ("ñic0", "網卡1")  # a veth pair: both ends in the namespace


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def namespace() -> Iterator[str]:
    if shutil.which("ip") is None or os.geteuid() != 0:
        pytest.fail("network namespaces need root and iproute2 (.ci/run installs it; CI runs as root)")
    ns = f"isn{os.getpid() % 10000}"
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    _ip("netns", "add", ns)
    try:
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", ns, "link", "add", NAMES[0], "type", "veth", "peer", "name", NAMES[1])
        for name in NAMES:
            _ip("-n", ns, "link", "set", name, "up")
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_utf8_interface_names_are_stored_queried_and_exposed(namespace: str, tmp_path: Path) -> None:
    port, metrics = 17070 + os.getpid() % 1000, 19470 + os.getpid() % 1000  # the namespace's own loopback
    run = ["ip", "netns", "exec", namespace]
    db = tmp_path / "n.duckdb"
    collector = subprocess.Popen(
        [*run, str(BIN / "ironsight-collector"), "--db", str(db), "--listen", f"127.0.0.1:{port}", "--insecure"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    agent_log = tmp_path / "agent.log"
    with open(agent_log, "wb") as log:
        agent = subprocess.Popen(
            [*run, str(BIN / "ironsight-agent"), "--collector", f"127.0.0.1:{port}", "--interval", "0.5",
             "--metrics-listen", f"127.0.0.1:{metrics}", "--state-dir", str(tmp_path / "state"),
             "--no-collector.gpu"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def scrape_agent() -> str:
        return subprocess.run(
            [*run, sys.executable, "-c",
             f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{metrics}/metrics').read().decode())"],
            capture_output=True, text=True, timeout=30,
        ).stdout  # fmt: skip

    def acknowledged() -> int:
        found = re.search(r"^ironsight_agent_batches_sent_total (\S+)", scrape_agent(), re.M)
        return int(float(found.group(1))) if found else 0

    try:
        # Until the collector has acknowledged 5 batches (10 ticks), however slowly this machine starts them.
        wait_for(lambda: acknowledged() >= 5, timeout=90)
        scrape = scrape_agent()
    finally:
        agent.terminate()
        assert agent.wait(30) == 0
        collector.terminate()
        collector.wait(30)
    text = agent_log.read_text()
    assert "collector refused a batch" not in text and "left out of the batch" not in text, text
    stopped = next(line for line in text.splitlines() if "stopped:" in line)
    assert ", 0 unsent, 0 dropped" in stopped and " 0 batches acknowledged" not in stopped, stopped
    for name in NAMES:
        assert f'node_network_receive_bytes_total{{device="{name}"' in scrape
    rows = json.loads(
        run_cli("--db", str(db), "--format", "json", "query",
                "SELECT device, count(*) AS n FROM nic GROUP BY device ORDER BY device").stdout
    )  # fmt: skip
    counted = {r["device"]: r["n"] for r in rows}
    ticks = json.loads(
        run_cli("--db", str(db), "--format", "json", "query", "SELECT count(*) AS n FROM load").stdout
    )
    assert set(NAMES) <= set(counted)
    # Every tick stored, each with every interface: the names cost nothing.
    assert ticks[0]["n"] >= 8 and all(counted[name] == ticks[0]["n"] for name in NAMES)
    inventory = json.loads(
        run_cli(
            "--db", str(db), "--format", "json", "query", "SELECT device FROM devices WHERE kind = 'nic'"
        ).stdout
    )
    assert set(NAMES) <= {r["device"] for r in inventory}


def _batch(seq: int, time_ns: int) -> pb.Batch:
    builder = TableBuilder("load")
    builder.add(time_ns, "", {"load1": 1.0, "load5": 1.0, "load15": 1.0})
    batch = pb.Batch(node_id="odd", boot_id="b", seq=seq, interval_s=1.0)
    batch.tables.append(builder.to_proto())
    return batch


def test_a_batch_the_collector_refuses_is_quarantined_not_lost(tmp_path: Path) -> None:
    """Refused after spooling (here: stamped 2 h ahead): out of the spool into the quarantine, the rest goes on."""
    quarantine = Quarantine(tmp_path / "quarantine")
    spool = Spool(tmp_path / "spool", 2**26)
    collector = CollectorProcess(tmp_path / "q.duckdb", tmp_path / "c.log", http=True).start()
    sender = Sender(collector.target, spool, quarantine=quarantine)
    now = time.time_ns()
    ahead = _batch(2, now + 2 * 3600 * 10**9)
    try:
        sender.start()
        sender.submit(_batch(1, now))
        sender.submit(ahead)
        sender.submit(_batch(3, now + 10**9))
        wait_for(lambda: sender.acked == 2 and sender.rejected == 1)
        body = collector.metrics('reason="time"')
    finally:
        sender.stop(5)
        collector.stop()
    assert sender.pending() == 0  # nothing left to resend forever
    assert quarantine.rejected == {"time": 1}
    kept = tmp_path / "quarantine" / "2.batch"
    assert pb.Batch.FromString(kept.read_bytes()) == ahead  # the very bytes, to look at or replay later
    assert "seq=2 reason=time" in (tmp_path / "quarantine" / "refused.log").read_text()
    assert held(tmp_path / "quarantine") == (1, kept.stat().st_size)
    assert 'ironsight_collector_batches_total{outcome="rejected",reason="time"} 1.0' in body
    stored = json.loads(run_cli("--db", str(tmp_path / "q.duckdb"), "--format", "json", "query",
                                "SELECT seq FROM batches ORDER BY seq").stdout)  # fmt: skip
    assert [r["seq"] for r in stored] == [1, 3]


def test_the_quarantine_is_bounded_and_says_what_it_removed(tmp_path: Path) -> None:
    q = Quarantine(tmp_path, max_bytes=250)
    for seq in range(1, 6):
        q.keep(seq, b"x" * 100, "time", "time_ns outside the window")
    assert sorted(p.name for p in tmp_path.glob("*.batch")) == ["4.batch", "5.batch"]
    assert q.evicted == 3 and q.rejected == {"time": 5}
