"""`ironsight jobs` on a store that holds two jobs, their GPUs' samples and a finding."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ironsight.collector.store import Store
from ironsight.core.columnar import TableBuilder
from ironsight.v1 import telemetry_pb2 as pb

from support.processes import run_cli

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def batch(node: str, seq: int, minute: int, owners: dict[str, str], util: float) -> pb.Batch:
    """A minute of 1 s GPU samples at `util` on GPUs 0 and 1, and a look finding owners[gpu] on each."""
    t0 = int((T0 + timedelta(minutes=minute)).timestamp()) * 10**9
    b = TableBuilder("gpu")
    for s in range(60):
        for gpu in ("0", "1"):
            b.add(t0 + s * 10**9, gpu, {"util_gpu_percent": util})
    out = pb.Batch(node_id=node, boot_id="b", seq=seq, interval_s=1.0)
    out.tables.append(b.to_proto())
    out.ownership.time_ns, out.ownership.gpus[:] = t0, ["0", "1"]
    for gpu, job in owners.items():
        out.ownership.jobs.add(gpu=gpu, job=job, source="slurm", attrs={"user": "ana"})
    return out


def test_jobs_lists_each_job_once_with_its_gpus_utilization_and_findings(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    store = Store(db)
    both = {"0": "4242", "1": "4242"}
    store.ingest([batch("n1", 1, 0, both, 90.0), batch("n2", 1, 0, both, 70.0)])
    store.ingest([batch("n1", 2, 1, {"0": "5151"}, 30.0), batch("n2", 2, 1, {}, 0.0)])
    store.reader().execute(
        "INSERT INTO events (kind, severity, node, device, start_time, end_time, cause, evidence, detected_at, job)"
        " VALUES ('thermal', 'warning', 'n2', '1', '2026-11-01 12:00:20', '2026-11-01 12:00:40', NULL, '{}',"
        " now()::TIMESTAMP, '4242')"
    )
    store.close()
    args = (
        "--db",
        str(db),
        "--format",
        "json",
        "jobs",
        "--since",
        "2026-11-01T11:00",
        "--until",
        "2026-11-01T13:00",
    )
    rows = {r["job"]: r for r in json.loads(run_cli(*args).stdout)}
    assert set(rows) == {"4242", "5151"}
    big, small = rows["4242"], rows["5151"]
    assert (big["nodes"], big["gpus"], big["source"]) == (2, 4, "slurm")
    assert big["start_time"].startswith("2026-11-01T12:00:00") or big["start_time"].startswith(
        "2026-11-01 12:00:00"
    )
    assert big["end_time"] is not None and "12:01:00" in big["end_time"]  # all its GPUs left at the next look
    assert big["gpu_util_mean_pct"] == 80.0 and big["findings"] == 1 and big["finding_kinds"] == "thermal"
    assert (small["nodes"], small["gpus"], small["end_time"], small["gpu_util_mean_pct"]) == (
        1,
        1,
        None,
        30.0,
    )
    one = json.loads(run_cli(*args, "--job", "4242").stdout)
    assert sorted((r["node"], r["gpu"], r["findings"]) for r in one) == [
        ("n1", "0", 0), ("n1", "1", 0), ("n2", "0", 0), ("n2", "1", 1)
    ]  # fmt: skip


def test_series_and_events_for_one_job(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    store = Store(db)
    store.ingest([batch("n1", 1, 0, {"0": "4242", "1": "4242"}, 90.0), batch("n2", 1, 0, {"0": "77"}, 50.0)])
    store.ingest([batch("n1", 2, 1, {"0": "5151"}, 30.0)])
    store.reader().execute(
        "INSERT INTO events (kind, severity, node, device, start_time, end_time, cause, evidence, detected_at, job)"
        " VALUES ('power_cap', 'warning', 'n1', '0', '2026-11-01 12:01:10', NULL, NULL, '{}', now()::TIMESTAMP,"
        " '5151')"
    )
    store.close()
    base = ("--db", str(db), "--format", "json")
    span = ("--since", "2026-11-01T11:00", "--until", "2026-11-01T13:00")
    rows = json.loads(
        run_cli(*base, "series", "--metric", "gpu.util_gpu_percent", "--job", "5151", *span).stdout
    )
    assert len(rows) == 60 and {(r["node"], r["device"], r["value"]) for r in rows} == {("n1", "0", 30.0)}
    rows = json.loads(run_cli(*base, "series", "--metric", "load.load1", "--job", "77", *span).stdout)
    assert rows == []  # no host samples stored here: none to show, and no error
    found = json.loads(run_cli(*base, "events", "--job", "5151").stdout)
    assert [(f["kind"], f["job"]) for f in found] == [("power_cap", "5151")]
    assert json.loads(run_cli(*base, "events", "--job", "4242").stdout) == []


def test_top_and_explain_name_the_job(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    store = Store(db)
    store.ingest([batch("n1", 1, 0, {"0": "4242", "1": "4242"}, 90.0), batch("n2", 1, 0, {"0": "77"}, 70.0)])
    # n1's GPU 0 now in 5151, its GPU 1 free; n2 as it was.
    store.ingest([batch("n1", 2, 1, {"0": "5151"}, 30.0), batch("n2", 2, 1, {"0": "77"}, 70.0)])
    store.reader().execute(
        "INSERT INTO events (id, kind, severity, node, device, start_time, end_time, cause, evidence, detected_at, job)"
        " VALUES (9, 'thermal', 'warning', 'n2', '0', '2026-11-01 12:00:20', '2026-11-01 12:00:40', NULL, '{}',"
        " now()::TIMESTAMP, '77')"
    )
    store.close()
    everyone = run_cli("--db", str(db), "top", "--count", "1").stdout
    # Each node's jobs as its last look says (the last column at 200 columns).
    assert {line.split()[0]: line.split()[-1] for line in everyone.splitlines()[2:-1]} == {
        "n1": "5151",
        "n2": "77",
    }
    n1 = run_cli("--db", str(db), "top", "--count", "1", "--node", "n1").stdout.splitlines()
    assert [line.split()[:2] for line in n1[2:4]] == [["0", "5151"], ["1", "-"]]
    one = run_cli("--db", str(db), "top", "--count", "1", "--job", "5151").stdout
    assert "job 5151" in one and [line.split()[0] for line in one.splitlines()[2:-1]] == ["n1"]
    assert (
        "no GPU holds job 4242 now" in run_cli("--db", str(db), "top", "--count", "1", "--job", "4242").stdout
    )
    explained = run_cli("--db", str(db), "explain", "9", "--no-plot").stdout
    assert "thermal (warning) on n2 device 0" in explained and "job: 77" in explained


def test_a_job_named_in_the_file_shows_in_jobs_and_series_and_refuses_a_held_file(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    store = Store(db)
    store.ingest([batch("n1", 1, 0, {}, 40.0), batch("n1", 2, 1, {}, 60.0)])  # no job found by the agent
    store.close()
    at = (T0 + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S")
    named = run_cli("--db", str(db), "--format", "json", "jobs", "name", "eval-1", "--node", "n*", "--gpu", "1",
                    "--since", at, "--until", (T0 + timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%S"))  # fmt: skip
    assert [(r["node"], r["gpu"]) for r in json.loads(named.stdout)] == [("n1", "1")]
    rows = json.loads(
        run_cli("--db", str(db), "--format", "json", "jobs", "--since", "2026-11-01T00:00").stdout
    )
    assert [(r["job"], r["source"], r["gpus"], r["gpu_util_mean_pct"]) for r in rows] == [
        ("eval-1", "manual", 1, 60.0)
    ]
    series = json.loads(
        run_cli("--db", str(db), "--format", "json", "series", "--metric", "gpu.util_gpu_percent", "--job", "eval-1",
                "--since", "2026-11-01T00:00").stdout
    )  # fmt: skip
    assert {(r["device"], r["value"]) for r in series} == {("1", 60.0)} and len(series) == 60
    held = Store(db)  # a collector holding the file: the name must go through it
    try:
        refused = run_cli("--db", str(db), "jobs", "forget", "eval-1", check=False)
    finally:
        held.close()
    assert refused.returncode == 1 and "held by another process" in refused.stderr
    assert "name the job through it with --collector" in refused.stderr
