"""Several jobs at once on disjoint nodes: each part simulated as its own job, its nodes named
after the job, the parts' batches interleaved in time, and each node's batches carrying the
look an agent would send (every GPU in its job; at the start and once a minute)."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator

from ironsight.offline.simulate.scenarios import Scenario
from ironsight.v1 import telemetry_pb2 as pb

Simulate = Callable[..., tuple[pb.TraceHeader, Iterator[pb.Batch]]]
LOOK_EVERY_NS = 60 * 10**9


def split(sc: Scenario, nodes: int, minimum: Callable[[str], int]) -> list[int]:
    """Nodes per part: its share, at least what its scenario needs."""
    return [max(minimum(scenario), round(nodes * share)) for _, scenario, share in sc.parts]


def simulate_cluster(
    run: Simulate, sc: Scenario, counts: list[int], gpus: int, seed: int, **kw: float | int
) -> tuple[pb.TraceHeader, Iterator[pb.Batch]]:
    parts = []
    for k, ((job, scenario, _), nodes) in enumerate(zip(sc.parts, counts, strict=True)):
        header, batches = run(scenario, nodes=nodes, gpus=gpus, seed=seed * 101 + k, **kw)
        parts.append((job, header, batches))
    header = pb.TraceHeader(
        interval_s=parts[0][1].interval_s,
        created_ns=parts[0][1].created_ns,
        source=f"simulate scenario={sc.name} seed={seed} jobs="
        + ",".join(f"{job}:{h.source.split()[1]}" for job, h, _ in parts),
    )
    for job, h, _ in parts:
        for info in h.nodes:
            renamed = header.nodes.add()
            renamed.CopyFrom(info)
            renamed.node_id = renamed.hostname = _name(job, info.node_id)
    return header, _interleave(header, parts, gpus)


def simulate_handoff(
    run: Simulate,
    sc: Scenario,
    nodes: int,
    gpus: int,
    seed: int,
    duration_s: float,
    start_ns: int,
    **kw: float,
) -> tuple[pb.TraceHeader, Iterator[pb.Batch]]:
    """The parts one after another on the same nodes, each for its share of the run: a job ends and
    the next starts (each with its own start and end, so the nodes idle in between)."""
    parts, at = [], start_ns
    for k, (job, scenario, share) in enumerate(sc.parts):
        length = duration_s * share
        h, batches = run(
            scenario, nodes=nodes, gpus=gpus, seed=seed * 101 + k, duration_s=length, start_ns=at, **kw
        )
        parts.append((job, h, batches))
        at += round(length * 1e9)
    header = pb.TraceHeader(
        interval_s=parts[0][1].interval_s,
        created_ns=start_ns,
        source=f"simulate scenario={sc.name} seed={seed} jobs="
        + ",".join(f"{job}:{h.source.split()[1]}" for job, h, _ in parts),
    )
    header.nodes.extend(parts[0][1].nodes)
    return header, _handed(header, parts, gpus)


def _handed(
    header: pb.TraceHeader, parts: list[tuple[str, pb.TraceHeader, Iterator[pb.Batch]]], gpus: int
) -> Iterator[pb.Batch]:
    """Each part's batches as the same agents on the same nodes send them: one boot, one sequence,
    the nodes' own hardware; each node's look at its jobs changes with the part."""
    first = {info.node_id: info for info in header.nodes}
    boots: dict[str, str] = {}
    seqs: dict[str, int] = {}
    for job, h, batches in parts:
        looked: dict[str, int] = {}  # a new job: each node looks at once
        for batch in batches:
            node = batch.node_id
            batch.boot_id = boots.setdefault(node, batch.boot_id)
            seqs[node] = batch.seq = seqs.get(node, 0) + 1
            if batch.HasField("node"):
                batch.node.CopyFrom(first[node])
            stamp(batch, job, gpus, looked)
            yield batch
        header.labels.extend(h.labels)


def _name(job: str, node: str) -> str:
    return f"{job or 'idle'}-{node.removeprefix('sim-')}"


def _interleave(
    header: pb.TraceHeader, parts: list[tuple[str, pb.TraceHeader, Iterator[pb.Batch]]], gpus: int
) -> Iterator[pb.Batch]:
    looked: dict[str, int] = {}
    streams = [_tagged(job, batches) for job, _, batches in parts]
    for job, batch in heapq.merge(*streams, key=lambda jb: _first_ns(jb[1])):
        batch.node_id = _name(job, batch.node_id)
        batch.boot_id = f"{job}-{batch.boot_id}"
        stamp(batch, job, gpus, looked)
        yield batch
    for job, h, _ in parts:  # a part's labels are complete once its batches are read
        for label in h.labels:
            renamed = header.labels.add()
            renamed.CopyFrom(label)
            renamed.node = _name(job, label.node)


def stamp(batch: pb.Batch, job: str, gpus: int, looked: dict[str, int]) -> None:
    """The look at the node's jobs an agent sends: every GPU in job (none: no job), at the start
    and each minute."""
    now = _first_ns(batch)
    if now - looked.get(batch.node_id, -LOOK_EVERY_NS) >= LOOK_EVERY_NS:
        looked[batch.node_id] = now
        o = batch.ownership
        o.time_ns, o.gpus[:] = now, [str(g) for g in range(gpus)]
        for g in range(gpus if job else 0):
            o.jobs.add(gpu=str(g), job=job, source="slurm", attrs={"user": "sim"})


def _tagged(job: str, batches: Iterator[pb.Batch]) -> Iterator[tuple[str, pb.Batch]]:
    for batch in batches:
        yield job, batch


def _first_ns(batch: pb.Batch) -> int:
    return min(int(t.time_ns[0]) for t in batch.tables if len(t.time_ns))
