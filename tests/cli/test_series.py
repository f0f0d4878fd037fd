"""`ironsight series --step` (a gauge's mean, a counter's mean rate per step) and its word at --limit."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from ironsight.cli.main import cli

from support.traces import simulated


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[datetime, float, float]]]:
    tmp = tmp_path_factory.mktemp("series")
    _, con = simulated(tmp, "mixed", 9, nodes=2, gpus=2, duration_s=300)
    rows = con.execute(
        "SELECT time, util_gpu_percent, energy_joules FROM gpu WHERE node = 'sim-000' AND device = '0' ORDER BY time"
    ).fetchall()
    con.close()
    return tmp / "mixed.duckdb", rows


def series(db: Path, *args: str) -> tuple[list[dict[str, object]], str]:
    result = CliRunner().invoke(cli, ["--db", str(db), "--format", "json", "series", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result.stderr


def test_step_is_each_minutes_mean_and_rate(store: tuple[Path, list[tuple[datetime, float, float]]]) -> None:
    db, rows = store
    t0 = rows[0][0]
    span = ["--node", "sim-000", "--device", "0", "--since", t0.isoformat(),
            "--until", (t0 + timedelta(seconds=179)).isoformat(), "--step", "1m"]  # fmt: skip
    gauge, _ = series(db, "--metric", "gpu.util_gpu_percent", *span)
    counter, _ = series(db, "--metric", "gpu.energy_joules", *span)
    assert len(gauge) == len(counter) == 3
    for k in range(3):
        lo, hi = t0 + timedelta(minutes=k), t0 + timedelta(minutes=k + 1)
        inside = [r for r in rows if lo <= r[0] < hi]
        assert gauge[k]["value"] == pytest.approx(sum(r[1] for r in inside) / len(inside), rel=1e-12)
        pairs = [(a, b) for a, b in itertools.pairwise(rows) if lo <= b[0] < hi]
        rates = [(b[2] - a[2]) / (b[0] - a[0]).total_seconds() for a, b in pairs]
        assert counter[k]["value"] == pytest.approx(sum(rates) / len(rates), rel=1e-9)


def test_a_result_cut_at_limit_says_so(store: tuple[Path, list[tuple[datetime, float, float]]]) -> None:
    db, rows = store
    t0 = rows[0][0].isoformat()
    got, err = series(
        db, "--metric", "gpu.util_gpu_percent", "--since", t0, "--until", "now", "--limit", "50"
    )
    assert len(got) == 50
    assert "stopped at --limit 50 rows" in err and "--step" in err
    got, err = series(db, "--metric", "gpu.util_gpu_percent", "--since", t0, "--until", "now", "--step", "5m")
    assert err == "" and len(got) == 4  # 2 nodes x 2 GPUs, all 300 s in one step
