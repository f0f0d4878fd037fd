"""A real collector on a free loopback port, real agents, real gRPC, a real DuckDB file, the real CLI."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import duckdb
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ironsight.v1 import telemetry_pb2 as pb
from ironsight.v1 import telemetry_pb2_grpc as pb_grpc

from support.batches import one_batch
from support.processes import BIN, CollectorProcess, run_cli, wait_for

pytestmark = pytest.mark.slow


def start_agent(target: str, tmp: Path, *flags: str) -> subprocess.Popen[bytes]:
    log = open(tmp / "agent.log", "ab")  # noqa: SIM115
    return subprocess.Popen(
        [str(BIN / "ironsight-agent"), "--collector", target, "--node-id", "it-node", *flags],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def stop(proc: subprocess.Popen[bytes], log: Path | None = None) -> int:
    """SIGTERM, and its exit status; one that does not end within 30 s fails with where its threads
    wait (SIGUSR1 makes a service write them to its log) and the log's end."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)
        time.sleep(2)
        proc.kill()
        tail = log.read_text(errors="replace")[-12_000:] if log is not None else ""
        pytest.fail(f"pid {proc.pid} did not stop within 30 s of SIGTERM; its log ends:\n{tail}")


def count(collector: CollectorProcess, sql: str) -> int:
    out = run_cli("--collector", collector.target, "--format", "json", "query", sql)
    return int(next(iter(json.loads(out.stdout)[0].values())))


@pytest.fixture
def agent_run(collector: CollectorProcess, tmp_path: Path) -> Iterator[CollectorProcess]:
    agent = start_agent(collector.target, tmp_path, "--interval", "0.2")
    wait_for(lambda: count(collector, "SELECT count(DISTINCT time) FROM cpu") >= 10)
    assert stop(agent) == 0
    yield collector


def test_agent_rows_are_stored_on_the_tick_grid(agent_run: CollectorProcess, tmp_path: Path) -> None:
    c = agent_run
    assert c.stop() == 0
    con = duckdb.connect(str(c.db), read_only=True)
    try:
        cpus = con.execute("SELECT count(DISTINCT device) FROM cpu").fetchone()[0]
        import os

        assert cpus == os.cpu_count()
        ticks = con.execute("SELECT DISTINCT time FROM cpu ORDER BY time").fetchall()
        assert len(ticks) >= 10
        # Every timestamp sits on the 0.2 s grid, and consecutive ticks are 0.2 s apart.
        micros = [int(t[0].timestamp() * 1e6) for t in ticks]
        assert all(m % 200_000 == 0 for m in micros)
        assert {b - a for a, b in itertools.pairwise(micros)} == {200_000}
        # Each sampler reported itself every tick; all succeeded.
        status = dict(con.execute("SELECT device, min(success) FROM sampler GROUP BY device").fetchall())
        assert status["cpu"] == 1 and status["memory"] == 1 and status["disk"] == 1 and status["gpu"] == 1
        mem = con.execute("SELECT min(mem_total_bytes), min(mem_available_bytes) FROM memory").fetchone()
        assert mem[0] > 0 and 0 < mem[1] <= mem[0]
        node = con.execute("SELECT node, interval_s FROM nodes").fetchall()
        assert node == [("it-node", 0.2)]
        # Exactly one row per (device, time): nothing was stored twice.
        dup = con.execute(
            "SELECT count(*) FROM (SELECT device, time FROM cpu GROUP BY ALL HAVING count(*) > 1)"
        )
        assert dup.fetchone()[0] == 0
    finally:
        con.close()


def test_cli_reads_through_the_collector_and_from_the_file(agent_run: CollectorProcess) -> None:
    c = agent_run
    nodes = json.loads(run_cli("--collector", c.target, "--format", "json", "nodes").stdout)
    assert [n["node"] for n in nodes] == ["it-node"]
    out = run_cli(
        "--collector",
        c.target,
        "--format",
        "csv",
        "series",
        "--node",
        "it-node",
        "--metric",
        "memory.mem_total_bytes",
        "--since",
        "5m",
    )
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "time,node,device,value,source" and len(lines) >= 11
    assert all(line.endswith(",raw") for line in lines[1:])  # nothing pruned yet: no rollups
    rate = json.loads(
        run_cli(
            "--collector",
            c.target,
            "--format",
            "json",
            "series",
            "--metric",
            "cpu.idle_seconds",
            "--rate",
            "--device",
            "0",
        ).stdout
    )
    # Idle time of one core grows at 0 to 1 seconds per second (with a little tick jitter).
    assert rate and all(-0.01 <= r["value"] <= 1.6 for r in rate)
    # While the collector holds the file, --db says to use --collector.
    held = run_cli("--db", str(c.db), "nodes", check=False)
    assert held.returncode == 1 and "--collector" in held.stderr and "Traceback" not in held.stderr
    top = run_cli("--collector", c.target, "top", "--count", "1")
    row = next(line.split() for line in top.stdout.splitlines() if line.startswith("it-node"))
    assert row[1] == "-" and row[2] == "-"  # no GPUs on this machine: no count, no utilization
    assert c.stop() == 0
    nodes = json.loads(run_cli("--db", str(c.db), "--format", "json", "nodes").stdout)
    assert nodes[0]["node"] == "it-node" and nodes[0]["nics"] >= 1


