"""The training job: its phases over the run, and each GPU's iterations within them.

A job starts idle, reads its resume checkpoint (GPU memory filling), warms
up (compilation and autotuning: short erratic kernels), then trains, with a
checkpoint save every few minutes (every GPU idle together while the disks
write) and an evaluation pass now and then (sub-second steps, no all-reduce,
lower utilization), and ends (GPUs idle, then memory freed). Durations follow
published descriptions of large training runs, scaled down for short traces.

An iteration on each GPU is: waiting for input (no kernel runs), compute,
waiting at the all-reduce's barrier for the slowest member (NCCL's kernel
spins: NVML counts the GPU busy, at low power and SM activity), then the
all-reduce itself. In a lock-step job every GPU of every node meets at each
barrier; in a loosely coupled one only the GPUs of a node do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

IDLE, LOAD, WARMUP, TRAIN, CHECKPOINT, EVAL, DONE, RELEASED = range(8)
JOB_START_S = 60.0
ITERATING = (TRAIN, EVAL)


@dataclass(frozen=True)
class Plan:
    """One job's shape, drawn per trace."""

    coupling: str  # "lockstep" or "loose"
    period_s: float  # a healthy training iteration on the fastest GPU model
    comm_fraction: float  # share of the iteration in the all-reduce
    load_s: float
    warmup_s: float
    checkpoint_every_s: float
    checkpoint_s: float
    eval_every_s: float
    eval_s: float
    eval_step_s: float
    end_s: float  # training stops
    release_s: float  # memory freed
    stall_s: float = float("inf")  # an XID hangs the job here

    @property
    def train_start_s(self) -> float:
        return JOB_START_S + self.load_s + self.warmup_s


def draw_plan(
    rng: np.random.Generator, duration: float, coupling: str, period_s: tuple[float, float] = (3.0, 14.0)
) -> Plan:
    scale = min(1.0, duration / 1800)
    lo, hi = period_s
    return Plan(
        coupling=coupling,
        period_s=float(np.exp(rng.uniform(np.log(lo), np.log(hi)))),
        comm_fraction=float(rng.uniform(0.15, 0.3)),
        load_s=float(rng.uniform(20, 45)) * scale,
        warmup_s=float(rng.uniform(30, 75)) * scale,
        checkpoint_every_s=float(rng.uniform(420, 600)) * scale,
        checkpoint_s=float(rng.uniform(30, 60)) * max(scale, 0.5),
        eval_every_s=float(rng.uniform(650, 850)) * scale,
        eval_s=float(rng.uniform(60, 150)) * max(scale, 0.4),
        eval_step_s=float(rng.uniform(0.35, 0.7)),
        end_s=duration - 45 * scale,
        release_s=duration - 20 * scale,
    )


def phase(plan: Plan, t: float) -> int:
    if t < JOB_START_S:
        return IDLE
    if t >= plan.release_s:
        return RELEASED
    if t >= plan.end_s or t >= plan.stall_s:
        return DONE
    if t < JOB_START_S + plan.load_s:
        return LOAD
    u = t - plan.train_start_s
    if u < 0:
        return WARMUP
    c, e = plan.checkpoint_every_s, plan.eval_every_s
    if u >= c - plan.checkpoint_s and u % c >= c - plan.checkpoint_s:
        return CHECKPOINT
    if u >= e - plan.eval_s and u % e >= e - plan.eval_s:
        return EVAL
    return TRAIN


@dataclass
class Shape:
    """What each GPU's next iteration takes, (nodes, gpus) each, and who meets at its barrier."""

    compute_s: np.ndarray
    supply_s: np.ndarray  # time to bring in the iteration's input; prefetch overlaps it with compute
    comm_s: np.ndarray
    group: np.ndarray  # GPUs with the same number meet at the barrier
    jitter: float = 0.01  # relative spread of one iteration's times


@dataclass
class Fractions:
    """Share of one tick each GPU spent in each part of its iterations, (nodes, gpus) each."""

    data: np.ndarray
    compute: np.ndarray
    wait: np.ndarray
    comm: np.ndarray

    @property
    def kernel(self) -> np.ndarray:
        """What NVML calls busy: any kernel running, NCCL's spinning included."""
        busy: np.ndarray = self.compute + self.wait + self.comm
        return busy


@dataclass
class Iterations:
    """Each GPU's iterations laid end to end; fractions of each tick spent in each part."""

    nodes: int
    gpus: int
    clock: np.ndarray = field(init=False)  # when each GPU's next iteration starts
    rounds: list[np.ndarray] = field(default_factory=list)  # (5, N, G) boundaries of generated iterations

    def __post_init__(self) -> None:
        self.clock = np.zeros((self.nodes, self.gpus))

    def pause(self, until: float) -> None:
        """No iterations before `until` (a phase without them); the ones under way finish."""
        self.clock = np.maximum(self.clock, until)

    def tick(self, t: float, dt: float, shape: Shape, rng: np.random.Generator) -> Fractions:
        end = t + dt
        self.clock = np.maximum(self.clock, t - dt)  # after a pause, start now
        group = shape.group.ravel()
        while True:
            # A barrier group starts together, once its latest member is free.
            start = self._group_max(self.clock.ravel(), group).reshape(self.clock.shape)
            need = start < end
            if not need.any():
                break
            jitter = np.clip(1 + rng.normal(0, shape.jitter, self.clock.shape), 0.3, 3)
            compute = shape.compute_s * jitter
            ready = np.maximum(compute, shape.supply_s * jitter)  # input prefetched during compute
            data = ready - compute
            meet = self._group_max(ready.ravel(), group).reshape(ready.shape)
            comm = self._group_max(shape.comm_s.ravel(), group).reshape(ready.shape)
            b = np.stack([start, start + data, start + ready, start + meet, start + meet + comm])
            b[:, ~need] = np.nan
            self.rounds.append(b)
            self.clock = np.where(need, start + meet + comm, self.clock)
        parts = np.zeros((4, self.nodes, self.gpus))
        keep = []
        for b in self.rounds:
            lo, hi = np.maximum(b[:-1], t), np.minimum(b[1:], end)
            parts += np.nan_to_num(np.clip(hi - lo, 0, None))
            if np.nanmax(b[-1]) > end:
                keep.append(b)
        self.rounds = keep
        parts /= dt
        return Fractions(parts[0], parts[1], parts[2], parts[3])

    @staticmethod
    def _group_max(values: np.ndarray, group: np.ndarray) -> np.ndarray:
        top = np.full(group.max() + 1, -np.inf)
        np.maximum.at(top, group, values)
        out: np.ndarray = top[group]
        return out


def groups(plan: Plan, ph: int, nodes: int, gpus: int) -> np.ndarray:
    """Who meets at the barrier: the whole job (lock-step), each node (loose), each GPU (evaluation)."""
    if ph == EVAL:
        return np.arange(nodes * gpus).reshape(nodes, gpus)
    if plan.coupling == "lockstep":
        return np.zeros((nodes, gpus), dtype=int)
    return np.repeat(np.arange(nodes), gpus).reshape(nodes, gpus)
