"""The column-at-a-time encoder forwards exactly the series and samples the agent's /metrics renderer
would show for the same rows (SeriesBuilder renders them row by row through core/exposition.py)."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ironsight.collector.remote_write import encode
from ironsight.collector.remote_write.encode import Encoder
from ironsight.collector.remote_write.series import Series, SeriesBuilder
from ironsight.core.columnar import TableBuilder, to_arrow
from ironsight.core.schema import TABLES
from ironsight.offline.simulate import simulate
from ironsight.prompb import remote_pb2 as prompb
from ironsight.v1 import telemetry_pb2 as pb

Group = list[tuple[str, pa.Table]]
T0 = 1_764_000_000 * 10**9
DEVICES = {
    "cpu": ["0", "1", "2", "3"],
    "disk": ["nvme0n1", "диск 1"],
    "nic": ["eth0", '"quoted" nic', "網卡:1"],
    "rdma": ["mlx5_0:1", "mlx5_1:1"],
    "hwmon": ["coretemp:temp1", "nvme:Composite"],
    "thermal": ["thermal_zone0"],
    "memory_numa": ["0", "1"],
    "gpu": ["0", "1", "2"],
    "gpu_xid": ["0", "2"],
    "sampler": ["cpu", "gpu"],
}


def _value(rng: random.Random, table: str, field: str, ftype: str) -> float | int | None:
    if rng.random() < 0.1:
        return None  # not sampled
    if table == "cpu" and field in ("core_id", "package_id"):
        return rng.choice([0, 1])  # hyperthreads share cores: throttles are per core
    if ftype == "int":
        return rng.choice([0, 1, 79, 2**40 + 3, 2**61 + 5])  # past 2**53 a float rounds, as float() does
    return rng.choice([0.0, 0.5, 1e-9, 123.456, 3.9e12])


def node_info(node: str, hostname: str = "") -> pb.NodeInfo:
    info = pb.NodeInfo(hostname=hostname or f"host-{node}")
    for gpu in DEVICES["gpu"][:2]:  # GPU 2 has no inventory: its labels are empty, as a scrape's
        info.devices.add(kind="gpu", name=gpu, attrs={"uuid": f"GPU-{node}-{gpu}", "model": "NVIDIA H200"})
    info.devices.add(kind="thermal", name="thermal_zone0", attrs={"type": "x86_pkg_temp"})
    return info


def random_group(rng: random.Random, nodes: list[str], ticks: range) -> Group:
    """Every table and column, odd device names, NULLs, XIDs on a GPU's tick and between ticks."""
    out: Group = []
    for node in nodes:
        for name, table in TABLES.items():
            b = TableBuilder(name)
            for tick in ticks:
                for device in DEVICES.get(name, [""]):
                    if name == "gpu_xid" and rng.random() < 0.7:
                        continue
                    t = T0 + tick * 10**9 + (rng.choice([0, 3 * 10**8]) if name == "gpu_xid" else 0)
                    values = {f.name: _value(rng, name, f.name, f.type) for f in table.fields}
                    if any(v is not None for v in values.values()):
                        b.add(t, device, values)
            if len(b):
                out.append((name, to_arrow(node, b.to_proto())))
    return out


def forwarded(requests: list[tuple[bytes, int]], max_send: int) -> Series:
    got: Series = {}
    for body, count in requests:
        req = prompb.WriteRequest.FromString(body)
        assert sum(len(ts.samples) for ts in req.timeseries) == count <= max_send
        names = [tuple(sorted((lb.name, lb.value) for lb in ts.labels)) for ts in req.timeseries]
        assert len(set(names)) == len(names)  # a series once a request
        for labels, ts in zip(names, req.timeseries, strict=True):
            assert [lb.name for lb in ts.labels] == sorted(lb.name for lb in ts.labels)
            got.setdefault(labels, []).extend((s.timestamp, s.value) for s in ts.samples)
    return got


def both(groups: list[Group], infos: dict[str, pb.NodeInfo], max_send: int) -> tuple[Series, Series]:
    ref_builder, enc = SeriesBuilder({"cluster": "c1"}), Encoder({"cluster": "c1"})
    for node, info in infos.items():
        ref_builder.learn(node, info)
        enc.learn(node, info)
    ref: Series = {}
    requests = []
    for g in groups:
        ref_builder.add(g, ref)
        requests += enc.encode(g, max_send)
    return ref, forwarded(requests, max_send)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32), max_send=st.sampled_from([1, 7, 5000]), n_groups=st.integers(1, 3))
def test_every_table_and_column_forwards_as_a_scrape_renders_it(
    seed: int, max_send: int, n_groups: int
) -> None:
    rng = random.Random(seed)
    nodes = ["n1", "gpu-02.example"]
    groups = [random_group(rng, nodes, range(3 * k, 3 * k + rng.choice([1, 3]))) for k in range(n_groups)]
    ref, got = both(groups, {n: node_info(n) for n in nodes}, max_send)
    assert got == ref
    assert any(dict(k)["__name__"] == "node_cpu_core_throttles_total" for k in got)


def test_simulated_xid_trace_with_state_across_groups() -> None:
    header, batches = simulate("xid", nodes=2, gpus=4, duration_s=120, seed=7, start_ns=T0, batch_s=1.0)
    batch_list = list(batches)
    groups = [[(t.name, to_arrow(b.node_id, t)) for b in batch_list[i : i + 9] for t in b.tables]
              for i in range(0, len(batch_list), 9)]  # fmt: skip
    ref, got = both(groups, {n.node_id: n for n in header.nodes}, 5000)
    assert got == ref
    xids = [v for k, s in got.items() if dict(k)["__name__"] == "DCGM_FI_DEV_XID_ERRORS" for _, v in s if v]
    assert xids  # the scenario's XID reached the series, and stays after its tick
    assert sum(map(len, got.values())) > 100_000


def test_clock_far_off_takes_the_slow_encoder_with_the_same_result() -> None:
    b = TableBuilder("load")
    for k in range(3):
        b.add(10**9 * k + 5 * 10**6, "", {"load1": 0.25 * k, "forks": 10 + k})  # 1970: a 1-byte varint
    group: Group = [("load", to_arrow("old", b.to_proto()))]
    ref, got = both([group], {}, 2)
    assert got == ref and got[(("__name__", "node_load1"), ("cluster", "c1"), ("instance", "old"),
                                ("job", "ironsight"))] == [(5, 0.0), (1005, 0.25), (2005, 0.5)]  # fmt: skip


def test_a_changed_inventory_changes_the_labels_from_then_on() -> None:
    rng = random.Random(3)
    first, second = random_group(rng, ["n1"], range(0, 1)), random_group(rng, ["n1"], range(1, 2))
    enc = Encoder()
    enc.learn("n1", node_info("n1", "old-name"))
    before = forwarded(enc.encode(first, 5000), 5000)
    enc.learn("n1", node_info("n1", "new-name"))
    after = forwarded(enc.encode(second, 5000), 5000)
    hosts = lambda s: {dict(k).get("hostname") for k in s} - {None}  # noqa: E731
    assert hosts(before) == {"old-name"} and hosts(after) == {"new-name"}


def test_label_cache_starts_again_past_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(encode, "MAX_LABEL_BYTES", 10_000)
    rng = random.Random(5)
    groups = [random_group(rng, ["n1", "n2"], range(k, k + 1)) for k in range(4)]
    ref, got = both(groups, {}, 100)
    assert got == ref
