"""A scenario simulator: labelled multi-node traces of a training job as real ones run.

Every value is a function of the simulated state, never independent noise:
each GPU's iterations (input wait, compute, the barrier, the all-reduce)
drive its NVML utilization, SM activity and power; power drives temperature
(a first-order thermal model); temperature and power limits drive throttling
and clocks, and clocks how long the next compute takes; the loader, the
ranks' spinning cores, the disks and one RoCE port per GPU follow the job's
phase (warm-up, training, checkpoints, evaluation, its end). Labels mark
where each injected fault really shows, for scoring detectors. Same
arguments and seed, same bytes.

The parts: hardware (GPU models and their physics), job (phases and
iterations), scenarios (faults), workload (what a tick asks of each node),
emission (rows and batches), labels (where faults show). This module runs
them tick by tick; the order of the generator's draws is part of the output.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from ironsight.offline.simulate.cluster import simulate_cluster, simulate_handoff, split, stamp
from ironsight.offline.simulate.emission import Emitter, fabric_rows, gpu_rows, host_rows
from ironsight.offline.simulate.hardware import (
    A100,
    H2D_PER_GPU,
    H100,
    H200,
    Gpu,
    NodeState,
    gpu_step,
    link_bytes_per_s,
    new_node,
)
from ironsight.offline.simulate.job import (
    IDLE,
    ITERATING,
    JOB_START_S,
    LOAD,
    RELEASED,
    TRAIN,
    WARMUP,
    Fractions,
    Iterations,
    Plan,
    draw_plan,
    phase,
)
from ironsight.offline.simulate.labels import mark_faults
from ironsight.offline.simulate.scenarios import SCENARIOS, Event, Scenario
from ironsight.offline.simulate.serving import Serving, serving_phase
from ironsight.offline.simulate.workload import faults_at, host, shape
from ironsight.v1 import telemetry_pb2 as pb

__all__ = ["SCENARIOS", "job_plan", "simulate"]


def simulate(
    scenario: str,
    nodes: int = 2,
    gpus: int = 8,
    duration_s: float = 1800.0,
    interval_s: float = 1.0,
    seed: int = 0,
    start_ns: int = 1_793_491_200_000_000_000,  # 2026-11-01T00:00:00Z
    batch_s: float = 10.0,
    job: str = "",
) -> tuple[pb.TraceHeader, Iterator[pb.Batch]]:
    """The trace's header (nodes and their hardware; labels filled in once the batches are read) and its batches.

    job: every node's GPUs in this job, as its agent would say (a cluster scenario names its own).
    """
    sc = SCENARIOS.get(scenario)
    if sc is None:
        raise ValueError(f"unknown scenario {scenario!r}; see --list")
    if nodes < sc.min_nodes:
        raise ValueError(f"scenario {scenario} needs at least {sc.min_nodes} nodes")
    if not (
        1 <= gpus <= 16 and 1 <= nodes <= 1024 and 0.1 <= interval_s <= 60 and duration_s >= 10 * interval_s
    ):
        raise ValueError(
            "need 1-16 GPUs, 1-1024 nodes, an interval of 0.1-60 s and a duration of at least 10 intervals"
        )
    if sc.parts and sc.handoff:
        kw_h = {"interval_s": interval_s, "batch_s": batch_s}
        return simulate_handoff(simulate, sc, nodes, gpus, seed, duration_s, start_ns, **kw_h)
    if sc.parts:
        counts = split(sc, nodes, lambda name: SCENARIOS[name].min_nodes)
        kw = {"duration_s": duration_s, "interval_s": interval_s, "start_ns": start_ns, "batch_s": batch_s}
        return simulate_cluster(simulate, sc, counts, gpus, seed, **kw)
    rng, events, plan = _draw(sc, nodes, gpus, duration_s, seed)
    models = _models(sc, nodes)
    header = pb.TraceHeader(
        interval_s=interval_s,
        source=f"simulate scenario={scenario} seed={seed} coupling={plan.coupling} period_s={plan.period_s:.2f}",
        created_ns=start_ns,
    )
    for n in range(nodes):
        _inventory(header.nodes.add(), n, gpus, seed, models[n])
    states = [new_node(rng, gpus, models[n]) for n in range(nodes)]
    batches = _run(
        header, plan, events, states, rng, duration_s, interval_s, seed, start_ns, batch_s, sc.workload
    )
    return header, (_owned(batches, job, gpus) if job else batches)


def _owned(batches: Iterator[pb.Batch], job: str, gpus: int) -> Iterator[pb.Batch]:
    looked: dict[str, int] = {}
    for batch in batches:
        stamp(batch, job, gpus, looked)
        yield batch


def job_plan(scenario: str, nodes: int, gpus: int, duration_s: float, seed: int) -> Plan:
    """The job plan simulate() draws for these arguments: when each phase runs (for tests and tools)."""
    return _draw(SCENARIOS[scenario], nodes, gpus, duration_s, seed)[2]


def _draw(
    sc: Scenario, nodes: int, gpus: int, duration_s: float, seed: int
) -> tuple[np.random.Generator, list[Event], Plan]:
    """The seeded draws that come before the first tick: the faults, then the job's plan."""
    rng = np.random.default_rng(seed)
    events = sc.events(rng, nodes, gpus, duration_s)
    return rng, events, _plan(sc, rng, duration_s, events)


def _plan(sc: Scenario, rng: np.random.Generator, duration_s: float, events: list[Event]) -> Plan:
    coupling = sc.coupling if sc.coupling != "either" else ("lockstep", "loose")[int(rng.integers(2))]
    plan = draw_plan(rng, duration_s, coupling, sc.period_s)
    stall = min((e.start_s for e in events if e.kind == "xid"), default=math.inf)
    return Plan(**{**plan.__dict__, "stall_s": stall})


