"""Which nodes' rows a selector reads: the ones asked for that the inventory holds, with or without a filter
on node in the SQL (every node asked reads without one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ironsight.collector.promql.engine import Engine
from ironsight.collector.promql.source import Inventory, Source
from ironsight.collector.store import Store

T = 1793491200_000  # 2026-11-01 00:00 UTC


@pytest.mark.parametrize("expr", ["DCGM_FI_DEV_GPU_TEMP{instance=~'.+'}", "DCGM_FI_DEV_GPU_TEMP{instance=~'n.*'}",
                                  "max_over_time(DCGM_FI_DEV_GPU_TEMP[1m])", "DCGM_FI_DEV_GPU_TEMP{instance='n2'}",
                                  # a neighbouring rule's name too: n3's rows must not land on it
                                  "{__name__=~'DCGM_FI_DEV_GPU_TEMP|DCGM_FI_DEV_MEM_CLOCK'}"])  # fmt: skip
def test_a_node_the_inventory_does_not_hold_yet_is_left_out(tmp_path: Path, expr: str) -> None:
    s = Store(tmp_path / "s.duckdb")
    con = s.reader()
    con.execute(
        "INSERT INTO gpu_hot (node, device, time, temperature_celsius) SELECT 'n' || (i % 3 + 1), '0', "
        "TIMESTAMP '2026-11-01' + to_seconds(i // 3), 40 + i % 3 FROM range(360) t(i)"
    )
    # Read before n3 arrived (the API keeps its inventory for 5 s).
    stale = Inventory(["n1", "n2"], {"n1": "h1", "n2": "h2"}, {})
    got = Engine(Source(con, inventory=stale)).run(expr, T + 60_000, T + 110_000, 10_000)
    instances = sorted(ls["instance"] for ls in got.labels)
    assert instances == (["n2"] if "'n2'" in expr else ["n1", "n2"])
    values = {ls["instance"]: set(got.v[i][got.ok[i]].tolist()) for i, ls in enumerate(got.labels)}
    assert values["n2"] == {41.0}
    assert {ls["hostname"] for ls in got.labels} <= {"h1", "h2"}
    assert {ls.get("__name__", "DCGM_FI_DEV_GPU_TEMP") for ls in got.labels} == {"DCGM_FI_DEV_GPU_TEMP"}
    s.close()
