"""`up` from the agents' own tick records: 1 while a node ticks, 0 once it has been silent 30 s."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ironsight.collector.promql.engine import Engine
from ironsight.collector.promql.source import Source
from ironsight.collector.promql.values import Vector
from ironsight.collector.store import Store

T = 1793491200_000  # 2026-11-01 00:00:00 UTC


def test_up_follows_the_ticks(tmp_path: Path) -> None:
    s = Store(tmp_path / "s.duckdb")
    con = s.reader()
    con.execute("INSERT INTO nodes (node, hostname, first_seen, last_seen) VALUES "
                "('a', 'a', TIMESTAMP '2026-11-01', TIMESTAMP '2026-11-01'), "
                "('b', 'b', TIMESTAMP '2026-11-01', TIMESTAMP '2026-11-01')")  # fmt: skip
    # a ticks every second for 10 minutes; b for the first 2 minutes only.
    con.execute("INSERT INTO sampler_hot SELECT 'a', 'cpu', TIMESTAMP '2026-11-01' + to_seconds(i), 0.001, 1 "
                "FROM range(600) t(i)")  # fmt: skip
    con.execute("INSERT INTO sampler_hot SELECT 'b', 'cpu', TIMESTAMP '2026-11-01' + to_seconds(i), 0.001, 1 "
                "FROM range(120) t(i)")  # fmt: skip
    got = Engine(Source(s.reader())).run("up", T, T + 600_000, 60_000)
    assert isinstance(got, Vector)
    by = {ls["instance"]: (v, ok) for ls, v, ok in zip(got.labels, got.v, got.ok, strict=True)}
    assert set(by) == {"a", "b"} and got.labels[0]["job"] == "ironsight"
    assert np.all(by["a"][1]) and np.all(by["a"][0][:10] == 1)  # 0:00 to 9:00; 10:00 is 1 s past a's last
    # b: up at 0:00 and 1:00 and 2:00 (its last tick 1:59 within 30 s), down from 3:00 on.
    assert by["b"][0].tolist() == [1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    down = Engine(Source(s.reader())).run("count(up == 0) or vector(0)", T + 300_000, T + 300_000, 1000)
    assert isinstance(down, Vector) and down.v[0, 0] == 1
    s.close()
