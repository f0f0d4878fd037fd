"""What the job asks of every node in one tick: each GPU's next iteration, and the host's side of it.

The GPUs' side is a Shape for the iterations (compute time, input supply
time, all-reduce time, barrier groups); the host's is what the loader, the
ranks, the disks and the ports do meanwhile, given how far the GPUs got.
Faults enter here: a starved input pipeline supplies slower than the GPUs
compute, a straggler and a throttled GPU compute longer, a bad port slows
the all-reduce of everyone who meets it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ironsight.offline.simulate.hardware import (
    H2D_PER_GPU,
    LOADER_READ_PER_GPU,
    NVME_READ_CEILING,
    NVME_WRITE_CEILING,
    NodeState,
    link_bytes_per_s,
)
from ironsight.offline.simulate.job import (
    CHECKPOINT,
    EVAL,
    LOAD,
    TRAIN,
    WARMUP,
    Fractions,
    Plan,
    Shape,
    groups,
)
from ironsight.offline.simulate.scenarios import Event, active

DEGRADED_LINK = (1, 1)  # gen, width: a link that trained down


@dataclass
class Faults:
    """The events active on each node at one tick."""

    starve: list[Event | None]
    straggle: list[Event | None]
    network: list[Event | None]
    cap: list[Event | None]
    heat: list[Event | None]


def faults_at(events: list[Event], nodes: int, t: float) -> Faults:
    def each(kind: str) -> list[Event | None]:
        return [active(events, kind, n, t) for n in range(nodes)]

    return Faults(
        each("data_starvation"), each("straggler"), each("network_jitter"), each("power_cap"), each("thermal")
    )


def shape(plan: Plan, ph: int, states: list[NodeState], f: Faults, rng: np.random.Generator) -> Shape:
    """Each GPU's next iteration under this phase and these faults."""
    nodes, gpus = len(states), len(states[0].clock)
    speed = np.array([[st.gpu.speed] * gpus for st in states])
    clock = np.stack([st.clock for st in states])
    if ph == EVAL:  # sub-second steps, bound by the loader, with no all-reduce to speak of
        step = plan.eval_step_s
        compute = np.full((nodes, gpus), 0.55 * step) / speed / clock
        supply = np.full((nodes, gpus), 0.8 * step) / speed
        comm = np.full((nodes, gpus), 0.02 * step)
    else:
        compute = plan.period_s * (1 - plan.comm_fraction) / speed / clock
        supply = 0.3 * compute
        comm = np.full((nodes, gpus), plan.period_s * plan.comm_fraction)
    for n, st in enumerate(states):
        if (e := f.straggle[n]) is not None:  # its iterations take `slower` longer: all of it compute
            compute[n] *= 1 + e.slower / (1 - plan.comm_fraction)
        if (e := f.network[n]) is not None:
            # The all-reduce is as slow as its slowest link: everyone who meets this port waits.
            comm[n] *= 1.6 if e.cause == "loss" else 1.4
        if (e := f.starve[n]) is not None:  # training and evaluation alike wait for the input
            if e.cause == "host_to_device":
                st.link_gen[e.gpus], st.link_width[e.gpus] = DEGRADED_LINK
                link = link_bytes_per_s(st.link_gen, st.link_width)
                need = compute[n, e.gpus] * H2D_PER_GPU / link[e.gpus]
            else:
                need = compute[n, e.gpus] / (0.3 + 0.12 * rng.random())
            supply[n, e.gpus] = np.maximum(supply[n, e.gpus], need)
        elif st.link_gen.min() < 4:
            st.link_gen[:], st.link_width[:] = (5 if st.gpu.gpm else 4), 16  # the link retrained
    return Shape(compute, supply, comm, groups(plan, ph, nodes, gpus), jitter=0.25 if ph == EVAL else 0.01)


@dataclass
class Host:
    """One node's host side in one tick."""

    ranks_busy: float  # each rank's core: spinning while it waits on the GPU
    loader_busy: float  # the loader workers' cores
    other_busy: float  # the rest: the OS, compilation in warm-up, or a process taking them
    iowait: float  # of the loader's cores
    run_queue: float  # runnable tasks, against the node's cores
    cpu_some: float  # CPU pressure (PSI some) over the tick
    read_bps: float
    write_bps: float
    io_busy: float  # the NVMe's time busy
    io_some: float
    io_full: float
    dirty_gib: float


def host(ph: int, st: NodeState, cores: int, fr: Fractions | None, n: int, starve: Event | None,
         rng: np.random.Generator) -> Host:  # fmt: skip
    """The host side of node n in this tick, given how much its GPUs computed (fr)."""
    gpus = len(st.clock)
    running = ph in (LOAD, WARMUP, TRAIN, CHECKPOINT, EVAL)
    computing = float(fr.compute[n].mean()) if fr is not None else 0.0
    h = Host(
        ranks_busy=0.99 if running else 0.01,
        loader_busy=min(1.0, 0.45 * computing + 0.02),
        other_busy=0.03 + (0.5 if ph == WARMUP else 0.0),
        iowait=0.005,
        run_queue=gpus * (1.0 if running else 0.0) + 4 * gpus * 0.45 * computing + 1,
        cpu_some=0.01 + 0.02 * computing,
        read_bps=LOADER_READ_PER_GPU * gpus * computing,
        write_bps=1e6,
        io_busy=LOADER_READ_PER_GPU * gpus * computing / NVME_READ_CEILING,
        io_some=0.002,
        io_full=0.0,
        dirty_gib=0.05,
    )
    if ph == LOAD:  # the resume checkpoint, read at the disk's ceiling while GPU memory fills
        h.read_bps, h.io_busy, h.io_some, h.io_full, h.iowait = NVME_READ_CEILING * 0.95, 0.99, 0.3, 0.08, 0.1
    elif ph == CHECKPOINT:  # every rank writes its shard: the disks at full write speed
        h.write_bps, h.io_busy, h.io_some, h.io_full = NVME_WRITE_CEILING * 0.97, 0.99, 0.2, 0.04
        h.dirty_gib = 6.0
    if starve is not None and starve.cause == "storage":
        # Small random reads: the NVMe (or the shared filesystem) busy all the time at a
        # fraction of its bandwidth; the loader's tasks wait on it.
        h.iowait, h.io_some, h.io_full = 0.25, 0.6, 0.35 + 0.05 * rng.random()
        if starve.shared:
            h.read_bps = h.io_busy = 0.0
        else:
            h.io_busy = 0.99
    elif starve is not None and starve.cause == "cpu":
        h.loader_busy, h.other_busy = 1.0, 1.0
        h.run_queue = cores * (1.4 + 0.2 * rng.random())
        h.cpu_some = 0.55 + 0.15 * rng.random()
    return h