def _models(sc: Scenario, nodes: int) -> list[Gpu]:
    if sc.fleet == "mixed":  # half A100 (no GPM), half H200
        return [A100 if n < (nodes + 1) // 2 else H200 for n in range(nodes)]
    return [H100] * nodes


def _inventory(info: pb.NodeInfo, n: int, gpus: int, seed: int, model: Gpu) -> None:
    info.node_id = info.hostname = f"sim-{n:03d}"
    info.kernel, info.agent_version = "6.8.0-sim", "sim"
    for g in range(gpus):
        attrs = {
            "model": model.model,
            "uuid": f"GPU-{seed:08x}-{n:04x}-{g:04x}",
            "pci_bus_id": f"00000000:{0x18 + g:02X}:00.0",
        }
        info.devices.add(kind="gpu", name=str(g), attrs=attrs)
    info.devices.add(kind="nvme", name="nvme0", attrs={"model": "SAMSUNG MZWLO3T8HCLS", "state": "live"})
    for g in range(gpus):  # one RoCE port per GPU: rail-aligned
        info.devices.add(
            kind="rdma", name=f"mlx5_{g}:1", attrs={"hca_type": "MT4129", "link_layer": "Ethernet"}
        )


def _run(
    header: pb.TraceHeader,
    plan: Plan,
    events: list[Event],
    states: list[NodeState],
    rng: np.random.Generator,
    duration_s: float,
    dt: float,
    seed: int,
    start_ns: int,
    batch_s: float,
    workload: str = "training",
) -> Iterator[pb.Batch]:
    gpus = len(states[0].clock)
    iterations = Iterations(len(states), gpus)
    serving = (
        Serving(np.random.default_rng([seed, 1]), len(states), gpus) if workload == "inference" else None
    )
    out = Emitter(header, dt, seed)
    ticks = round(duration_s / dt)
    per_batch = max(1, round(batch_s / dt))
    for k in range(ticks):
        t = k * dt
        tns = start_ns + round(t * 1e9)
        diurnal = 1.5 * math.sin(2 * math.pi * ((start_ns / 1e9 + t) % 86400) / 86400)
        ph = phase(plan, t) if workload == "training" else serving_phase(plan, t) if serving else IDLE
        f = faults_at(events, len(states), t)
        fr: Fractions | None = None
        if ph in ITERATING and serving is None:
            fr = iterations.tick(t, dt, shape(plan, ph, states, f, rng), rng)
        else:
            iterations.pause(t + dt)
        served = serving.tick(t) if serving is not None and ph == TRAIN else None
        for n, st in enumerate(states):
            util, load, compute, comm = (
                _gpu_work(ph, fr, n, gpus, rng)
                if served is None
                else (served[n], 0.6 * served[n], served[n], 0 * served[n])
            )
            overheating, cap = f.heat[n], f.cap[n]
            worsened = overheating is not None and t >= overheating.start_s + 0.6 * (
                overheating.end_s - overheating.start_s
            )
            tick = gpu_step(
                st, util, load, dt, diurnal, rng,
                cap.gpus if cap is not None else None,
                overheating.gpus if overheating is not None else None,
                worsened,
            )  # fmt: skip
            _pcie(st, fr, n, compute, comm, dt)
            gpu_rows(out, n, tns, st, tick, compute, _memory(plan, ph, t))
            mark_faults(out, events, n, t, tns, st, tick, f, ph, fr.data[n] if fr is not None else None)
            host_rows(out, n, tns, st, host(ph, st, len(st.cpu), fr, n, f.starve[n], rng), dt, rng)
            fabric_rows(out, n, tns, st, comm, f.network[n], t, dt, rng)
        if (k + 1) % per_batch == 0 or k == ticks - 1:
            yield from out.batches()
    out.write_labels(start_ns)


def _gpu_work(
    ph: int, fr: Fractions | None, n: int, gpus: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per GPU: NVML utilization, the power the work draws (share of full), compute and all-reduce shares."""
    if fr is not None:
        util = np.clip(fr.kernel[n] + rng.normal(0, 0.005, gpus), 0, 1)
        load = fr.compute[n] + 0.18 * fr.wait[n] + 0.3 * fr.comm[n]
        return util, load, fr.compute[n], fr.comm[n]
    if ph == WARMUP:  # compilation and autotuning: short erratic kernels
        util = rng.uniform(0.05, 0.9, gpus)
        return util, 0.5 * util, 0.6 * util, np.zeros(gpus)
    zero = np.zeros(gpus)
    return zero, zero, zero, zero


def _memory(plan: Plan, ph: int, t: float) -> float:
    """Share of the job's GPU memory held: filling while the resume checkpoint loads."""
    if ph in (IDLE, RELEASED):
        return 0.0
    if ph == LOAD:
        return 0.02 + 0.98 * (t - JOB_START_S) / plan.load_s
    return 1.0


def _pcie(
    st: NodeState, fr: Fractions | None, n: int, compute: np.ndarray, comm: np.ndarray, dt: float
) -> None:
    """Input batches over PCIe (at most the link's ceiling), the all-reduce over NVLink."""
    moving = compute + (fr.data[n] if fr is not None else 0.0)
    ceiling = 0.97 * link_bytes_per_s(st.link_gen, st.link_width)
    st.pcie_rx += np.minimum(H2D_PER_GPU * st.gpu.speed * moving, ceiling) * dt
    st.pcie_tx += 2e7 * compute * dt
    st.nvlink += 1.2e11 * comm * dt
