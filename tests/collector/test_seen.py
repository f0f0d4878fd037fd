"""The dedupe's memory answers exactly as the batches table would, whatever order numbers come in."""

from __future__ import annotations

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ironsight.collector import seen as seen_mod
from ironsight.collector.migrations import migrate
from ironsight.collector.seen import Seen

STREAMS = [("n1", "b1"), ("n1", "b2"), ("n2", "b1")]

groups = st.lists(  # commit groups: keys asked, then the fresh ones stored
    st.lists(st.tuples(st.sampled_from(STREAMS), st.integers(0, 40)), min_size=1, max_size=12),
    min_size=1, max_size=25,
)  # fmt: skip


_con: list[duckdb.DuckDBPyConnection] = []


def _empty() -> duckdb.DuckDBPyConnection:
    """The real schema, migrated once for all examples, its batches table emptied for each."""
    if not _con:
        _con.append(duckdb.connect())
        migrate(_con[0])
    _con[0].execute("DELETE FROM batches")
    return _con[0]


@settings(max_examples=150, deadline=None)
@given(before=st.lists(st.tuples(st.sampled_from(STREAMS), st.integers(0, 40)), max_size=30), asked=groups,
       restart_at=st.integers(0, 25))  # fmt: skip
def test_answers_equal_the_table_through_gaps_resends_and_a_restart(
    before: list[tuple[tuple[str, str], int]], asked: list[list[tuple[tuple[str, str], int]]], restart_at: int
) -> None:
    con = _empty()
    table: set[tuple[str, str, int]] = set()

    def store(keys: set[tuple[str, str, int]]) -> None:
        for k in keys - table:
            con.execute("INSERT INTO batches VALUES (?, ?, ?, now()::TIMESTAMP, 1, 0)", list(k))
        table.update(keys)

    store({(p[0], p[1], s) for p, s in before})  # stored by an earlier run of the collector
    memory = Seen()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(seen_mod, "MAX_ABOVE", 3)  # the floor moves up often
        mp.setattr(seen_mod, "MAX_STREAMS", 2)  # and streams are forgotten
        for i, group in enumerate(asked):
            if i == restart_at:
                memory = Seen()
            keys = [(p[0], p[1], s) for p, s in group]
            assert memory.stored(con, keys) == {k for k in keys if k in table}
            fresh = {k for k in keys if k not in table}
            store(fresh)
            memory.add(fresh)


def test_a_stream_in_order_is_kept_as_one_run() -> None:
    con = _empty()
    memory = Seen()
    keys = [("n", "b", s) for s in range(1, 10_001)]
    assert memory.stored(con, keys[:1]) == set()
    memory.add(keys)
    stream = memory._streams[("n", "b")]
    assert (stream.floor, stream.top, stream.above) == (1, 10_000, set())
    assert memory.stored(con, [("n", "b", 5_000), ("n", "b", 10_001)]) == {("n", "b", 5_000)}
