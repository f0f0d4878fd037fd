"""Jobs named by hand: laid over what the agents found, ended, forgotten; findings take the name."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from ironsight.collector.jobnames import Naming, NamingError, end, forget, name
from ironsight.collector.store import Store
from ironsight.v1 import telemetry_pb2 as pb

from support.batches import at, look


def with_gpus(batch: pb.Batch, gpus: tuple[str, ...] = ("0", "1")) -> pb.Batch:
    """The batch with the node's inventory: naming finds a node's GPUs there."""
    batch.node.hostname = batch.node_id
    for g in gpus:
        batch.node.devices.add(kind="gpu", name=g)
    return batch


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "s.duckdb")
    s.ingest([with_gpus(look("n1", 1, 0, {"0": ["11"], "1": ["11"]})), with_gpus(look("n2", 1, 0, {}))])
    yield s
    s.close()


def spans(con: Any) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = con.execute(
        "SELECT job, source, node, gpu, start_time, end_time FROM job_spans ORDER BY node, gpu, start_time"
    ).fetchall()
    return rows


def t(seconds: int) -> datetime:
    when = at(seconds)
    assert when is not None
    return when


def test_a_name_wins_over_the_agents_while_it_lasts_and_their_looks_stay_stored(store: Store) -> None:
    con = store.reader()
    named = name(con, Naming("eval-3", ("n1",), t(60), t(120), gpus=("0",), attrs={"user": "bo"}))
    assert named.to_pylist() == [
        {"job": "eval-3", "node": "n1", "gpu": "0", "start_time": t(60), "end_time": t(120)}
    ]
    assert spans(con) == [
        ("11", "slurm", "n1", "0", t(0), t(60)),
        ("eval-3", "manual", "n1", "0", t(60), t(120)),
        ("11", "slurm", "n1", "0", t(120), None),
        ("11", "slurm", "n1", "1", t(0), None),
    ]
    assert con.execute("SELECT attrs['user'] FROM job_spans WHERE job = 'eval-3'").fetchall() == [("bo",)]
    # What the agent said is kept as it said it.
    assert con.execute("SELECT DISTINCT job FROM agent_jobs WHERE node = 'n1'").fetchall() == [("11",)]


def test_a_look_arriving_inside_a_name_keeps_the_name_and_shows_after_it(store: Store) -> None:
    con = store.reader()
    name(con, Naming("bench", ("n2",), t(60), t(300)))
    store.ingest([look("n2", 2, 120, {"0": ["77"]})])  # the agent finds job 77 on GPU 0 meanwhile
    assert [s for s in spans(con) if s[2] == "n2"] == [
        ("bench", "manual", "n2", "0", t(60), t(300)),
        ("77", "slurm", "n2", "0", t(300), None),
        ("bench", "manual", "n2", "1", t(60), t(300)),
    ]


def test_the_newest_name_wins_where_two_cover_a_gpu_and_end_and_forget_undo(store: Store) -> None:
    con = store.reader()
    name(con, Naming("a", ("n*",), t(60)))  # open: both nodes, every GPU
    name(con, Naming("b", ("n2",), t(100), t(200), gpus=("1",)))
    assert [s for s in spans(con) if s[2] == "n2"] == [
        ("a", "manual", "n2", "0", t(60), None),
        ("a", "manual", "n2", "1", t(60), t(100)),
        ("b", "manual", "n2", "1", t(100), t(200)),
        ("a", "manual", "n2", "1", t(200), None),
    ]
    ended = end(con, "a", t(400), ("n2",))
    assert sorted(ended.column("gpu").to_pylist()) == ["0", "1"]
    assert [s[5] for s in spans(con) if s[0] == "a" and s[2] == "n2"] == [t(400), t(100), t(400)]
    with pytest.raises(NamingError, match="no name of job 'a' lasts at"):
        end(con, "a", t(400), ("n2",))
    gone = forget(con, "a")
    assert gone.num_rows == 4  # two GPUs on each node
    assert spans(con) == [
        ("11", "slurm", "n1", "0", t(0), None),
        ("11", "slurm", "n1", "1", t(0), None),
        ("b", "manual", "n2", "1", t(100), t(200)),
    ]


@pytest.mark.parametrize(
    ("naming", "says"),
    [
        (Naming("x", ("gpu-9*",), t(0)), "no stored node matches gpu-9*"),
        (Naming("x", ("n1",), t(0), gpus=("7",)), "node n1 has no GPU 7 (it reported: 0, 1)"),
        (Naming("a,b", ("n1",), t(0)), "no comma"),
        (Naming(" ", ("n1",), t(0)), "must not be empty"),
        (Naming("x", ("n1",), t(60), t(60)), "start must be before its end"),
        (Naming("x", (), t(0)), "name at least one node"),
    ],
)
def test_a_name_that_cannot_be_given_says_why_and_stores_nothing(
    store: Store, naming: Naming, says: str
) -> None:
    con = store.reader()
    with pytest.raises(NamingError, match=says.replace("(", r"\(").replace(")", r"\)")):
        name(con, naming)
    assert con.execute("SELECT count(*) FROM job_names").fetchall() == [(0,)]


def test_stored_findings_take_the_job_they_hit_under_the_name(store: Store) -> None:
    con = store.reader()
    con.execute(
        """INSERT INTO events (kind, severity, node, device, start_time, end_time, detected_at)
           VALUES ('data_starvation', 'warning', 'n2', '1', ?, ?, now()),
                  ('thermal', 'warning', 'n2', '', ?, NULL, now()),
                  ('thermal', 'warning', 'n2', '', ?, NULL, now())""",
        [t(90), t(100), t(70), t(10)],
    )
    name(con, Naming("sweep", ("n2",), t(60), t(200), gpus=("1",)))
    jobs = con.execute("SELECT start_time, job FROM events ORDER BY start_time").fetchall()
    assert jobs == [(t(10), None), (t(70), "sweep"), (t(90), "sweep")]
    forget(con, "sweep")
    assert con.execute("SELECT count(job) FROM events").fetchall() == [(0,)]