def test_cli_user_errors_are_one_line(collector: CollectorProcess) -> None:
    bad = run_cli("--collector", collector.target, "query", "DELETE FROM cpu", check=False)
    assert (
        bad.returncode == 1
        and bad.stderr.strip() == "Error: only SELECT queries are allowed here, not DELETE"
    )
    typo = run_cli("--collector", collector.target, "series", "--metric", "gpu.temp", check=False)
    assert typo.returncode == 1 and "did you mean gpu.temperature_celsius" in typo.stderr
    when = run_cli(
        "--collector",
        collector.target,
        "series",
        "--metric",
        "cpu.user_seconds",
        "--since",
        "yesterday",
        check=False,
    )
    assert when.returncode == 1 and "is not a time" in when.stderr
    gone = run_cli("--collector", "127.0.0.1:1", "nodes", check=False)
    assert gone.returncode == 1 and "unreachable" in gone.stderr


def test_duplicates_are_acknowledged_and_stored_once(collector: CollectorProcess) -> None:
    with collector.channel() as ch:
        stub = pb_grpc.IngestStub(ch)
        acks = list(stub.Stream(iter([one_batch(1), one_batch(2), one_batch(1)]), timeout=20))
        acks += list(stub.Stream(iter([one_batch(2)]), timeout=20))
    assert [(a.seq, a.status) for a in acks] == [
        (1, pb.Ack.STORED),
        (2, pb.Ack.STORED),
        (1, pb.Ack.DUPLICATE),
        (2, pb.Ack.DUPLICATE),
    ]
    assert count(collector, "SELECT count(*) FROM load WHERE node = 'dup-node'") == 2


def test_a_malformed_batch_is_refused_and_nothing_of_it_stored(collector: CollectorProcess) -> None:
    bad = one_batch(9, node="bad-node", packed=False)
    bad.tables[0].columns[0].f64.append(2.0)  # two values for one row
    with collector.channel() as ch:
        stub = pb_grpc.IngestStub(ch)
        call = stub.Stream(iter([one_batch(8, node="bad-node"), bad]), timeout=20)
        with pytest.raises(grpc.RpcError) as err:
            list(call)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "batch seq 9 table 'load' column 'load1': has 2 values for 1 rows" in err.value.details()
    assert dict(cast(Any, err.value.trailing_metadata()))["ironsight-rejected-seq"] == "9"
    assert count(collector, "SELECT count(*) FROM batches WHERE node = 'bad-node' AND seq = 9") == 0
    # The collector is still serving.
    with collector.channel() as ch:
        health = health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service="ironsight.v1.Ingest"), timeout=5
        )
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_a_nan_found_in_the_commit_group_refuses_only_that_batch(collector: CollectorProcess) -> None:
    bad = one_batch(21, node="nan-node", packed=False)
    bad.tables[0].columns[0].f64[0] = float("inf")
    with collector.channel() as ch:
        stub = pb_grpc.IngestStub(ch)
        with pytest.raises(grpc.RpcError) as err:
            list(stub.Stream(iter([one_batch(20, node="nan-node"), bad]), timeout=20))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        err.value.details()
        == "batch seq 21 table 'load' column 'load1': NaN or infinity (send NULL for a missing value)"
    )
    assert dict(cast(Any, err.value.trailing_metadata()))["ironsight-rejected-seq"] == "21"
    assert count(collector, "SELECT count(*) FROM batches WHERE node = 'nan-node' AND seq = 21") == 0


def test_agent_holds_its_backlog_through_a_collector_outage(tmp_path: Path) -> None:
    c = CollectorProcess(tmp_path / "o.duckdb", tmp_path / "collector.log").start()
    agent = start_agent(c.target, tmp_path, "--interval", "0.1", "--no-collector.nic", "--no-collector.hwmon")
    try:
        wait_for(lambda: count(c, "SELECT count(*) FROM batches") >= 2)
        assert c.stop() == 0
        time.sleep(3)  # the agent keeps sampling into its backlog
        c.start()
        # What was stored before the outage (a drain may have stored more than two) is not the backlog:
        # wait for the backlog itself (3 s of batches) and what follows it.
        stored = count(c, "SELECT count(*) FROM batches")
        wait_for(lambda: count(c, "SELECT count(*) FROM batches") >= stored + 4, timeout=30)
        assert stop(agent, tmp_path / "agent.log") == 0
        ticks = count(c, "SELECT count(DISTINCT time) FROM load")
        span = count(c, "SELECT CAST(round(epoch(max(time) - min(time)) * 10) AS BIGINT) + 1 FROM load")
        # Every tick from first to last arrived once: no hole where the collector was down.
        assert ticks == span
        assert count(c, "SELECT count(*) FROM (SELECT time FROM load GROUP BY time HAVING count(*) > 1)") == 0
    finally:
        if agent.poll() is None:
            agent.kill()
        c.stop()
    log = (tmp_path / "agent.log").read_text()
    assert log.count("unreachable") == 1, log
    assert "reachable again" in log


