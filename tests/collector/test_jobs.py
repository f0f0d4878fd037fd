"""Who owns each GPU, stored: a look per change, processes with each look, intervals in job_spans."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from ironsight.collector.store import Store
from ironsight.core.columnar import TableBuilder
from ironsight.core.validate import InvalidBatch, check
from ironsight.v1 import telemetry_pb2 as pb

from support.batches import T0, at, look


def test_a_look_is_stored_when_it_changes_and_spans_follow(store: Store) -> None:
    store.ingest([look("n1", 1, 0, {"0": ["11"], "1": ["11"]})])
    store.ingest([look("n1", 2, 60, {"0": ["11"], "1": ["11"]})])  # the same: not stored again
    store.ingest([look("n1", 3, 120, {"0": ["11"]})])  # job 11 left GPU 1
    store.ingest([look("n1", 4, 180, {"0": ["11"], "1": ["12"]})])
    store.ingest([look("n2", 1, 30, {"0": ["11"], "1": ["11"]})])  # job 11 spans two nodes
    con = store.reader()
    assert con.execute("SELECT count(DISTINCT time) FROM gpu_jobs WHERE node = 'n1'").fetchall() == [(3,)]
    spans = con.execute(
        "SELECT job, node, gpu, start_time, end_time, attrs['user'] FROM job_spans ORDER BY job, node, gpu"
    ).fetchall()
    assert spans == [
        ("11", "n1", "0", at(0), None, "ana"),  # still running
        ("11", "n1", "1", at(0), at(120), "ana"),
        ("11", "n2", "0", at(30), None, "ana"),
        ("11", "n2", "1", at(30), None, "ana"),
        ("12", "n1", "1", at(180), None, "ana"),
    ]
    # Processes with every look sent, duplicates of a look included.
    assert con.execute(
        "SELECT count(*), count(used_memory_bytes), count(sm_util_percent) FROM gpu_processes"
    ).fetchall() == [(9, 0, 0)]


def test_a_job_that_comes_back_is_two_spans(store: Store) -> None:
    for seq, (at_s, jobs) in enumerate([(0, {"0": ["7"]}), (10, {}), (20, {"0": ["7"]})], start=1):
        store.ingest([look("n1", seq, at_s, jobs, gpus=("0",))])
    rows = store.reader().execute("SELECT start_time, end_time FROM job_spans ORDER BY start_time").fetchall()
    assert rows == [(at(0), at(10)), (at(20), None)]


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda o: o.jobs.add(gpu="5", job="1", source="slurm"), "not among the GPUs listed"),
        (lambda o: o.jobs.add(gpu="0", job="", source="slurm"), "1-256 printable"),
        (lambda o: o.jobs.add(gpu="0", job="1", source="pbs"), "is not one of"),
        (lambda o: setattr(o, "time_ns", 1), "time_ns out of range"),
    ],
)
def test_a_malformed_look_is_refused_saying_why(change: Callable[[pb.Ownership], object], says: str) -> None:
    batch = look("n1", 1, 0, {})
    change(batch.ownership)
    with pytest.raises(InvalidBatch, match=says):
        check(batch)


def test_jobs_now_hold_while_a_nodes_gpus_report(store: Store) -> None:
    """The collector's ironsight_job_gpus: each node's last look (stored on change, so possibly
    old) holds while its GPUs report; a node silent for ten minutes holds none."""
    from ironsight.collector.detect.live import jobs_now

    store.ingest([look("n1", 1, 0, {"0": ["11"], "1": ["11"]}), look("n2", 1, 0, {"0": ["22"]})])
    store.ingest([look("n1", 2, 60, {"0": ["11"], "1": ["33"]})])
    for node, last_s in (("n1", 1800), ("n2", 900)):
        b = TableBuilder("gpu")
        for s in range(0, last_s, 10):
            b.add(T0 + s * 10**9, "0", {"util_gpu_percent": 90.0})
        batch = pb.Batch(node_id=node, boot_id="b", seq=100, interval_s=10.0)
        batch.tables.append(b.to_proto())
        store.ingest([batch])
    con = store.reader()

    def at(seconds: int) -> datetime:
        return datetime.fromtimestamp(T0 / 1e9 + seconds, UTC).replace(tzinfo=None)

    assert jobs_now(con, at(1800)) == [("11", "n1", 1), ("33", "n1", 1)]  # n2 silent since 900 s
    assert jobs_now(con, at(1200)) == [("11", "n1", 1), ("22", "n2", 1), ("33", "n1", 1)]
    assert jobs_now(con, at(30)) == [("11", "n1", 2), ("22", "n2", 1)]  # before n1's second look
