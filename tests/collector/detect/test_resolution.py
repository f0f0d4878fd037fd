"""Findings that need fine sampling are not judged on a coarsely sampled node, and the CLI says so."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ironsight.cli.main import cli
from ironsight.collector.detect.findings import detect
from ironsight.collector.detect.resolution import notes

from support.traces import WHOLE, simulated

pytestmark = pytest.mark.slow


def test_starvation_is_judged_at_5_s_and_not_at_15_s(tmp_path: Path) -> None:
    _, con = simulated(tmp_path, "starved-storage", 606, nodes=2)
    kinds = lambda: sorted({(f["kind"], f["node"]) for f in detect(con, *WHOLE).to_pylist()})  # noqa: E731
    assert ("data_starvation", "sim-001") in kinds()
    con.execute("UPDATE nodes SET interval_s = 5 WHERE node = 'sim-001'")
    assert ("data_starvation", "sim-001") in kinds()
    con.execute("UPDATE nodes SET interval_s = 15 WHERE node = 'sim-001'")
    assert ("data_starvation", "sim-001") not in kinds()
    con.close()
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "starved-storage.duckdb"), "--format", "json",
                                      "events"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (
        result.stderr.splitlines()
        == notes([("sim-001", 15.0)])
        == [
            "sim-001 samples every 15 s: data_starvation (needs 5 s), network_jitter (needs 5 s), straggler "
            "(needs 2 s) not judged there (docs/receive.md)"
        ]
    )


def test_notes_name_only_what_the_interval_rules_out() -> None:
    assert notes([("n", 3.0)]) == [
        "n samples every 3 s: straggler (needs 2 s) not judged there (docs/receive.md)"
    ]
    assert notes([]) == []
