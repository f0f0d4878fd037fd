"""The detector's findings as series: open from their start, gone at their end (a staleness marker),
labelled as the collector's /metrics labels them, values as stored."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ironsight.collector.promql.engine import Engine
from ironsight.collector.promql.source import Source
from ironsight.collector.promql.values import Vector
from ironsight.collector.store import Store

T = 1793491200_000  # 2026-11-01 00:00:00 UTC, in milliseconds


def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "s.duckdb")
    s.reader().execute(
        "INSERT INTO events (kind, severity, node, device, start_time, end_time, cause, evidence, detected_at, job) "
        "VALUES ('thermal', 'critical', 'n1', '0', '2026-11-01 00:01:00', '2026-11-01 00:03:00', 'hw_slowdown', "
        '\'{"peak": {"temperature_c": 91.5, "xids": [13, 79], "flag": true}}\', now()::TIMESTAMP, \'4242\'), '
        "('data_starvation', 'warning', 'n2', '1', '2026-11-01 00:02:00', NULL, NULL, '{}', now()::TIMESTAMP, NULL)"
    )
    return s


def run(s: Store, expr: str, start: int, end: int, step: int) -> Vector:
    got = Engine(Source(s.reader())).run(expr, start, end, step)
    assert isinstance(got, Vector)
    return got


def test_active_from_start_to_end(tmp_path: Path) -> None:
    s = store(tmp_path)
    got = run(s, 'ironsight_bottleneck_active{kind="thermal"}', T, T + 300_000, 30_000)
    assert got.labels == [{"__name__": "ironsight_bottleneck_active", "job": "ironsight", "kind": "thermal",
                           "node": "n1", "device": "0", "severity": "critical", "ironsight_job": "4242"}]  # fmt: skip
    # 0:00 and 0:30 before it; 1:00 to 2:30 open; 3:00 on closed, though within 5 minutes' lookback.
    assert got.ok[0].tolist() == [False, False, True, True, True, True, False, False, False, False, False]
    assert np.all(got.v[0][got.ok[0]] == 1)
    s.close()


def test_open_finding_lasts_until_now_and_since_and_evidence(tmp_path: Path) -> None:
    s = store(tmp_path)
    got = run(s, "ironsight_bottleneck_active", T + 600_000, T + 600_000, 1000)
    assert sorted(ls["kind"] for ls in got.labels) == ["data_starvation"]  # thermal closed at 3:00
    assert "ironsight_job" not in got.labels[0]  # no job known: no label, as an empty one is none
    since = run(s, "ironsight_bottleneck_since_timestamp_seconds", T + 120_000, T + 120_000, 1000)
    values = {ls["kind"]: (v, ls.get("cause")) for ls, v in zip(since.labels, since.v[:, 0], strict=True)}
    assert values == {
        "thermal": ((T + 60_000) / 1000, "hw_slowdown"),
        "data_starvation": ((T + 120_000) / 1000, None),
    }
    evidence = run(s, "ironsight_bottleneck_evidence", T + 90_000, T + 90_000, 1000)
    figures = {ls["figure"]: float(v) for ls, v in zip(evidence.labels, evidence.v[:, 0], strict=True)}
    assert figures == {"temperature_c": 91.5, "xids": 79.0}  # a list gives its last; a flag is no figure
    s.close()


def test_range_functions_skip_the_staleness_marker(tmp_path: Path) -> None:
    s = store(tmp_path)
    got = run(
        s, 'count_over_time(ironsight_bottleneck_active{kind="thermal"}[10m])', T + 600_000, T + 600_000, 1000
    )
    assert got.v[0, 0] == 12  # 1:00 to 2:50 every 10 s; the marker at 3:00 is not a sample
    s.close()
