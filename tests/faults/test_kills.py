"""SIGKILL faults: a collector killed again and again under heavy ingest, an agent killed with a spool.

Nothing the collector acknowledged goes missing, nothing is stored twice, the
database opens cleanly after every kill, and a killed agent's spool is sent
when it comes back. Each test bounds its own time and kills what it started.
"""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ironsight.agent.spool import Spool
from ironsight.agent.stream import Sender
from ironsight.v1 import telemetry_pb2 as pb

from support.batches import GPUS, TICKS, RecordingSpool, check_store, gpu_batch
from support.processes import BIN, CollectorProcess

pytestmark = pytest.mark.slow


def test_collector_killed_20_times_under_heavy_ingest(tmp_path: Path) -> None:
    db = tmp_path / "k.duckdb"
    c = CollectorProcess(db, tmp_path / "collector.log", ["--no-detect"])
    spool = RecordingSpool(tmp_path / "spool")
    sender = Sender(c.target, spool, backoff_initial_s=0.05, backoff_max_s=0.5)
    sender.start()
    submitted: list[int] = []
    stop = threading.Event()

    def produce() -> None:
        seq = 1
        while not stop.is_set():
            sender.submit(gpu_batch(seq, time.time_ns() // 1_000_000 * 1_000_000))
            submitted.append(seq)
            seq += 1
            time.sleep(0.02)  # 50 batches (16,000 values) a second

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    rng = random.Random(20)
    try:
        for _ in range(20):
            c.start()
            time.sleep(rng.uniform(0.8, 2.0))
            assert c.proc is not None
            c.proc.kill()
            c.proc.wait(timeout=10)
            time.sleep(0.1)  # acks already in flight are for committed batches: let them land
            with sender.cond:
                acked = set(spool.acked)
            check_store(db, acked)
        stop.set()
        producer.join()
        c.start()
        deadline = time.monotonic() + 60
        while sender.pending() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert sender.pending() == 0, f"{sender.pending()} batches never acknowledged"
        assert c.stop() == 0
        stored = check_store(db, set(submitted))
        assert stored == set(submitted) and len(submitted) > 1000
        # docs/reliability.md's table (pytest -s shows it).
        print(
            f"\n20 SIGKILLs: {len(submitted)} batches, {len(submitted) * TICKS * GPUS * 4} values, 0 lost, 0 twice"
        )
    finally:
        stop.set()
        sender.stop(0)
        if c.proc is not None and c.proc.poll() is None:
            c.proc.kill()
    log = (tmp_path / "collector.log").read_text()
    assert "Traceback" not in log


def test_a_killed_agent_resends_its_spool(tmp_path: Path, agent_state: Path) -> None:
    c = CollectorProcess(tmp_path / "a.duckdb", tmp_path / "collector.log", ["--no-detect"]).start()
    flags = ["--collector", c.target, "--node-id", "kill-node", "--interval", "0.1", "--no-collector.nic",
             "--no-collector.hwmon", "--no-collector.gpu"]  # fmt: skip
    log = open(tmp_path / "agent.log", "ab")  # noqa: SIM115
    agent = subprocess.Popen([str(BIN / "ironsight-agent"), *flags], stdout=log, stderr=subprocess.STDOUT)
    try:
        time.sleep(3)
        assert c.stop() == 0  # the collector goes away: the agent spools
        time.sleep(3)
        agent.send_signal(signal.SIGKILL)
        agent.wait(timeout=10)
        # What the killed agent left on disk (its lock died with it).
        spooled = Spool(agent_state / "spool" / "kill-node", max_bytes=1 << 30)
        seqs, seq = [], -1
        while (nxt := spooled.next_after(seq)) is not None:
            seqs.append(nxt)
            seq = nxt
        last_tick = max(
            max(t.time_ns) for s in seqs for t in pb.Batch.FromString(spooled.read(s) or b"").tables
        )
        spooled.close()
        assert len(seqs) >= 2  # about 3 s of 1-second batches
        c.start()
        agent = subprocess.Popen([str(BIN / "ironsight-agent"), *flags], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        stored: set[int] = set()
        while time.monotonic() < deadline:
            rows = c_query(c, "SELECT seq FROM batches WHERE node = 'kill-node'")
            stored = {int(r) for r in rows}
            if set(seqs) <= stored:
                break
            time.sleep(0.5)
        assert set(seqs) <= stored, f"{len(set(seqs) - stored)} spooled batches never arrived"
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=30) == 0
        dups = c_query(c, "SELECT count(*) - count(DISTINCT time) FROM load WHERE node = 'kill-node'")
        assert dups == ["0"]
        # The first run's ticks, up to the last one it spooled, all arrived: no hole.
        first = c_query(
            c,
            "SELECT count(DISTINCT time), CAST(round(epoch(max(time) - min(time)) * 10) AS BIGINT) + 1 "
            f"FROM load WHERE node = 'kill-node' AND time <= make_timestamp({last_tick // 1000})",
        )
        assert first[0] == first[1], first
    finally:
        if agent.poll() is None:
            agent.kill()
        c.stop()
        log.close()


def c_query(c: CollectorProcess, sql: str) -> list[str]:
    import json

    from support.processes import run_cli

    out = json.loads(run_cli("--collector", c.target, "--format", "json", "query", sql).stdout)
    return [str(v) for row in out for v in row.values()]


def test_a_frozen_collector_is_noticed_by_keepalive(tmp_path: Path) -> None:
    """SIGSTOP: the kernel still answers TCP, only HTTP/2 pings go unanswered."""
    c = CollectorProcess(tmp_path / "f.duckdb", tmp_path / "collector.log", ["--no-detect"]).start()
    log_path = tmp_path / "agent.log"
    log = open(log_path, "ab")  # noqa: SIM115
    agent = subprocess.Popen(
        [str(BIN / "ironsight-agent"), "--collector", c.target, "--node-id", "frozen", "--interval", "0.5",
         "--no-collector.nic", "--no-collector.hwmon", "--no-collector.gpu"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert c.proc is not None
    try:
        time.sleep(3)
        c.proc.send_signal(signal.SIGSTOP)
        frozen_at = time.monotonic()
        while "unreachable" not in log_path.read_text() and time.monotonic() - frozen_at < 40:
            time.sleep(0.2)
        noticed = time.monotonic() - frozen_at
        c.proc.send_signal(signal.SIGCONT)
        assert "unreachable" in log_path.read_text(), "a frozen collector went unnoticed for 40 s"
        assert noticed < 25  # keepalive: a ping every 10 s, 5 s to answer
        deadline = time.monotonic() + 30
        while "reachable again" not in log_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "reachable again" in log_path.read_text()
    finally:
        if c.proc.poll() is None:
            c.proc.send_signal(signal.SIGCONT)
        agent.terminate()
        agent.wait(timeout=30)
        log.close()
        c.stop()