def test_sigterm_drains_and_leaves_a_clean_file(collector: CollectorProcess) -> None:
    with collector.channel() as ch:
        stub = pb_grpc.IngestStub(ch)
        acks = list(stub.Stream(iter([one_batch(s, node="term") for s in range(1, 51)]), timeout=20))
    assert len(acks) == 50
    assert collector.stop() == 0
    log = collector.log.read_text()
    assert "stopping: draining in-flight batches" in log and "50 batches stored" in log
    con = duckdb.connect(str(collector.db), read_only=True)
    assert con.execute("SELECT count(*) FROM load WHERE node = 'term'").fetchone() == (50,)
    con.close()


def test_agent_flags_are_checked(tmp_path: Path) -> None:
    for flags, message in (
        (["--interval", "0.01", "--once"], "outside 0.1 to 60 seconds"),
        (["--collector", "nowhere"], "is not HOST:PORT"),
        (["--path.procfs", str(tmp_path / "missing"), "--once"], "is not a directory"),
        ([], "give --collector HOST:PORT"),
        (["--spool-max-bytes", "1000", "--once"], "outside 1048576 to"),
        (["--batch-seconds", "x", "--once"], "is not a number"),
    ):
        proc = subprocess.run(
            [str(BIN / "ironsight-agent"), *flags], capture_output=True, text=True, timeout=30
        )
        assert proc.returncode == 2 and message in proc.stderr, (flags, proc.stderr)


def test_up_runs_collector_and_agent_and_stops_both(tmp_path: Path) -> None:
    from support.processes import free_port
    from support.promql import get

    db = tmp_path / "up" / "ironsight.duckdb"
    listen, http = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [str(BIN / "ironsight"), "up", "--db", str(db), "--listen", listen, "--interval", "0.5", "--duration", "20",
         "--http-listen", http],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**__import__("os").environ, "COLUMNS": "200"},
    )  # fmt: skip
    # While it runs, the collector answers PromQL on what this machine's agent sends, `up` included. The
    # API reads which nodes it serves once per 5 s, so `up` shows some 5 s after the first batch: with
    # 8 s to run, a slow start left it unanswered (1 run in 3 here, before and after `top` changed).
    deadline, answers = time.monotonic() + 30, dict[str, list[dict[str, object]]]()
    while time.monotonic() < deadline and len(answers) < 2:
        for expr in ("up", "node_load1"):
            try:
                _, body = get(f"http://{http}", "/api/v1/query", query=expr)
            except OSError:
                continue
            if body.get("status") == "success" and body["data"]["result"]:
                answers[expr] = body["data"]["result"]
        time.sleep(0.5)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    assert "ironsight top" in out and "stopped collector and agent" in out
    assert [r["value"][1] for r in answers["up"]] == ["1"] and answers["node_load1"][0]["metric"][
        "job"
    ] == "ironsight"
    # Both children are gone and left the file closed: it opens read-only and holds what the agent sent.
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT count(DISTINCT time) FROM cpu").fetchone()[0] >= 4
        assert con.execute("SELECT count(*) FROM nodes").fetchone()[0] == 1
    finally:
        con.close()
    collector_log = (db.parent / "ironsight-collector.log").read_text()
    assert "stopped after" in collector_log
    assert "stopped:" in (db.parent / "ironsight-agent.log").read_text()


def test_sigusr1_writes_every_threads_stack_and_the_agent_carries_on(
    collector: CollectorProcess, tmp_path: Path
) -> None:
    """Where a service that will not stop, or stopped answering, waits: kill -USR1 writes each thread's
    stack to its log (the journal under systemd), and it goes on sampling and sending."""
    agent = start_agent(collector.target, tmp_path, "--interval", "0.2")
    log = tmp_path / "agent.log"
    try:
        wait_for(lambda: count(collector, "SELECT count(*) FROM batches") >= 1)
        agent.send_signal(signal.SIGUSR1)
        wait_for(lambda: "most recent call first" in log.read_text(errors="replace"))
        text = log.read_text(errors="replace")
        assert text.count("Thread 0x") >= 3 and "stream.py" in text, text[-4000:]  # the sender's own
        before = count(collector, "SELECT count(*) FROM batches")
        wait_for(lambda: count(collector, "SELECT count(*) FROM batches") > before)
        assert agent.poll() is None
        assert stop(agent, log) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
