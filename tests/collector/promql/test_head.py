"""The query API's head (recent samples in memory): the same answers as the store's, through every writer.

Each answer from the head is checked against the same query read from DuckDB
alone (no head), on a real store written by the real ingest path, the remote
write receiver's settling and retention's deletes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from ironsight.collector.promql.engine import Engine
from ironsight.collector.promql.head import Head, Held
from ironsight.collector.promql.source import Inventory, Source
from ironsight.collector.promql.values import Vector
from ironsight.collector.retention import Policy, Retention
from ironsight.collector.store import Store
from ironsight.core.columnar import TableBuilder
from ironsight.v1 import telemetry_pb2 as pb

T = 1793491200_000  # 2026-11-01 00:00 UTC, ms
NODES = ("n1", "n2", "n3")


def _batch(node: str, seq: int, first_s: int, seconds: int) -> pb.Batch:
    """seconds of one node's two GPUs at 1 s, with a few ms of jitter, from T + first_s; temperature
    missing every 7th second (a NULL), power a counter-like energy."""
    b = TableBuilder("gpu")
    for s in range(first_s, first_s + seconds):
        for gpu in ("0", "1"):
            values = {
                "util_gpu_percent": float((s * 7 + len(node)) % 101),
                "energy_joules": 1000.0 + 350.0 * s,
            }
            if s % 7:
                values["temperature_celsius"] = 40.0 + (s % 13) + int(gpu)
            b.add((T + s * 1000 + (s * 37) % 11) * 1_000_000, gpu, values)
    batch = pb.Batch(node_id=node, boot_id="boot-1", seq=seq, interval_s=1.0)
    batch.tables.append(b.to_proto())
    return batch


INVENTORY = Inventory(list(NODES), {n: f"h-{n}" for n in NODES}, {})
EXPRS = [
    "DCGM_FI_DEV_GPU_TEMP",  # an instant selector: per step, from the head's arrays
    "DCGM_FI_DEV_GPU_UTIL{instance=~'n[12]'} / 100",
    "rate(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION[30s])",
    "max_over_time(DCGM_FI_DEV_GPU_TEMP[1m])",
    "avg by (instance) (DCGM_FI_DEV_GPU_UTIL offset 20s)",
    "count_over_time(DCGM_FI_DEV_GPU_TEMP{gpu='1'}[17s])",
]
RANGES = [(T, T + 300_000, 15_000), (T - 60_000, T + 200_000, 7_000), (T + 123_457, T + 290_001, 1_000)]


def _same(a: Vector, b: Vector) -> None:
    assert a.labels == b.labels
    assert np.array_equal(a.ok, b.ok)
    assert np.array_equal(np.where(a.ok, a.v, 0), np.where(b.ok, b.v, 0))


def _check(store: Store, head: Head, exprs: list[str] = EXPRS) -> int:
    """Every expression over every range, with the head and without; the number of samples seen."""
    seen = 0
    for expr in exprs:
        for start, end, step in RANGES:
            got = Engine(Source(store.reader(), inventory=INVENTORY, head=head)).run(expr, start, end, step)
            want = Engine(Source(store.reader(), inventory=INVENTORY)).run(expr, start, end, step)
            assert isinstance(got, Vector) and isinstance(want, Vector)
            _same(got, want)
            seen += int(want.ok.sum())
    return seen


def test_answers_from_the_head_are_the_stores_as_new_and_late_batches_arrive(store: Store) -> None:
    head = Head()
    store.changes.listen(head)
    store.ingest([_batch(n, 1, 0, 150) for n in NODES[:2]])
    first = _check(store, head)
    assert first > 0 and head.misses == 3 and head.hits > 0  # three columns, each read from the store once
    store.ingest([_batch(n, 2, 150, 150) for n in NODES[:2]])  # the newest 150 s
    store.ingest([_batch("n3", 1, 60, 100)])  # a node that came late, with older times
    store.ingest([_batch("n1", 3, -60, 60)])  # and samples older than any held (read into the head too)
    later = _check(store, head)
    assert later > first
    assert head.misses == 3  # brought up to date, never read whole again


def test_a_query_older_than_the_heads_span_reads_the_store(store: Store) -> None:
    head = Head(span_ms=120_000)
    store.changes.listen(head)
    store.ingest([_batch(n, 1, 0, 300) for n in NODES])
    assert head.samples(store.reader(), "gpu", "temperature_celsius", T, T + 300_000) is None
    held = head.samples(store.reader(), "gpu", "temperature_celsius", T + 200_000, T + 300_000)
    assert held is not None and len(held.keys) == 6  # 3 nodes x 2 GPUs
    assert held.t.min() >= T + 200_000 and held.t.max() < T + 300_000
    _check(store, head)


def test_a_small_budget_keeps_what_fits_and_answers_the_same(store: Store) -> None:
    store.ingest([_batch(n, 1, 0, 300) for n in NODES])
    one_column = 6 * 300 * 16  # 6 series x 300 samples x (time, value)
    head = Head(budget_bytes=one_column + 1000)
    store.changes.listen(head)
    _check(store, head)
    assert 0 < head.nbytes() <= one_column + 1000


def test_a_column_past_the_budget_is_read_from_the_store_not_loaded_and_dropped(store: Store) -> None:
    """A fleet's hours of one column past the whole budget: not loaded at each query only to be
    dropped again; DuckDB answers, and the head does not ask again for a while."""
    store.ingest([_batch(n, 1, 0, 300) for n in NODES])
    head = Head(budget_bytes=6 * 300 * 16 // 2)  # half a column
    store.changes.listen(head)
    assert head.samples(store.reader(), "gpu", "util_gpu_percent", T, T + 300_000) is None
    assert head.misses == 0 and head.nbytes() == 0
    _check(store, head)
    assert head.misses == 0 and head.nbytes() == 0
    # Held, then asked further back than fits: the store answers that one.
    roomy = Head(budget_bytes=6 * 200 * 16 + 100)
    held = roomy.samples(store.reader(), "gpu", "util_gpu_percent", T + 150_000, T + 300_000)
    assert held is not None and len(held.t) == 6 * 150
    assert roomy.samples(store.reader(), "gpu", "util_gpu_percent", T, T + 300_000) is None
    assert roomy.nbytes() <= 6 * 200 * 16 + 100


def test_retention_says_what_it_deleted(store: Store) -> None:
    head = Head()
    store.changes.listen(head)
    store.ingest([_batch(n, 1, 0, 300) for n in NODES])
    _check(store, head)
    # Retention deletes the raw rows before its cutoff (the first whole minutes here) and says so.
    now = datetime(2026, 11, 1, 0, 4, 30) + timedelta(days=7)
    Retention(store.reader(), Policy(raw=timedelta(days=7)), changes=store.changes).run_once(now)
    left = store.reader().execute("SELECT epoch_ms(min(time)) FROM gpu").fetchall()[0][0]
    assert left >= T + 240_000
    assert _check(store, head) > 0
    held = head.samples(store.reader(), "gpu", "util_gpu_percent", T, T + 300_000)
    assert held is not None and held.t.min() >= T + 240_000


def test_settled_remote_write_samples_reach_the_head(tmp_path: Path) -> None:
    from support.receive import GPU, LATER, Rx, request
    from support.receive import T as RT

    rx = Rx(tmp_path)
    try:
        head = Head()
        rx.store.changes.listen(head)
        inventory = Inventory(["gpu-1"], {"gpu-1": "gpu-1.lab"}, {})

        def temps() -> list[float]:
            got = Engine(Source(rx.store.reader(), inventory=inventory, head=head)).run(
                "DCGM_FI_DEV_GPU_TEMP", RT, RT + 60_000, 15_000
            )
            assert isinstance(got, Vector)
            return got.v[got.ok].tolist()

        assert rx.post(request(("DCGM_FI_DEV_GPU_TEMP", GPU, [(RT, 50), (RT + 15_000, 51)]))) == (204, "")
        rx.staging.settle(LATER)
        assert temps() == [50.0, 51.0, 51.0, 51.0, 51.0]  # held on for the lookback, as Prometheus does
        assert rx.post(request(("DCGM_FI_DEV_GPU_TEMP", GPU, [(RT + 30_000, 60), (RT + 45_000, 61)]))) == (
            204,
            "",
        )
        rx.staging.settle(LATER)
        assert temps() == [50.0, 51.0, 60.0, 61.0, 61.0]
        assert head.misses == 1
    finally:
        rx.staging.close()
        rx.store.close()


@pytest.mark.parametrize("seed", range(12))
def test_per_step_keeps_each_series_newest_sample_at_or_before_each_step(seed: int) -> None:
    """Against the definition, series by series: of the samples in the span, for each step time the
    newest at or before it. Series end and begin inside one step's group (the last of one must stay),
    and samples past the span's end share a group with the last one in it."""
    rng = np.random.default_rng(seed)
    keys: list[tuple[str, str]] = []
    ts: list[np.ndarray] = []
    for i in range(int(rng.integers(1, 6))):
        keys.append((f"n{i}", "0"))
        series = np.sort(rng.choice(np.arange(0, 100_000, 250), int(rng.integers(0, 60)), replace=False))
        if i % 2 and len(ts[-1]) and len(series):  # begins where the one before ended: one step's group
            series = np.r_[ts[-1][-1], series[series > ts[-1][-1]]]
        ts.append(series)
    starts = np.r_[0, np.cumsum([len(t) for t in ts])].astype(np.int64)
    t = np.concatenate(ts).astype(np.int64)
    held = Held(keys, starts, t, t.astype(np.float64) / 7)
    first, step = int(rng.integers(-5_000, 20_000)), int(rng.integers(300, 9_000))
    mint, maxt = sorted(int(x) for x in rng.integers(-1_000, 101_000, 2))
    got = held.per_step(mint, maxt, first, step)
    for i, series in enumerate(ts):
        series = series[(series >= mint) & (series <= maxt)]
        steps = first + step * np.arange((100_000 - first) // step + 2)
        at = np.searchsorted(series, steps, side="right") - 1
        want = np.unique(series[at[at >= 0]])
        assert got.t[got.starts[i] : got.starts[i + 1]].tolist() == want.tolist()
    assert np.array_equal(got.v, got.t / 7)


def test_a_read_that_fails_leaves_what_was_written_to_read_next_time(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A query interrupted at its timeout while the head reads what was written: the next one reads it."""
    import ironsight.collector.promql.head as head_module

    head = Head()
    store.changes.listen(head)
    store.ingest([_batch(n, 1, 0, 150) for n in NODES])
    _check(store, head)
    store.ingest([_batch(n, 2, 150, 150) for n in NODES])
    read = head_module._read

    def interrupted(*args: object) -> object:
        raise RuntimeError("INTERRUPT Error: Interrupted!")

    monkeypatch.setattr(head_module, "_read", interrupted)
    with pytest.raises(RuntimeError, match="Interrupted"):
        head.samples(store.reader(), "gpu", "util_gpu_percent", T, T + 300_000)
    monkeypatch.setattr(head_module, "_read", read)
    held = head.samples(store.reader(), "gpu", "util_gpu_percent", T, T + 300_000)
    assert held is not None and held.t.max() >= T + 299_000
    _check(store, head)


def test_xid_series_from_the_heads_rows_are_the_encoders(store: Store) -> None:
    """The last XID and the XID count at each GPU row: XIDs before the span, inside it (two at one
    microsecond, one at a row's very microsecond), on some GPUs only."""
    head = Head()
    store.changes.listen(head)
    store.ingest([_batch(n, 1, 0, 300) for n in NODES])
    # _batch's row at second s is at T + s * 1000 + (s * 37) % 11 ms: 74 s -> +10 ms.
    store.reader().execute(
        "INSERT INTO gpu_xid_hot (node, device, time, xid) VALUES "
        "('n1', '0', TIMESTAMP '2026-10-31 23:58:00', 13), ('n1', '0', TIMESTAMP '2026-11-01 00:01:14.010', 79), "
        "('n1', '0', TIMESTAMP '2026-11-01 00:02:00.5', 48), ('n1', '0', TIMESTAMP '2026-11-01 00:02:00.5', 31), "
        "('n2', '1', TIMESTAMP '2026-11-01 00:03:30.123456', 94)"
    )
    exprs = ["DCGM_FI_DEV_XID_ERRORS", "ironsight_gpu_xid_events_total{instance=~'n[12]'}",
             "increase(ironsight_gpu_xid_events_total[30s])", "max_over_time(DCGM_FI_DEV_XID_ERRORS[1m])"]  # fmt: skip
    assert _check(store, head, exprs) > 0
    assert head.misses == 1  # the GPU rows, read once
    got = Engine(Source(store.reader(), inventory=INVENTORY, head=head)).run(
        "ironsight_gpu_xid_events_total{instance='n1', gpu='0'}", T + 60_000, T + 180_000, 30_000
    )
    assert isinstance(got, Vector)
    assert got.v[0].tolist() == [1, 2, 2, 4, 4]


def test_a_negative_query_memory_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    from ironsight.collector.main import load

    with pytest.raises(SystemExit) as exc:
        load(["--insecure", "--query-memory", "-1"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "ironsight-collector: error: --query-memory must be 0 (off) or more MiB"
    )
    assert load(["--insecure", "--query-memory", "0"]).query_memory == 0
