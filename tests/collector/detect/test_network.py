"""Network jitter: congestion and loss on one NIC, held long enough, not everywhere at once."""

from __future__ import annotations

import json
import time
from pathlib import Path

import duckdb
import pytest

from ironsight.collector.detect.findings import detect
from ironsight.collector.store import Store
from ironsight.core.columnar import TableBuilder
from ironsight.v1 import telemetry_pb2 as pb

from support.traces import WHOLE, detect_recent, overlaps, own, simulated


@pytest.mark.slow
@pytest.mark.parametrize(
    ("scenario", "seed", "cause"), [("network-jitter", 707, "congestion"), ("rail-fault", 808, "loss")]
)
def test_network_jitter_on_the_labelled_port_only(
    tmp_path: Path, scenario: str, seed: int, cause: str
) -> None:
    header, con = simulated(tmp_path, scenario, seed, nodes=3)
    [label] = [lb for lb in header.labels if lb.kind == "network_jitter"]
    found = [f for f in detect(con, *WHOLE).to_pylist() if f["kind"] == "network_jitter"]
    # One finding on the one bad rail port of the eight a node has, whole: loss bursts bridged.
    assert [(f["node"], f["device"]) for f in found] == [(label.node, label.device)]
    assert overlaps(found[0], label) and found[0]["cause"] == cause
    peak = json.loads(str(found[0]["evidence"]))["peak"]
    if cause == "loss":
        assert found[0]["severity"] == "critical" and peak["out_of_sequence"] > 0
    else:
        assert found[0]["severity"] == "warning" and peak["congestion_per_s"] > 1000


def rdma_store(
    tmp_path: Path, cnp_per_s: list[float], peers: int = 3, peer_cnp: float = 2.0
) -> duckdb.DuckDBPyConnection:
    """Ports on several nodes, one sample a second; node n0's CNP rate follows cnp_per_s."""
    store = Store(tmp_path / "net.duckdb")
    t0 = int(time.time()) // 60 * 60 * 10**9 - 3600 * 10**9
    batches = []
    for n in range(peers + 1):
        b = TableBuilder("rdma")
        total = 0.0
        for i, rate in enumerate(cnp_per_s):
            total += rate if n == 0 else peer_cnp
            b.add(
                t0 + i * 10**9,
                "mlx5_0:1",
                {"np_cnp_sent": int(total), "out_of_sequence": 0, "packet_seq_err": 0},
            )
        batch = pb.Batch(node_id=f"n{n}", boot_id="b", seq=1, interval_s=1.0)
        batch.tables.append(b.to_proto())
        batches.append(batch)
    store.ingest(batches)
    store.close()
    return duckdb.connect(str(tmp_path / "net.duckdb"))


@pytest.mark.slow
def test_congestion_must_be_held_for_two_steps(tmp_path: Path) -> None:
    # 15 minutes of baseline at 2/s, then 5 minutes at 500/s.
    long = [2.0] * 900 + [500.0] * 300 + [2.0] * 300
    found_long = [f for f in detect_recent(rdma_store(tmp_path, long)) if f["kind"] == "network_jitter"]
    assert [(f["node"], f["cause"], f["severity"]) for f in found_long] == [("n0", "congestion", "warning")]
    peak = json.loads(str(found_long[0]["evidence"]))["peak"]
    assert peak["congestion_per_s"] >= 10 * peak["own_baseline_per_s"] and peak["peer_baseline_per_s"] < 10
    blip_dir = tmp_path / "blip"
    blip_dir.mkdir()
    blip = [2.0] * 902 + [500.0] * 6 + [2.0] * 300  # one burst of 6 s inside one step: not held
    assert [f for f in detect_recent(rdma_store(blip_dir, blip)) if f["kind"] == "network_jitter"] == []


