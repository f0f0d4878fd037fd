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


def test_xid_series_at_each_step_as_the_history_has_them(tmp_path: Path) -> None:
    """A range query of the XID series reads each GPU's last row a step (not every row): the values at
    every step must still be the last XID before it and how many came so far, the state before the
    range included."""
    s = Store(tmp_path / "s.duckdb")
    con = s.reader()
    con.execute(
        "INSERT INTO gpu_hot (node, device, time, util_gpu_percent) SELECT 'n1', '0', "
        "TIMESTAMP '2026-11-01' + to_seconds(i), 50 FROM range(200) t(i)"
    )
    con.execute(
        "INSERT INTO gpu_xid_hot (node, device, time, xid) VALUES ('n1', '0', TIMESTAMP '2026-10-31 23:59:00', 13), "
        "('n1', '0', TIMESTAMP '2026-11-01 00:00:42.5', 79), ('n1', '0', TIMESTAMP '2026-11-01 00:01:31', 48)"
    )
    inventory = Inventory(["n1"], {"n1": "h1"}, {})
    engine = Engine(Source(con, inventory=inventory))
    starts = range(T + 10_000, T + 200_000, 15_000)  # 10 s, 25 s, ... 190 s
    last = engine.run("DCGM_FI_DEV_XID_ERRORS", T + 10_000, T + 190_000, 15_000)
    count = engine.run("ironsight_gpu_xid_events_total", T + 10_000, T + 190_000, 15_000)
    want_last = [13 if t < T + 42_500 else 79 if t < T + 91_000 else 48 for t in starts]
    want_count = [1 if t < T + 42_500 else 2 if t < T + 91_000 else 3 for t in starts]
    assert last.v[0].tolist() == want_last and last.ok.all()
    assert count.v[0].tolist() == want_count and count.ok.all()
    s.close()
