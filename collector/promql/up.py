"""`up`, as a Prometheus scraping each agent would record it: 1 while the node's agent samples, 0 once
it has been silent for DOWN_AFTER_MS.

From the `sampler` table (a row per sampler and tick, stamped with the agent's time), on a grid of
STEP_MS: up at g is 1 if the node ticked in (g - DOWN_AFTER_MS, g]. The grid starts at the node's
first tick and runs to the query's end, but never past now: a node that stopped stays 0, as a target
still in a scrape configuration does.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ironsight.collector.promql.values import Matcher, Raw, matches

NAME = "up"
STEP_MS = 10_000
DOWN_AFTER_MS = 30_000  # three missed 10 s scrapes, or thirty 1 s ticks

_SQL = """
SELECT DISTINCT node, (epoch_ms(time) + ? - 1) // ? * ? AS slot  -- the grid point a tick is the news of
FROM sampler WHERE time >= make_timestamp(? * 1000) AND time <= make_timestamp(? * 1000)
    AND list_contains(?, node)
ORDER BY node, slot
"""


def up(con: Any, matchers: Sequence[Matcher], nodes: list[str], mint_ms: int, maxt_ms: int,
       extra: dict[str, str]) -> Raw:  # fmt: skip
    if not matches({"__name__": NAME}, [m for m in matchers if m.name == "__name__"]) or not nodes:
        return Raw.empty()
    end = min(maxt_ms, int(time.time() * 1000))
    # Ticks from DOWN_AFTER_MS before the range: they say whether the node was up at its start.
    rows = con.execute(_SQL, [STEP_MS, STEP_MS, STEP_MS, mint_ms - DOWN_AFTER_MS, end, nodes]).fetchall()
    by_node: dict[str, list[int]] = {}
    for node, slot in rows:
        by_node.setdefault(node, []).append(int(slot))
    labels, ts, vs = [], [], []
    for node, slots in by_node.items():
        ls = {"__name__": NAME, "job": extra.get("job", "ironsight"), "instance": node,
              **{k: v for k, v in extra.items() if k != "job"}}  # fmt: skip
        if not matches(ls, matchers):
            continue
        ticked = np.array(slots, dtype=np.int64)  # grid points with a tick in the STEP_MS before them
        first = max(-(-mint_ms // STEP_MS) * STEP_MS, int(ticked[0]))
        grid = np.arange(first, end + 1, STEP_MS, dtype=np.int64)
        if not len(grid):
            continue
        newest = np.searchsorted(ticked, grid, side="right") - 1
        alive = (newest >= 0) & (grid - ticked[np.maximum(newest, 0)] < DOWN_AFTER_MS)
        labels.append(ls)
        ts.append(grid)
        vs.append(alive.astype(np.float64))
    return Raw.of(labels, ts, vs)
