"""The simulated job and its faults: a synchronous data-parallel training run, and where each fault is injected.

Each scenario draws its events (which node, which GPUs, when) from the seeded
generator; workload() turns the job's phase and the events active at a tick
into what the node's GPUs, loader and fabric are asked to do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ironsight.offline.simulate.hardware import LOADER_DEMAND_PER_GPU, NVME_READ_CEILING

# Long enough for 1 s sampling to resolve (Nyquist): a 1.6 s period aliases so that a
# slower node looks faster. Large-model steps take seconds.
ITERATION_S = 4.0
COMPUTE_FRACTION = 0.78  # of an iteration; the rest is the all-reduce
JOB_START_S = 60.0
CHECKPOINT_EVERY_S, CHECKPOINT_S = 600.0, 25.0
EVAL_EVERY_S, EVAL_S = 900.0, 40.0


@dataclass
class Event:
    kind: str  # label kind: data_starvation, thermal, power_cap, network_jitter, straggler, xid
    node: int
    start_s: float
    end_s: float
    gpus: list[int] = field(default_factory=list)  # affected GPUs; empty: the node as a whole
    cause: str = ""
    xid: int = 0


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    min_nodes: int
    events: Callable[[np.random.Generator, int, int, float], list[Event]]


def _window(
    rng: np.random.Generator, duration: float, lo: float = 0.3, hi: float = 0.7
) -> tuple[float, float]:
    start = JOB_START_S + (duration - JOB_START_S) * (lo + rng.uniform(-0.05, 0.05))
    end = JOB_START_S + (duration - JOB_START_S) * (hi + rng.uniform(-0.05, 0.05))
    return start, end


def _starved(cause: str) -> Callable[[np.random.Generator, int, int, float], list[Event]]:
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


def _jitter(rng: np.random.Generator, nodes: int, gpus: int, duration: float) -> list[Event]:
    s, e = _window(rng, duration)
    return [Event("network_jitter", int(rng.integers(nodes)), s, e)]


def _straggler(rng: np.random.Generator, nodes: int, gpus: int, duration: float) -> list[Event]:
    s, e = _window(rng, duration, 0.2, 0.9)
    return [Event("straggler", int(rng.integers(nodes)), s, e)]


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
        Event("network_jitter", a, *at(0.60, 0.72)),
        Event("power_cap", b, *at(0.78, 0.92), gpus=list(range(gpus))),
    ]


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "healthy",
            "periodic training with checkpoints, evaluation phases, an idle start; nothing to flag",
            1,
            lambda *_: [],
        ),
        Scenario(
            "starved-storage",
            "NVMe at its read ceiling, io pressure up, GPU busy time down on one node",
            1,
            _starved("storage"),
        ),
        Scenario(
            "starved-cpu",
            "data-loader cores saturated while GPU busy time drops on one node",
            1,
            _starved("cpu"),
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
            "RoCE congestion (CNP, ECN) and loss bursts on one node's NIC; its iterations slow and uneven",
            2,
            _jitter,
        ),
        Scenario(
            "straggler",
            "one node's iterations consistently slower than its peers', no other symptom",
            2,
            _straggler,
        ),
        Scenario("xid", "an XID 79 on one GPU, then the job stalls with memory still held", 1, _xid),
        Scenario(
            "mixed",
            "storage starvation, thermal, network jitter and a power cap at different times and nodes",
            2,
            _mixed,
        ),
    )
}


def active(events: list[Event], kind: str, node: int, t: float) -> Event | None:
    for e in events:
        if e.kind == kind and e.node == node and e.start_s <= t < e.end_s:
            return e
    return None


def busy_shape(t: float, dt: float, period: float, offset: float) -> float:
    """Fraction of [t, t+dt) a GPU is busy: compute phases at 100 %, all-reduce at 25 %."""
    samples = 16
    s = t + (np.arange(samples) + 0.5) * dt / samples
    phase = ((s + offset) / period) % 1.0
    return float(np.where(phase < COMPUTE_FRACTION, 1.0, 0.25).mean())


@dataclass(frozen=True)
class Phase:
    """Where the job is at one tick, the same on every node."""

    job: bool  # running (after the idle start, before an XID stalls it)
    checkpoint: bool
    evaluating: bool
    held: bool  # the job holds its GPU and host memory, stalled or not


def phase(t: float, xid_stall_at: float) -> Phase:
    job = t >= JOB_START_S and t < xid_stall_at
    checkpoint = job and (t - JOB_START_S) % CHECKPOINT_EVERY_S >= CHECKPOINT_EVERY_S - CHECKPOINT_S
    evaluating = job and not checkpoint and (t - JOB_START_S) % EVAL_EVERY_S >= EVAL_EVERY_S - EVAL_S
    return Phase(job, checkpoint, evaluating, held=t >= JOB_START_S)


@dataclass
class Workload:
    """What the job asks of one node in one tick, and the faults active on it then."""

    busy: float  # fraction of the tick the GPUs compute
    comm: float  # fraction of the tick the all-reduce runs
    demand: float  # bytes a second the data loader reads
    loader_busy: float  # fraction of the loader's cores busy
    io_busy: float  # fraction of the NVMe's read ceiling in use
    starve: Event | None
    straggle: Event | None
    jitter: Event | None


def workload(
    events: list[Event],
    n: int,
    t: float,
    dt: float,
    ph: Phase,
    offset: float,
    gpus: int,
    rng: np.random.Generator,
) -> Workload:
    straggle = active(events, "straggler", n, t)
    jitter = active(events, "network_jitter", n, t)
    period = ITERATION_S * (1.3 if straggle else 1.0)
    if jitter:
        period *= 1.3 + 0.25 * rng.random()  # slower and uneven
    busy = busy_shape(t, dt, period, offset) if ph.job else 0.0
    comm = 0.0 if not ph.job or ph.evaluating else 1.0 - COMPUTE_FRACTION
    if ph.checkpoint:
        busy, comm = 0.03, 0.0
    elif ph.evaluating:
        busy *= 0.6
    starve = active(events, "data_starvation", n, t)
    demand = LOADER_DEMAND_PER_GPU * gpus * busy
    loader_busy = min(1.0, 0.35 * busy / max(busy, 1e-9)) if ph.job else 0.02
    io_busy = demand / NVME_READ_CEILING
    if starve is not None:
        ceiling = 0.45
        busy *= ceiling  # the GPUs wait for data most of the time
        if starve.cause == "storage":
            demand, io_busy = NVME_READ_CEILING * (0.97 + 0.03 * rng.random()), 0.99
        else:
            demand, loader_busy = LOADER_DEMAND_PER_GPU * gpus * busy, 0.995
    return Workload(busy, comm, demand, loader_busy, io_busy, starve, straggle, jitter)
