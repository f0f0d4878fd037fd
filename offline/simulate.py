"""A scenario simulator: labelled multi-node traces of a synchronous data-parallel training job.

Every value is a function of the simulated state, never independent noise:
GPU busy time drives power, power drives temperature (a first-order thermal
model), temperature and power limits drive throttling and clocks, the data
loader's demand against the NVMe and CPU ceilings drives starvation, and the
collective traffic drives NVLink and RoCE counters. Labels mark where each
injected fault really shows (thermal from the first tick its throttle
counter grows), for scoring detectors. Same arguments and seed, same bytes.

Hardware figures are an H100 80GB HBM3 host, from real nvidia-smi captures
(../shared/fixtures/nvidia_smi_captures, idle and under gpu-burn); a test
checks them against the captures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from ironsight.core.columnar import TableBuilder, Value
from ironsight.v1 import telemetry_pb2 as pb

MIB = 2**20
GIB = 2**30


@dataclass(frozen=True)
class Gpu:
    """H100 80GB HBM3, driver 590.48: idle and load figures from the captures."""

    model: str = "NVIDIA H100 80GB HBM3"
    idle_power_w: float = 69.85
    load_power_w: float = 631.95
    power_limit_w: float = 700.0
    idle_temp_c: float = 41.0
    load_temp_c: float = 59.0
    idle_mem_temp_c: float = 48.0
    load_mem_temp_c: float = 54.0
    memory_total_mib: int = 81559
    sm_clock_max_mhz: float = 1980.0
    sm_clock_idle_mhz: float = 345.0
    mem_clock_mhz: float = 2619.0
    mem_util_at_load: float = 11.0
    # The capture reports thresholds relative to T.Limit: 26 C of headroom at
    # 59 C puts T.Limit at 85 C; slowdown is 2 C and shutdown 8 C past it.
    slowdown_c: float = 87.0
    shutdown_c: float = 93.0


H100 = Gpu()

# Clocks event reason bits (nvmlClocksEventReason*).
IDLE, SW_POWER_CAP, SW_THERMAL, HW_THERMAL = 0x1, 0x4, 0x20, 0x40

CORES = 8  # simulated host cores (a real host has more; the model only needs the loader's share)
LOADER_CORES = 4
NVME_READ_CEILING = 3.2e9  # bytes a second
LOADER_DEMAND_PER_GPU = 0.3e9  # bytes a second each busy GPU consumes
# Long enough for 1 s sampling to resolve (Nyquist): a 1.6 s period aliases so that a
# slower node looks faster. Large-model steps take seconds.
ITERATION_S = 4.0
COMPUTE_FRACTION = 0.78  # of an iteration; the rest is the all-reduce
JOB_START_S = 60.0
CHECKPOINT_EVERY_S, CHECKPOINT_S = 600.0, 25.0
EVAL_EVERY_S, EVAL_S = 900.0, 40.0
THERMAL_TAU_S = 12.0  # a GPU die under a heatsink: seconds, not minutes


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


def _active(events: list[Event], kind: str, node: int, t: float) -> Event | None:
    for e in events:
        if e.kind == kind and e.node == node and e.start_s <= t < e.end_s:
            return e
    return None


def _busy_shape(t: float, dt: float, period: float, offset: float) -> float:
    """Fraction of [t, t+dt) a GPU is busy: compute phases at 100 %, all-reduce at 25 %."""
    samples = 16
    s = t + (np.arange(samples) + 0.5) * dt / samples
    phase = ((s + offset) / period) % 1.0
    return float(np.where(phase < COMPUTE_FRACTION, 1.0, 0.25).mean())


@dataclass
class NodeState:
    cpu: np.ndarray  # (CORES, 5): user, system, idle, iowait, softirq seconds
    gpu_temp: np.ndarray
    energy: np.ndarray
    throttle: np.ndarray  # (G, 3): sw_power, sw_thermal, hw_thermal seconds
    pcie_rx: np.ndarray
    pcie_tx: np.ndarray
    nvlink: np.ndarray
    disk: dict[str, float]
    nic: dict[str, float]
    rdma: dict[str, float]
    tcp: dict[str, float]
    psi: dict[str, float]
    offset: float
    thermal_gain: np.ndarray  # per GPU, degree C per watt above idle
    xid_sent: bool = False


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
        info = header.nodes.add(
            node_id=f"sim-{n:03d}", hostname=f"sim-{n:03d}", kernel="6.8.0-sim", agent_version="sim"
        )
        for g in range(gpus):
            info.devices.add(
                kind="gpu",
                name=str(g),
                attrs={
                    "model": H100.model,
                    "uuid": f"GPU-{seed:08x}-{n:04x}-{g:04x}",
                    "pci_bus_id": f"00000000:{0x18 + g:02X}:00.0",
                },
            )
        info.devices.add(kind="nvme", name="nvme0", attrs={"model": "SAMSUNG MZWLO3T8HCLS", "state": "live"})
        info.devices.add(kind="rdma", name="mlx5_0:1", attrs={"hca_type": "MT4129", "link_layer": "Ethernet"})
    return header, _run(header, events, rng, nodes, gpus, duration_s, interval_s, seed, start_ns, batch_s)


def _run(
    header: pb.TraceHeader,
    events: list[Event],
    rng: np.random.Generator,
    nodes: int,
    gpus: int,
    duration_s: float,
    dt: float,
    seed: int,
    start_ns: int,
    batch_s: float,
) -> Iterator[pb.Batch]:
    g = H100
    gain = (g.load_temp_c - g.idle_temp_c) / (g.load_power_w - g.idle_power_w)
    mem_gain = (g.load_mem_temp_c - g.idle_mem_temp_c) / (g.load_power_w - g.idle_power_w)
    states = [
        NodeState(
            cpu=np.zeros((CORES, 5)),
            gpu_temp=np.full(gpus, g.idle_temp_c) + rng.normal(0, 0.5, gpus),
            energy=rng.uniform(1e8, 1e9, gpus),
            throttle=np.zeros((gpus, 3)),
            pcie_rx=rng.uniform(1e12, 1e13, gpus),
            pcie_tx=rng.uniform(1e11, 1e12, gpus),
            nvlink=rng.uniform(1e13, 1e14, gpus),
            disk=dict.fromkeys(
                ("read_bytes", "reads", "written_bytes", "writes", "io_time", "weighted"), 0.0
            ),
            nic=dict.fromkeys(("rx_bytes", "tx_bytes", "rx_packets", "tx_packets"), 0.0),
            rdma=dict.fromkeys(
                (
                    "port_data_received_bytes",
                    "port_data_transmitted_bytes",
                    "np_cnp_sent",
                    "rp_cnp_handled",
                    "np_ecn_marked_roce_packets",
                    "out_of_sequence",
                    "packet_seq_err",
                    "local_ack_timeout_err",
                ),
                0.0,
            ),
            tcp=dict.fromkeys(("in_segs", "out_segs", "retrans_segs"), 0.0),
            psi=dict.fromkeys(("cpu_some", "io_some", "io_full", "memory_some"), 0.0),
            offset=float(rng.uniform(0, ITERATION_S)),
            thermal_gain=np.full(gpus, gain),
        )
        for _ in range(nodes)
    ]
    ticks = round(duration_s / dt)
    per_batch = max(1, round(batch_s / dt))
    label_start: dict[tuple[str, int, int], float] = {}
    critical: set[tuple[str, int, int]] = set()
    labels: dict[tuple[str, int, int], tuple[float, float, Event]] = {}
    builders: list[dict[str, TableBuilder]] = [{} for _ in range(nodes)]
    seqs = [0] * nodes
    xid_stall_at = min((e.start_s for e in events if e.kind == "xid"), default=math.inf)

    def add(n: int, table: str, time_ns: int, device: str, values: Mapping[str, Value]) -> None:
        b = builders[n].get(table)
        if b is None:
            b = builders[n][table] = TableBuilder(table)
        b.add(time_ns, device, values)

    def mark(kind: str, n: int, dev: int, t: float, e: Event) -> None:
        key = (kind, n, dev)
        first = label_start.setdefault(key, t)
        labels[key] = (first, t + dt, e)

    for k in range(ticks):
        t = k * dt
        tns = start_ns + round(t * 1e9)
        diurnal = 1.5 * math.sin(2 * math.pi * ((start_ns / 1e9 + t) % 86400) / 86400)
        job = t >= JOB_START_S and t < xid_stall_at
        checkpoint = job and (t - JOB_START_S) % CHECKPOINT_EVERY_S >= CHECKPOINT_EVERY_S - CHECKPOINT_S
        evaluating = job and not checkpoint and (t - JOB_START_S) % EVAL_EVERY_S >= EVAL_EVERY_S - EVAL_S
        for n, st in enumerate(states):
            straggle = _active(events, "straggler", n, t)
            jitter = _active(events, "network_jitter", n, t)
            period = ITERATION_S * (1.3 if straggle else 1.0)
            if jitter:
                period *= 1.3 + 0.25 * rng.random()  # slower and uneven
            busy = _busy_shape(t, dt, period, st.offset) if job else 0.0
            comm = 0.0 if not job or evaluating else 1.0 - COMPUTE_FRACTION
            if checkpoint:
                busy, comm = 0.03, 0.0
            elif evaluating:
                busy *= 0.6
            starve = _active(events, "data_starvation", n, t)
            demand = LOADER_DEMAND_PER_GPU * gpus * busy
            loader_busy = min(1.0, 0.35 * busy / max(busy, 1e-9)) if job else 0.02
            io_busy = demand / NVME_READ_CEILING
            if starve is not None:
                ceiling = 0.45
                busy *= ceiling  # the GPUs wait for data most of the time
                if starve.cause == "storage":
                    demand, io_busy = NVME_READ_CEILING * (0.97 + 0.03 * rng.random()), 0.99
                else:
                    demand, loader_busy = LOADER_DEMAND_PER_GPU * gpus * busy, 0.995
            gb = np.clip(busy + rng.normal(0, 0.01, gpus), 0, 1) if job else np.zeros(gpus)
            # Power: idle plus what busy time costs; a power cap clips it and the clocks follow.
            limit = np.full(gpus, g.power_limit_w)
            cap = _active(events, "power_cap", n, t)
            if cap is not None:
                limit[cap.gpus] = 420.0
            want = g.idle_power_w + (g.load_power_w - g.idle_power_w) * gb
            capped = want > limit * 0.98
            power = np.minimum(want, limit * (0.97 + 0.02 * rng.random(gpus)))
            clock_factor = np.where(
                capped, np.sqrt((power - g.idle_power_w) / np.maximum(want - g.idle_power_w, 1)), 1.0
            )
            # Thermal: a degrading heatsink raises degrees per watt; near slowdown the
            # driver trades clocks for temperature.
            therm = _active(events, "thermal", n, t)
            if therm is not None:
                for d in therm.gpus:
                    st.thermal_gain[d] = min(st.thermal_gain[d] * 1.02**dt, 0.1)
            else:
                st.thermal_gain += (gain - st.thermal_gain) * (1 - 0.95**dt)
            target = g.idle_temp_c + diurnal + st.thermal_gain * (power - g.idle_power_w)
            # The driver throttles on the die's temperature: within 2 C of slowdown it
            # holds power where the temperature would settle just under it.
            hot = (st.gpu_temp >= g.slowdown_c - 2) & (target > g.slowdown_c - 0.5)
            if hot.any():
                allowed = g.idle_power_w + (g.slowdown_c - 0.5 - g.idle_temp_c - diurnal) / st.thermal_gain
                power = np.where(hot, np.minimum(power, allowed), power)
                clock_factor = np.where(
                    hot,
                    clock_factor
                    * np.sqrt(
                        np.clip((power - g.idle_power_w) / np.maximum(want - g.idle_power_w, 1), 0.05, 1)
                    ),
                    clock_factor,
                )
                target = np.where(
                    hot, g.idle_temp_c + diurnal + st.thermal_gain * (power - g.idle_power_w), target
                )
            st.gpu_temp += (target - st.gpu_temp) * (1 - math.exp(-dt / THERMAL_TAU_S))
            if therm is not None and t >= therm.start_s + 0.6 * (therm.end_s - therm.start_s):
                # The fault worsens (a failing fan, a hotspot): more heat than SW control
                # can hold, so the die crosses slowdown and hardware slowdown steps in.
                for d in therm.gpus:
                    st.gpu_temp[d] = max(st.gpu_temp[d], g.slowdown_c + 1.0 + rng.random())
            # SW thermal slowdown is the driver trading clocks for temperature.
            sw_thermal = hot | (st.gpu_temp >= g.slowdown_c - 3)
            hw_thermal = st.gpu_temp >= g.slowdown_c + 0.5
            sw_thermal |= hw_thermal
            clock_factor = np.where(hw_thermal, clock_factor * 0.5, clock_factor)
            power = np.where(hw_thermal, g.idle_power_w + (power - g.idle_power_w) * 0.45, power)
            # A throttled GPU is slower but not idler: the same busy time buys less work.
            st.energy += power * dt
            st.throttle[:, 0] += np.where(capped, dt, 0.0)
            st.throttle[:, 1] += np.where(sw_thermal, dt, 0.0)
            st.throttle[:, 2] += np.where(hw_thermal, dt, 0.0)
            st.pcie_rx += demand / gpus * dt * (0.98 + 0.04 * rng.random(gpus))
            st.pcie_tx += 2e7 * gb * dt
            st.nvlink += 1.2e11 * comm * dt * (gb > 0.05)
            reasons = (
                np.where(gb < 0.05, IDLE, 0)
                | np.where(capped, SW_POWER_CAP, 0)
                | np.where(sw_thermal, SW_THERMAL, 0)
                | np.where(hw_thermal, HW_THERMAL, 0)
            )
            held = t >= JOB_START_S  # the job holds its memory, stalled or not
            for d in range(gpus):
                sm = g.sm_clock_max_mhz * clock_factor[d] if gb[d] >= 0.05 else g.sm_clock_idle_mhz
                add(
                    n,
                    "gpu",
                    tns,
                    str(d),
                    {
                        "util_gpu_percent": float(round(100 * gb[d])),
                        "util_memory_percent": float(round(g.mem_util_at_load * gb[d])),
                        "util_gpu_sampled_percent": round(100 * gb[d], 1),
                        "memory_used_bytes": int((70 * 1024 + d) * MIB) if held else 0,
                        "memory_total_bytes": g.memory_total_mib * MIB,
                        "sm_clock_hertz": round(sm) * 1e6,
                        "mem_clock_hertz": g.mem_clock_mhz * 1e6,
                        "sm_clock_max_hertz": g.sm_clock_max_mhz * 1e6,
                        "mem_clock_max_hertz": g.mem_clock_mhz * 1e6,
                        "temperature_celsius": float(round(st.gpu_temp[d])),
                        "memory_temperature_celsius": float(
                            round(g.idle_mem_temp_c + mem_gain * (power[d] - g.idle_power_w))
                        ),
                        "temperature_slowdown_celsius": g.slowdown_c,
                        "temperature_shutdown_celsius": g.shutdown_c,
                        "power_watts": round(float(power[d]), 2),
                        "power_limit_watts": float(limit[d]),
                        "energy_joules": round(float(st.energy[d]), 3),
                        "clocks_event_reasons": int(reasons[d]),
                        "throttle_sw_power_seconds": round(float(st.throttle[d, 0]), 6),
                        "throttle_sw_thermal_seconds": round(float(st.throttle[d, 1]), 6),
                        "throttle_hw_thermal_seconds": round(float(st.throttle[d, 2]), 6),
                        "throttle_hw_power_brake_seconds": 0.0,
                        "pcie_tx_bytes": int(st.pcie_tx[d]),
                        "pcie_rx_bytes": int(st.pcie_rx[d]),
                        "pcie_replays": 0,
                        "nvlink_tx_bytes": int(st.nvlink[d]),
                        "nvlink_rx_bytes": int(st.nvlink[d]),
                        "pcie_link_gen": 5,
                        "pcie_link_width": 16,
                        "ecc_sbe_volatile": 0,
                        "ecc_dbe_volatile": 0,
                        "remapped_rows_correctable": 0,
                        "remapped_rows_uncorrectable": 0,
                        "remapped_rows_pending": 0,
                        "remapped_rows_failure": 0,
                        "gpm_sm_active_ratio": round(0.92 * gb[d] * clock_factor[d], 4),
                        "gpm_sm_occupancy_ratio": round(0.48 * gb[d], 4),
                        "gpm_tensor_active_ratio": round(0.61 * gb[d] * clock_factor[d], 4),
                        "gpm_dram_bandwidth_ratio": round(0.38 * gb[d], 4),
                    },
                )
                # A thermal incident shows from its pre-warning (within 5 C of slowdown)
                # until the die has cooled below it again, after the fault too.
                hot_fault = next(
                    (
                        e
                        for e in events
                        if e.kind == "thermal" and e.node == n and d in e.gpus and t >= e.start_s
                    ),
                    None,
                )
                if hot_fault is not None and (
                    (therm is not None and bool(sw_thermal[d])) or st.gpu_temp[d] >= g.slowdown_c - 5
                ):
                    mark("thermal", n, d, t, hot_fault)
                    if hw_thermal[d]:
                        critical.add(("thermal", n, d))
                if cap is not None and d in cap.gpus and capped[d]:
                    mark("power_cap", n, d, t, cap)
                if starve is not None and d in starve.gpus:
                    mark("data_starvation", n, d, t, starve)
            for e in events:
                if e.kind == "xid" and e.node == n and not st.xid_sent and t >= e.start_s:
                    add(n, "gpu_xid", tns, str(e.gpus[0]), {"xid": e.xid})
                    st.xid_sent = True
                if e.kind == "xid" and e.start_s <= t < e.start_s + 10:
                    # The label is the event; the stall that follows is its consequence.
                    for d in e.gpus if e.node == n else []:
                        mark("xid", n, d, t, e)
            if straggle is not None:
                mark("straggler", n, -1, t, straggle)
            if jitter is not None:
                mark("network_jitter", n, -1, t, jitter)
            # Host: the loader's cores, the NVMe it reads from, the fabric the all-reduce uses.
            iowait = 0.3 if starve is not None and starve.cause == "storage" else 0.01
            for c in range(CORES):
                u = (loader_busy if c < LOADER_CORES else 0.05) * (0.98 + 0.04 * rng.random())
                u = min(u, 1.0 - iowait)
                st.cpu[c] += np.array([0.85 * u, 0.13 * u, max(0.0, 1 - u - iowait), iowait, 0.02 * u]) * dt
                add(
                    n,
                    "cpu",
                    tns,
                    str(c),
                    {
                        "user_seconds": round(st.cpu[c, 0], 2),
                        "system_seconds": round(st.cpu[c, 1], 2),
                        "idle_seconds": round(st.cpu[c, 2], 2),
                        "iowait_seconds": round(st.cpu[c, 3], 2),
                        "softirq_seconds": round(st.cpu[c, 4], 2),
                        "nice_seconds": 0.0,
                        "irq_seconds": 0.0,
                        "steal_seconds": 0.0,
                        "frequency_hertz": 3.1e9 if u > 0.5 else 2.0e9,
                        "frequency_max_hertz": 3.8e9,
                        "core_id": c,
                        "package_id": 0,
                        "core_throttles": 0,
                        "package_throttles": 0,
                    },
                )
            load1 = LOADER_CORES * loader_busy + (2.0 if iowait > 0.1 else 0.0)
            add(
                n,
                "load",
                tns,
                "",
                {
                    "load1": round(load1, 2),
                    "load5": round(load1, 2),
                    "load15": round(load1, 2),
                    "procs_running": int(load1) + 1,
                    "procs_blocked": 2 if iowait > 0.1 else 0,
                },
            )
            add(
                n,
                "memory",
                tns,
                "",
                {
                    "mem_total_bytes": 1024 * GIB,
                    "mem_available_bytes": int((900 - 80 * held) * GIB),
                    "mem_free_bytes": int((400 - 80 * held) * GIB),
                    "cached_bytes": 500 * GIB,
                    "dirty_bytes": int((2 if checkpoint else 0.05) * GIB),
                },
            )
            st.psi["cpu_some"] += dt * max(0.0, loader_busy - 0.85) * 2
            st.psi["io_some"] += dt * (0.6 if io_busy > 0.95 else 0.01 * io_busy)
            st.psi["io_full"] += dt * (0.4 if io_busy > 0.95 else 0.0)
            add(n, "pressure", tns, "", {f"{k}_seconds": round(v, 6) for k, v in st.psi.items()})
            read = demand * dt * (1.0 if job else 0.0)
            written = (2.0e9 if checkpoint else 1e6) * dt
            st.disk["read_bytes"] += read
            st.disk["reads"] += read / (128 * 1024)
            st.disk["written_bytes"] += written
            st.disk["writes"] += written / (256 * 1024)
            st.disk["io_time"] += dt * min(0.99, max(io_busy if job else 0.0, 0.8 if checkpoint else 0.0))
            st.disk["weighted"] += dt * (32 if io_busy > 0.95 else 2) * min(0.99, io_busy)
            add(
                n,
                "disk",
                tns,
                "nvme0n1",
                {
                    "read_bytes": int(st.disk["read_bytes"]) // 512 * 512,
                    "reads_completed": int(st.disk["reads"]),
                    "written_bytes": int(st.disk["written_bytes"]) // 512 * 512,
                    "writes_completed": int(st.disk["writes"]),
                    "io_time_seconds": round(st.disk["io_time"], 3),
                    "io_time_weighted_seconds": round(st.disk["weighted"], 3),
                    "io_now": 32 if io_busy > 0.95 else int(io_busy * 4),
                },
            )
            fabric = 2.4e10 * comm * dt
            st.rdma["port_data_received_bytes"] += fabric
            st.rdma["port_data_transmitted_bytes"] += fabric
            burst = jitter is not None and (t % 10) < 5
            cnp = rng.poisson((400 if burst else 2) * dt)
            st.rdma["np_cnp_sent"] += cnp
            st.rdma["rp_cnp_handled"] += rng.poisson((380 if burst else 2) * dt)
            st.rdma["np_ecn_marked_roce_packets"] += rng.poisson((900 if burst else 3) * dt)
            if burst:
                st.rdma["out_of_sequence"] += rng.poisson(25 * dt)
                st.rdma["packet_seq_err"] += rng.poisson(3 * dt)
                st.rdma["local_ack_timeout_err"] += rng.poisson(0.5 * dt)
            add(
                n,
                "rdma",
                tns,
                "mlx5_0:1",
                {k: int(v) for k, v in st.rdma.items()}
                | {"state_id": 4, "physical_state_id": 5, "rate_bytes_per_second": 50_000_000_000},
            )
            st.nic["rx_bytes"] += 5e7 * dt
            st.nic["tx_bytes"] += 1e7 * dt
            st.nic["rx_packets"] += 5e7 * dt / 1500
            st.nic["tx_packets"] += 1e7 * dt / 1500
            add(
                n,
                "nic",
                tns,
                "eth0",
                {k: int(v) for k, v in st.nic.items()}
                | {
                    "up": 1,
                    "speed_bytes_per_second": 3_125_000_000,
                    "mtu": 9000,
                    "rx_errors": 0,
                    "rx_dropped": 0,
                    "tx_errors": 0,
                    "tx_dropped": 0,
                },
            )
            st.tcp["in_segs"] += 4e4 * dt
            st.tcp["out_segs"] += 1e4 * dt
            st.tcp["retrans_segs"] += rng.poisson((60 if burst else 0.1) * dt)
            add(n, "tcp", tns, "", {k: int(v) for k, v in st.tcp.items()})
        if (k + 1) % per_batch == 0 or k == ticks - 1:
            for n in range(nodes):
                seqs[n] += 1
                batch = pb.Batch(
                    node_id=f"sim-{n:03d}", boot_id=f"sim-seed{seed}-{n:03d}", seq=seqs[n], interval_s=dt
                )
                batch.node.CopyFrom(header.nodes[n])
                for b in builders[n].values():
                    batch.tables.append(b.to_proto())
                builders[n] = {}
                yield batch
    for (kind, n, d), (start, end, e) in sorted(labels.items(), key=lambda kv: (kv[1][0], kv[0])):
        header.labels.add(
            kind=kind,
            node=f"sim-{n:03d}",
            device="mlx5_0:1" if kind == "network_jitter" else ("" if d < 0 else str(d)),
            start_ns=start_ns + round(start * 1e9),
            end_ns=start_ns + round(end * 1e9),
            cause=e.cause,
            severity="critical" if (kind, n, d) in critical else ("warning" if kind == "thermal" else ""),
        )