def test_congestion_everywhere_is_not_one_nics_jitter(tmp_path: Path) -> None:
    rates = [2.0] * 900 + [500.0] * 300
    # Every port congested alike: the peers' baseline rises with it.
    con = rdma_store(tmp_path, rates, peers=3, peer_cnp=0.0)
    assert [f["node"] for f in detect_recent(con) if f["kind"] == "network_jitter"] == ["n0"]
    same = tmp_path / "same"
    same.mkdir()
    store = Store(same / "net.duckdb")
    t0 = int(time.time()) // 60 * 60 * 10**9 - 3600 * 10**9
    batches = []
    for n in range(4):
        b = TableBuilder("rdma")
        total = 0.0
        for i, rate in enumerate(rates):
            total += rate
            b.add(t0 + i * 10**9, "mlx5_0:1", {"np_cnp_sent": int(total)})
        batch = pb.Batch(node_id=f"n{n}", boot_id="b", seq=1, interval_s=1.0)
        batch.tables.append(b.to_proto())
        batches.append(batch)
    store.ingest(batches)
    store.close()
    assert [
        f for f in detect_recent(duckdb.connect(str(same / "net.duckdb"))) if f["kind"] == "network_jitter"
    ] == []


@pytest.mark.slow
def test_long_congestion_stays_one_finding_for_as_long_as_it_lasts(tmp_path: Path) -> None:
    """12 minutes at hundreds of times the peers: the port's own baseline must not learn the fault and let it go."""
    rates = [2.0] * 900 + [500.0] * 720 + [2.0] * 300
    found = [f for f in detect_recent(rdma_store(tmp_path, rates)) if f["kind"] == "network_jitter"]
    assert [(f["node"], f["cause"]) for f in found] == [("n0", "congestion")]
    lasted = (found[0]["end_time"] - found[0]["start_time"]).total_seconds()
    assert 700 <= lasted <= 780, lasted  # the whole fault, give or take the windows at its edges


@pytest.mark.slow
def test_congestion_is_judged_against_the_ports_of_the_same_job(tmp_path: Path) -> None:
    """A job whose all-reduce always congests (400 CNP/s on every port) beside a quiet one (1/s):
    a quiet job's port rising to 300/s is far above its own job's ports, though not above the
    fleet's median; the busy job's ports, at their usual rate, are nobody's fault."""
    store = Store(tmp_path / "net.duckdb")
    t0 = int(time.time()) // 60 * 60 * 10**9 - 3600 * 10**9
    rates = {
        "busy-0": 400.0,
        "busy-1": 400.0,
        "busy-2": 400.0,
        "quiet-0": 1.0,
        "quiet-1": 1.0,
        "quiet-2": 1.0,
    }
    batches = []
    for n, (node, base) in enumerate(rates.items()):
        b, total = TableBuilder("rdma"), 0.0
        for i in range(1500):
            total += 300.0 if node == "quiet-0" and i >= 900 else base
            b.add(t0 + i * 10**9, "mlx5_0:1", {"np_cnp_sent": int(total), "out_of_sequence": 0})
        batch = pb.Batch(node_id=node, boot_id="b", seq=n + 1, interval_s=1.0)
        batch.tables.append(b.to_proto())
        batches.append(batch)
    store.ingest(batches)
    store.close()
    con = duckdb.connect(str(tmp_path / "net.duckdb"))
    # One job for the whole fleet (no job known): the quiet port's 300/s is under 10x the median.
    assert [f for f in detect_recent(con) if f["kind"] == "network_jitter"] == []
    own(con, {node: node.split("-")[0] for node in rates}, gpus="01", table="rdma")
    found = [f for f in detect_recent(con) if f["kind"] == "network_jitter"]
    assert [(f["node"], f["device"], f["cause"], f["job"]) for f in found] == [
        ("quiet-0", "mlx5_0:1", "congestion", "quiet")
    ]
    peak = json.loads(str(found[0]["evidence"]))["peak"]
    assert peak["peer_baseline_per_s"] == pytest.approx(1.0, abs=0.2) and peak["congestion_per_s"] >= 290
