"""The simulated job's faults and the scenarios that inject them: which node, which GPUs, when, how hard.

Each scenario draws its events from the seeded generator, and says how the
job is coupled and on which GPU models it runs; workload() turns the job's
phase and the events active at a tick into what each GPU, loader and port
is asked to do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ironsight.offline.simulate.job import JOB_START_S

EventMaker = Callable[[np.random.Generator, int, int, float], list["Event"]]


@dataclass
class Event:
    kind: str  # label kind: data_starvation, thermal, power_cap, network_jitter, straggler, xid
    node: int
    start_s: float
    end_s: float
    gpus: list[int] = field(default_factory=list)  # affected GPUs; empty: the node as a whole
    cause: str = ""
    xid: int = 0
    port: int = 0  # network faults: the rail (the RoCE port beside GPU `port`)
    slower: float = 0.0  # stragglers: how much longer the node's compute takes
    shared: bool = False  # storage starvation on shared storage (the local NVMe stays quiet)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    min_nodes: int
    events: EventMaker
    coupling: str = "either"  # "lockstep", "loose", or drawn per seed
    fleet: str = "h100"  # "h100", or "mixed" (A100 and H200 nodes)
    period_s: tuple[float, float] = (3.0, 14.0)  # healthy iteration, drawn log-uniformly
    # A cluster of several jobs on disjoint nodes instead (cluster.py): (job, scenario, share of the nodes).
    parts: tuple[tuple[str, str, float], ...] = ()
    handoff: bool = False  # the parts one after another on the same nodes, each its share of the run
    # "training" (job.py's phases and iterations), "inference" (a model server: its weights load,
    # then each GPU busy with the requests it is sent, no barrier), or "idle" (no job at all).
    workload: str = "training"


def _none(rng: np.random.Generator, nodes: int, gpus: int, duration: float) -> list[Event]:
    return []


def _window(
    rng: np.random.Generator, duration: float, lo: float = 0.3, hi: float = 0.7
) -> tuple[float, float]:
    start = JOB_START_S + (duration - JOB_START_S) * (lo + rng.uniform(-0.05, 0.05))
    end = JOB_START_S + (duration - JOB_START_S) * (hi + rng.uniform(-0.05, 0.05))
    return start, end


def _starved(cause: str) -> EventMaker:
    def make(rng: np.random.Generator, nodes: int, gpus: int, duration: float) -> list[Event]:
        s, e = _window(rng, duration)
        return [Event("data_starvation", int(rng.integers(nodes)), s, e, list(range(gpus)), cause=cause)]

    return make


def _thermal(rng: np.random.Generator, nodes: int, gpus: int, duration: float) -> list[Event]:
    s, e = _window(rng, duration, 0.25, 0.8)
    return [Event("thermal", int(rng.integers(nodes)), s, e, [int(rng.integers(gpus))])]


def _power_cap(rng: np.random.Generator, nodes: int, gpus: int, duration: float) -> list[Event]:
    s, e = _window(rng, duration)
    return [Event("power_cap", int(rng.integers(nodes)), s, e, list(range(gpus)))]


def _network(cause: str) -> EventMaker:
    def make(rng: np.random.Generator, nodes: int, gpus: int, duration: float) -> list[Event]:
        s, e = _window(rng, duration)
        port = int(rng.integers(gpus))
        return [Event("network_jitter", int(rng.integers(nodes)), s, e, cause=cause, port=port)]

    return make


def _straggler(rng: np.random.Generator, nodes: int, gpus: int, duration: float) -> list[Event]:
    s, e = _window(rng, duration, 0.2, 0.9)
    return [Event("straggler", int(rng.integers(nodes)), s, e, slower=float(rng.uniform(0.11, 0.38)))]


def _starved_h2d(rng: np.random.Generator, nodes: int, gpus: int, duration: float) -> list[Event]:
    s, e = _window(rng, duration)
    gpu = int(rng.integers(gpus))
    return [Event("data_starvation", int(rng.integers(nodes)), s, e, [gpu], cause="host_to_device")]


def _starved_everywhere(rng: np.random.Generator, nodes: int, gpus: int, duration: float) -> list[Event]:
    s, e = _window(rng, duration, 0.35, 0.6)
    return [
        Event("data_starvation", n, s, e, list(range(gpus)), cause="storage", shared=True)
        for n in range(nodes)
    ]


def _xid(rng: np.random.Generator, nodes: int, gpus: int, duration: float) -> list[Event]:
    s, _ = _window(rng, duration, 0.5, 0.5)
    return [Event("xid", int(rng.integers(nodes)), s, duration, [int(rng.integers(gpus))], xid=79)]


def _mixed(rng: np.random.Generator, nodes: int, gpus: int, duration: float) -> list[Event]:
    span = duration - JOB_START_S

    def at(lo: float, hi: float) -> tuple[float, float]:
        return JOB_START_S + span * lo, JOB_START_S + span * hi

    a, b = 0, 1 % nodes
    return [
        Event("data_starvation", a, *at(0.10, 0.25), gpus=list(range(gpus)), cause="storage"),
        Event("thermal", b, *at(0.30, 0.55), gpus=[gpus - 1]),
        Event("network_jitter", a, *at(0.60, 0.72), cause="congestion", port=gpus - 1),
        Event("power_cap", b, *at(0.78, 0.92), gpus=list(range(gpus))),
    ]


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "healthy",
            "a lock-step job: warm-up, checkpoints, evaluation passes, its end; nothing to flag",
            1,
            lambda *_: [],
            coupling="lockstep",
        ),
        Scenario(
            "healthy-loose",
            "a loosely coupled job (each node at its own pace) with the same phases; nothing to flag",
            1,
            lambda *_: [],
            coupling="loose",
        ),
        Scenario(
            "healthy-mixed",
            "A100 nodes (no GPM) beside H200 nodes, each at its own pace; nothing to flag",
            2,
            lambda *_: [],
            coupling="loose",
            fleet="mixed",
        ),
        Scenario(
            "healthy-long-steps",
            "a lock-step job with 15-28 s iterations; nothing to flag",
            1,
            lambda *_: [],
            coupling="lockstep",
            period_s=(15.0, 28.0),
        ),
        Scenario(
            "starved-storage",
            "one node's NVMe saturated by the loader's small reads: io pressure up, its GPUs wait for input",
            1,
            _starved("storage"),
        ),
        Scenario(
            "starved-shared-storage",
            "shared storage saturated: every node's loader stalls on reads, the whole job starves",
            2,
            _starved_everywhere,
        ),
        Scenario(
            "starved-cpu",
            "another process takes one node's cores: loaders behind, run queue over the cores, CPU pressure",
            1,
            _starved("cpu"),
        ),
        Scenario(
            "starved-h2d",
            "one GPU's PCIe link trains down to gen 1 x1: its input transfers run at the link's ceiling",
            1,
            _starved_h2d,
        ),
        Scenario(
            "thermal",
            "one GPU's cooling degrades: temperature to slowdown, SW then HW thermal time, SM clock falls",
            1,
            _thermal,
        ),
        Scenario(
            "power-cap",
            "a node's power limit lowered: SW power cap time grows, clocks fall, temperature normal",
            1,
            _power_cap,
        ),
        Scenario(
            "network-jitter",
            "minutes of RoCE congestion (CNP, ECN in thousands a second) on one rail's port; the job slows",
            2,
            _network("congestion"),
        ),
        Scenario(
            "rail-fault",
            "loss on one rail's port (sequence errors, ACK timeouts) in bursts; the job's all-reduce slows",
            2,
            _network("loss"),
            coupling="lockstep",
        ),
        Scenario(
            "straggler",
            "in a loosely coupled job one node's iterations take 11-38 % longer, no other symptom",
            3,
            _straggler,
            coupling="loose",
        ),
        Scenario(
            "lockstep-straggler",
            "in a lock-step job one node computes 11-38 % longer; its peers wait at every barrier",
            3,
            _straggler,
            coupling="lockstep",
        ),
        Scenario("xid", "an XID 79 on one GPU, then the job stalls with memory still held", 1, _xid),
        Scenario(
            "mixed",
            "storage starvation, thermal, congestion and a power cap at different times and nodes",
            2,
            _mixed,
        ),
        Scenario(
            "multi-job",
            "two jobs on disjoint nodes: a loosely coupled one with a straggler (3-14 s steps) and one "
            "with 15-28 s steps; each node's looks say its job",
            6,
            _none,
            parts=(("train-a", "straggler", 0.5), ("train-b", "healthy-long-steps", 0.5)),
        ),
        Scenario(
            "job-handoff",
            "a loosely coupled job with a straggler for the first half of the run, then, on the same "
            "nodes after a short idle spell, a lock-step job with 15-28 s steps",
            3,
            _none,
            parts=(("train-a", "straggler", 0.5), ("train-c", "healthy-long-steps", 0.5)),
            handoff=True,
        ),
        Scenario(
            "inference",
            "a model server on every GPU: weights load, then 10-45 % utilization following the "
            "requests, memory held, no iterations; nothing to flag",
            1,
            _none,
            workload="inference",
        ),
        Scenario(
            "idle", "nodes with no job: GPUs idle, no memory held; nothing to flag", 1, _none, workload="idle"
        ),
        Scenario(
            "shared-cluster",
            "a loosely coupled training job with a straggler, an inference service at low steady "
            "utilization on a quarter of the nodes, and a quarter idle with no job",
            5,
            _none,
            parts=(("train-a", "straggler", 0.5), ("serve", "inference", 0.25), ("", "idle", 0.25)),
        ),
        Scenario(
            "multi-job-starved",
            "two jobs on disjoint nodes: one starved by its storage, one healthy with 15-28 s steps",
            4,
            _none,
            parts=(("etl-train", "starved-storage", 0.5), ("train-b", "healthy-long-steps", 0.5)),
        ),
    )
}


def active(events: list[Event], kind: str, node: int, t: float) -> Event | None:
    for e in events:
        if e.kind == kind and e.node == node and e.start_s <= t < e.end_s:
            return e
    return None
