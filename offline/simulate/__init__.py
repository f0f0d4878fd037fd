"""A scenario simulator: labelled multi-node traces of a synchronous data-parallel training job.

Every value is a function of the simulated state, never independent noise:
GPU busy time drives power, power drives temperature (a first-order thermal
model), temperature and power limits drive throttling and clocks, the data
loader's demand against the NVMe and CPU ceilings drives starvation, and the
collective traffic drives NVLink and RoCE counters. Labels mark where each
injected fault really shows (thermal from the first tick its throttle
counter grows), for scoring detectors. Same arguments and seed, same bytes.

The parts: hardware (the H100 host and its GPU physics), scenarios (the job
and its faults), emission (rows and batches), labels (where faults show).
This module runs them tick by tick; the order of the generator's draws is
part of the output, so each part draws in the order it is called here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from ironsight.offline.simulate.emission import Emitter, fabric_rows, gpu_rows, host_rows
from ironsight.offline.simulate.hardware import H100, gpu_step, new_node
from ironsight.offline.simulate.labels import mark_faults
from ironsight.offline.simulate.scenarios import ITERATION_S, SCENARIOS, Event, active, phase, workload
from ironsight.v1 import telemetry_pb2 as pb

__all__ = ["SCENARIOS", "simulate"]


def simulate(
    scenario: str,
    nodes: int = 2,
    gpus: int = 8,
    duration_s: float = 1800.0,
    interval_s: float = 1.0,
    seed: int = 0,
    start_ns: int = 1_793_491_200_000_000_000,  # 2026-11-01T00:00:00Z
    batch_s: float = 10.0,
) -> tuple[pb.TraceHeader, Iterator[pb.Batch]]:
    """The trace's header (nodes and their hardware; labels filled in once the batches are read) and its batches."""
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
    rng = np.random.default_rng(seed)
    events = sc.events(rng, nodes, gpus, duration_s)
    header = pb.TraceHeader(
        interval_s=interval_s, source=f"simulate scenario={scenario} seed={seed}", created_ns=start_ns
    )
    for n in range(nodes):
        _inventory(header.nodes.add(), n, gpus, seed)
    return header, _run(header, events, rng, gpus, duration_s, interval_s, seed, start_ns, batch_s)


def _inventory(info: pb.NodeInfo, n: int, gpus: int, seed: int) -> None:
    info.node_id = info.hostname = f"sim-{n:03d}"
    info.kernel, info.agent_version = "6.8.0-sim", "sim"
    for g in range(gpus):
        attrs = {
            "model": H100.model,
            "uuid": f"GPU-{seed:08x}-{n:04x}-{g:04x}",
            "pci_bus_id": f"00000000:{0x18 + g:02X}:00.0",
        }
        info.devices.add(kind="gpu", name=str(g), attrs=attrs)
    info.devices.add(kind="nvme", name="nvme0", attrs={"model": "SAMSUNG MZWLO3T8HCLS", "state": "live"})
    info.devices.add(kind="rdma", name="mlx5_0:1", attrs={"hca_type": "MT4129", "link_layer": "Ethernet"})


def _run(
    header: pb.TraceHeader,
    events: list[Event],
    rng: np.random.Generator,
    gpus: int,
    duration_s: float,
    dt: float,
    seed: int,
    start_ns: int,
    batch_s: float,
) -> Iterator[pb.Batch]:
    states = [new_node(rng, gpus, ITERATION_S) for _ in header.nodes]
    out = Emitter(header, dt, seed)
    ticks = round(duration_s / dt)
    per_batch = max(1, round(batch_s / dt))
    xid_stall_at = min((e.start_s for e in events if e.kind == "xid"), default=math.inf)
    for k in range(ticks):
        t = k * dt
        tns = start_ns + round(t * 1e9)
        diurnal = 1.5 * math.sin(2 * math.pi * ((start_ns / 1e9 + t) % 86400) / 86400)
        ph = phase(t, xid_stall_at)
        for n, st in enumerate(states):
            w = workload(events, n, t, dt, ph, st.offset, gpus, rng)
            busy = np.clip(w.busy + rng.normal(0, 0.01, gpus), 0, 1) if ph.job else np.zeros(gpus)
            cap = active(events, "power_cap", n, t)
            overheating = active(events, "thermal", n, t)
            worsened = overheating is not None and t >= overheating.start_s + 0.6 * (
                overheating.end_s - overheating.start_s
            )
            tick = gpu_step(
                st,
                busy,
                dt,
                diurnal,
                rng,
                cap.gpus if cap is not None else None,
                overheating.gpus if overheating is not None else None,
                worsened,
            )
            st.pcie_rx += w.demand / gpus * dt * (0.98 + 0.04 * rng.random(gpus))
            st.pcie_tx += 2e7 * busy * dt
            st.nvlink += 1.2e11 * w.comm * dt * (busy > 0.05)
            gpu_rows(out, n, tns, st, tick, ph.held)
            mark_faults(out, events, n, t, tns, st, tick, w, overheating, cap)
            host_rows(out, n, tns, st, w, ph, dt, rng)
            fabric_rows(out, n, tns, st, w, t, dt, rng)
        if (k + 1) % per_batch == 0 or k == ticks - 1:
            yield from out.batches()
    out.write_labels(start_ns)
