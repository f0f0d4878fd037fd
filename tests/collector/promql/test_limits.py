"""The engine's limits: too many series or samples is one clear error, in Prometheus's errorType."""

from __future__ import annotations

from pathlib import Path

import pytest

from ironsight.collector.promql.engine import Engine
from ironsight.collector.promql.source import Source
from ironsight.collector.promql.values import QueryError
from ironsight.collector.store import Store

T = 1793491200_000


def test_limits_refuse_with_one_clear_error(tmp_path: Path) -> None:
    s = Store(tmp_path / "s.duckdb")
    s.reader().execute(
        "INSERT INTO events (kind, severity, node, device, start_time, end_time, detected_at) VALUES "
        "('thermal', 'critical', 'n1', '0', '2026-11-01 00:01:00', '2026-11-01 00:03:00', now()::TIMESTAMP)"
    )
    with pytest.raises(QueryError, match="selects 1 series, more than the 0 allowed") as exc:
        Engine(Source(s.reader()), max_series=0).run(
            "ironsight_bottleneck_active", T + 90_000, T + 90_000, 1000
        )
    assert exc.value.kind == "execution"
    with pytest.raises(QueryError, match="too many samples") as exc:
        Engine(Source(s.reader()), max_samples=5).run(
            "ironsight_bottleneck_active[10m]", T + 300_000, T + 300_000, 1000
        )
    assert exc.value.kind == "execution"
    got = Engine(Source(s.reader()), max_samples=13).run(
        "ironsight_bottleneck_active[10m]", T + 300_000, T + 300_000, 1000
    )
    assert len(got.t[0]) == 12
    s.close()
