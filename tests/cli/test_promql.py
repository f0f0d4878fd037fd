"""`ironsight promql`: PromQL on the store file, and through a collector's API, with every format."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from ironsight.cli.main import cli

from support.promql import Collector
from support.traces import simulated


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, datetime, dict[str, float]]:
    tmp = tmp_path_factory.mktemp("promql-cli")
    _, con = simulated(tmp, "mixed", 7, nodes=2, gpus=2, duration_s=300)
    last = con.execute("SELECT max(time) FROM gpu").fetchall()[0][0]
    temps = dict(con.execute(
        "SELECT node || '/' || device, temperature_celsius FROM gpu WHERE time = ?", [last]).fetchall())  # fmt: skip
    con.close()
    return tmp / "mixed.duckdb", last, temps


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_instant_query_reads_the_stored_values(store: tuple[Path, datetime, dict[str, float]]) -> None:
    db, last, temps = store
    code, out = run(
        "--db", str(db), "--format", "json", "promql", "DCGM_FI_DEV_GPU_TEMP", "--until", last.isoformat()
    )
    assert code == 0, out
    data = json.loads(out)
    assert data["resultType"] == "vector"
    got = {f"{r['metric']['instance']}/{r['metric']['gpu']}": float(r["value"][1]) for r in data["result"]}
    assert got == temps
    code, out = run(
        "--db",
        str(db),
        "--format",
        "json",
        "promql",
        "max(DCGM_FI_DEV_GPU_TEMP)",
        "--until",
        last.isoformat(),
    )
    assert float(json.loads(out)["result"][0]["value"][1]) == max(temps.values())


def test_range_query_as_csv_and_plot(store: tuple[Path, datetime, dict[str, float]]) -> None:
    db, last, _ = store
    span = ("--since", (last.replace(second=0) - _minutes(3)).isoformat(), "--until", last.isoformat())
    code, out = run("--db", str(db), "--format", "csv", "promql", "sum by (instance) (DCGM_FI_DEV_POWER_USAGE)",
                    *span, "--step", "1m")  # fmt: skip
    assert code == 0, out
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["time", "series", "value"]
    assert len(rows) == 1 + 2 * 4  # two nodes, four steps
    assert {r[1] for r in rows[1:]} == {'{instance="sim-000"}', '{instance="sim-001"}'}
    assert all(float(r[2]) > 0 for r in rows[1:])
    code, out = run("--db", str(db), "promql", "DCGM_FI_DEV_GPU_UTIL", *span, "--plot")
    assert code == 0 and out.startswith("DCGM_FI_DEV_GPU_UTIL\n") and 'gpu="1"' in out


def test_bad_queries_say_why_in_one_line(store: tuple[Path, datetime, dict[str, float]]) -> None:
    db, _, _ = store
    for args, words in (
        (["promql", "sum("], "bad_data"),
        (["promql", "up", "--step", "0s", "--since", "1h"], "--step 0s"),
        (["promql", "up", "--since", "1d", "--step", "1s"], "11,000 points"),
        (["promql", "up", "--api", "http://127.0.0.1:9"], "http://127.0.0.1:9"),
        (["--collector", "127.0.0.1:7070", "promql", "up"], "--api http://HOST:PORT"),
    ):
        code, out = run("--db", str(db), *args)
        assert code == 1, out
        assert words in out and len(out.strip().splitlines()) == 1, out


def test_through_a_collectors_api_as_from_the_file(
    store: tuple[Path, datetime, dict[str, float]], tmp_path: Path
) -> None:
    db, last, _ = store
    collector = Collector(db, tmp_path)
    try:
        expr = "rate(node_cpu_seconds_total{mode='user'}[1m])"
        span = ("--since", (last - _minutes(2)).isoformat(), "--until", last.isoformat(), "--step", "10s")
        code, remote = run("--format", "json", "promql", expr, *span, "--api", collector.url)
        assert code == 0, remote
    finally:
        collector.stop()
    code, local = run("--db", str(db), "--format", "json", "promql", expr, *span)
    assert json.loads(remote) == json.loads(local)
    assert len(json.loads(local)["result"]) >= 2


def _minutes(n: int) -> timedelta:
    return timedelta(minutes=n)
