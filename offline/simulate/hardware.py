"""The simulated hardware: an H100 host's figures, each node's state, and the GPU physics of one tick.

Busy time drives power, power drives temperature (a first-order thermal
model), and temperature and power limits drive throttling and clocks. The
figures are an H100 80GB HBM3 host, from real nvidia-smi captures
(../shared/fixtures/nvidia_smi_captures, idle and under gpu-burn); a test
checks them against the captures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

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

    @property
    def thermal_gain(self) -> float:
        """Degrees C per watt above idle, from the idle and load captures."""
        return (self.load_temp_c - self.idle_temp_c) / (self.load_power_w - self.idle_power_w)

    @property
    def memory_thermal_gain(self) -> float:
        return (self.load_mem_temp_c - self.idle_mem_temp_c) / (self.load_power_w - self.idle_power_w)


H100 = Gpu()

# Clocks event reason bits (nvmlClocksEventReason*).
IDLE, SW_POWER_CAP, SW_THERMAL, HW_THERMAL = 0x1, 0x4, 0x20, 0x40

CORES = 8  # simulated host cores (a real host has more; the model only needs the loader's share)
LOADER_CORES = 4
NVME_READ_CEILING = 3.2e9  # bytes a second
LOADER_DEMAND_PER_GPU = 0.3e9  # bytes a second each busy GPU consumes
THERMAL_TAU_S = 12.0  # a GPU die under a heatsink: seconds, not minutes
CAPPED_LIMIT_W = 420.0  # a lowered power limit, as an operator's nvidia-smi -pl would set

RDMA_COUNTERS = (
    "port_data_received_bytes",
    "port_data_transmitted_bytes",
    "np_cnp_sent",
    "rp_cnp_handled",
    "np_ecn_marked_roce_packets",
    "out_of_sequence",
    "packet_seq_err",
    "local_ack_timeout_err",
)


@dataclass
class NodeState:
    """What one node carries from tick to tick: counters, temperatures and its iteration phase."""

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


def new_node(rng: np.random.Generator, gpus: int, iteration_s: float, g: Gpu = H100) -> NodeState:
    """A node at the trace's start: idle GPUs, counters at plausible nonzero values."""
    return NodeState(
        cpu=np.zeros((CORES, 5)),
        gpu_temp=np.full(gpus, g.idle_temp_c) + rng.normal(0, 0.5, gpus),
        energy=rng.uniform(1e8, 1e9, gpus),
        throttle=np.zeros((gpus, 3)),
        pcie_rx=rng.uniform(1e12, 1e13, gpus),
        pcie_tx=rng.uniform(1e11, 1e12, gpus),
        nvlink=rng.uniform(1e13, 1e14, gpus),
        disk=dict.fromkeys(("read_bytes", "reads", "written_bytes", "writes", "io_time", "weighted"), 0.0),
        nic=dict.fromkeys(("rx_bytes", "tx_bytes", "rx_packets", "tx_packets"), 0.0),
        rdma=dict.fromkeys(RDMA_COUNTERS, 0.0),
        tcp=dict.fromkeys(("in_segs", "out_segs", "retrans_segs"), 0.0),
        psi=dict.fromkeys(("cpu_some", "io_some", "io_full", "memory_some"), 0.0),
        offset=float(rng.uniform(0, iteration_s)),
        thermal_gain=np.full(gpus, g.thermal_gain),
    )


@dataclass
class GpuTick:
    """One tick of every GPU of a node, after power capping and thermal control."""

    busy: np.ndarray  # fraction of the tick each GPU was busy
    power: np.ndarray
    limit: np.ndarray
    capped: np.ndarray
    clock_factor: np.ndarray  # SM clock as a fraction of its maximum
    sw_thermal: np.ndarray
    hw_thermal: np.ndarray
    reasons: np.ndarray  # clocks event reason bits


def gpu_step(
    st: NodeState,
    busy: np.ndarray,
    dt: float,
    diurnal: float,
    rng: np.random.Generator,
    capped_gpus: list[int] | None,
    overheating: list[int] | None,
    worsened: bool,
    g: Gpu = H100,
) -> GpuTick:
    """Advances a node's GPUs by dt: power from busy time, a cap, the thermal model, throttle counters.

    capped_gpus: GPUs under a lowered power limit; overheating: GPUs whose cooling is
    degrading (None: no thermal fault); worsened: the fault has gone past what SW
    control can hold.
    """
    gain = g.thermal_gain
    # Power: idle plus what busy time costs; a power cap clips it and the clocks follow.
    limit = np.full(len(busy), g.power_limit_w)
    if capped_gpus is not None:
        limit[capped_gpus] = CAPPED_LIMIT_W
    want = g.idle_power_w + (g.load_power_w - g.idle_power_w) * busy
    capped = want > limit * 0.98
    power = np.minimum(want, limit * (0.97 + 0.02 * rng.random(len(busy))))
    clock_factor = np.where(
        capped, np.sqrt((power - g.idle_power_w) / np.maximum(want - g.idle_power_w, 1)), 1.0
    )
    # Thermal: a degrading heatsink raises degrees per watt; near slowdown the
    # driver trades clocks for temperature.
    if overheating is not None:
        for d in overheating:
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
            * np.sqrt(np.clip((power - g.idle_power_w) / np.maximum(want - g.idle_power_w, 1), 0.05, 1)),
            clock_factor,
        )
        target = np.where(hot, g.idle_temp_c + diurnal + st.thermal_gain * (power - g.idle_power_w), target)
    st.gpu_temp += (target - st.gpu_temp) * (1 - math.exp(-dt / THERMAL_TAU_S))
    if overheating is not None and worsened:
        # The fault worsens (a failing fan, a hotspot): more heat than SW control
        # can hold, so the die crosses slowdown and hardware slowdown steps in.
        for d in overheating:
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
    reasons = (
        np.where(busy < 0.05, IDLE, 0)
        | np.where(capped, SW_POWER_CAP, 0)
        | np.where(sw_thermal, SW_THERMAL, 0)
        | np.where(hw_thermal, HW_THERMAL, 0)
    )
    return GpuTick(busy, power, limit, capped, clock_factor, sw_thermal, hw_thermal, reasons)
