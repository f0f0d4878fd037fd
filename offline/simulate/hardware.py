"""The simulated hardware: GPU models and their physics, the host, and each node's state.

Busy time drives power, power drives temperature (a first-order thermal
model), and temperature and power limits drive throttling and clocks. The
figures are from real captures in ../shared/fixtures: H100 80GB HBM3 and
H200 nvidia-smi captures idle and under gpu-burn, and an A100-SXM4-80GB's
nvidia-smi -q XML (idle only; its load draw is the published typical share of
its limit). A test checks them against the captures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIB = 2**20
GIB = 2**30


@dataclass(frozen=True)
class Gpu:
    """A GPU model's figures; the defaults are the H100 80GB HBM3 (driver 590.48) captures'."""

    model: str = "NVIDIA H100 80GB HBM3"
    idle_power_w: float = 69.85
    load_power_w: float = 631.95
    power_limit_w: float = 700.0
    idle_temp_c: float = 41.0
    load_temp_c: float = 59.0
    idle_mem_temp_c: float = 48.0
    load_mem_temp_c: float = 54.0
    memory_total_mib: int = 81559
    # What the driver keeps for itself (nvidia-smi's Reserved); the agent reports the total less it.
    memory_reserved_mib: int = 479
    sm_clock_max_mhz: float = 1980.0
    sm_clock_idle_mhz: float = 345.0
    mem_clock_mhz: float = 2619.0
    mem_util_at_load: float = 11.0
    # The capture reports thresholds relative to T.Limit: 26 C of headroom at
    # 59 C puts T.Limit at 85 C; slowdown is 2 C and shutdown 8 C past it.
    slowdown_c: float = 87.0
    shutdown_c: float = 93.0
    gpm: bool = True  # Hopper has GPM (SM and tensor activity); an A100 has none
    speed: float = 1.0  # compute speed against the H100's, for mixed jobs

    @property
    def thermal_gain(self) -> float:
        """Degrees C per watt above idle, from the idle and load captures."""
        return (self.load_temp_c - self.idle_temp_c) / (self.load_power_w - self.idle_power_w)

    @property
    def memory_thermal_gain(self) -> float:
        return (self.load_mem_temp_c - self.idle_mem_temp_c) / (self.load_power_w - self.idle_power_w)


H100 = Gpu()
# H200, driver 590.48 (captures idle and under load): T.Limit 87 C, so slowdown 89 C, shutdown 95 C.
H200 = Gpu(
    model="NVIDIA H200",
    idle_power_w=77.71,
    load_power_w=627.4,
    idle_temp_c=28.0,
    load_temp_c=52.0,
    idle_mem_temp_c=32.0,
    load_mem_temp_c=40.0,
    memory_total_mib=143771,
    memory_reserved_mib=614,
    mem_clock_mhz=3201.0,
    mem_util_at_load=7.0,
    slowdown_c=89.0,
    shutdown_c=95.0,
    speed=1.15,
)
# A100-SXM4-80GB (nvidia-smi -q, idle): 500 W limit, slowdown 89 C, shutdown 92 C, SM 1410 MHz,
# no GPM. Its load draw and temperature are not captured: 430 W (the published typical share of
# the limit under training) and 62 C.
A100 = Gpu(
    model="NVIDIA A100-SXM4-80GB",
    idle_power_w=67.03,
    load_power_w=430.0,
    power_limit_w=500.0,
    idle_temp_c=27.0,
    load_temp_c=62.0,
    idle_mem_temp_c=44.0,
    load_mem_temp_c=58.0,
    memory_total_mib=81920,
    memory_reserved_mib=0,  # the A100 capture reports none
    sm_clock_max_mhz=1410.0,
    sm_clock_idle_mhz=1275.0,  # P0 at idle in the capture
    mem_clock_mhz=1593.0,
    mem_util_at_load=18.0,
    slowdown_c=89.0,
    shutdown_c=92.0,
    gpm=False,
    speed=0.45,
)
MODELS = {"h100": H100, "h200": H200, "a100": A100}

# Clocks event reason bits (nvmlClocksEventReason*).
IDLE, SW_POWER_CAP, SW_THERMAL, HW_THERMAL = 0x1, 0x4, 0x20, 0x40

CORES_PER_GPU = 8  # 64 cores on an 8-GPU host: one rank's core, four loader workers, three for the rest
LOADER_WORKERS_PER_GPU = 4
NVME_READ_CEILING = 3.2e9  # bytes a second
NVME_WRITE_CEILING = 2.6e9
LOADER_READ_PER_GPU = 0.15e9  # bytes a second of input each computing GPU consumes from the NVMe
H2D_PER_GPU = 0.5e9  # bytes a second of batches each computing GPU takes over PCIe
THERMAL_TAU_S = 12.0  # a GPU die under a heatsink: seconds, not minutes
CAPPED_FRACTION = 0.6  # a lowered power limit, as an operator's nvidia-smi -pl would set

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
    """What one node carries from tick to tick: its GPU model, counters and temperatures."""

    gpu: Gpu
    cpu: np.ndarray  # (cores, 6): user, system, idle, iowait, softirq, steal seconds
    gpu_temp: np.ndarray
    energy: np.ndarray
    throttle: np.ndarray  # (G, 3): sw_power, sw_thermal, hw_thermal seconds
    clock: np.ndarray  # SM clock as a fraction of its maximum, last tick
    pcie_rx: np.ndarray
    pcie_tx: np.ndarray
    nvlink: np.ndarray
    link_gen: np.ndarray  # PCIe link as trained now (a degraded link drops)
    link_width: np.ndarray
    disk: dict[str, float]
    nic: dict[str, float]
    rdma: np.ndarray  # (G, len(RDMA_COUNTERS)): one RoCE port per GPU (rail-aligned)
    tcp: dict[str, float]
    psi: dict[str, float]
    thermal_gain: np.ndarray  # per GPU, degree C per watt above idle
    load1: float = 0.0
    burst_until: float = -1.0  # a loss burst on a bad port runs until then
    xid_sent: bool = False


def new_node(rng: np.random.Generator, gpus: int, g: Gpu = H100) -> NodeState:
    """A node at the trace's start: idle GPUs, counters at plausible nonzero values."""
    return NodeState(
        gpu=g,
        cpu=np.zeros((max(16, CORES_PER_GPU * gpus), 6)),
        gpu_temp=np.full(gpus, g.idle_temp_c) + rng.normal(0, 0.5, gpus),
        energy=rng.uniform(1e8, 1e9, gpus),
        throttle=np.zeros((gpus, 3)),
        clock=np.ones(gpus),
        pcie_rx=rng.uniform(1e12, 1e13, gpus),
        pcie_tx=rng.uniform(1e11, 1e12, gpus),
        nvlink=rng.uniform(1e13, 1e14, gpus),
        link_gen=np.full(gpus, 5 if g.gpm else 4),
        link_width=np.full(gpus, 16),
        disk=dict.fromkeys(("read_bytes", "reads", "written_bytes", "writes", "io_time", "weighted"), 0.0),
        nic=dict.fromkeys(("rx_bytes", "tx_bytes", "rx_packets", "tx_packets"), 0.0),
        rdma=np.zeros((gpus, len(RDMA_COUNTERS))),
        tcp=dict.fromkeys(("in_segs", "out_segs", "retrans_segs"), 0.0),
        psi=dict.fromkeys(("cpu_some", "io_some", "io_full", "memory_some"), 0.0),
        thermal_gain=np.full(gpus, g.thermal_gain),
    )


def link_bytes_per_s(gen: np.ndarray, width: np.ndarray) -> np.ndarray:
    """A PCIe link's payload ceiling: GT/s per lane by generation, line code, lanes."""
    gts = np.choose(np.clip(gen, 1, 6) - 1, [2.5, 5.0, 8.0, 16.0, 32.0, 64.0])
    code = np.where(gen >= 3, 128 / 130, 0.8)
    ceiling: np.ndarray = gts * 1e9 * code * width / 8
    return ceiling


@dataclass
class GpuTick:
    """One tick of every GPU of a node, after power capping and thermal control."""

    util: np.ndarray  # fraction of the tick a kernel ran (NVML's utilization), NCCL's waits included
    load: np.ndarray  # fraction of full power the work draws
    power: np.ndarray
    limit: np.ndarray
    capped: np.ndarray
    clock_factor: np.ndarray  # SM clock as a fraction of its maximum
    sw_thermal: np.ndarray
    hw_thermal: np.ndarray
    reasons: np.ndarray  # clocks event reason bits


def gpu_step(
    st: NodeState,
    util: np.ndarray,
    load: np.ndarray,
    dt: float,
    diurnal: float,
    rng: np.random.Generator,
    capped_gpus: list[int] | None,
    overheating: list[int] | None,
    worsened: bool,
) -> GpuTick:
    """Advances a node's GPUs by dt: power from the work's load, a cap, the thermal model, throttle counters.

    capped_gpus: GPUs under a lowered power limit; overheating: GPUs whose cooling is
    degrading (None: no thermal fault); worsened: the fault has gone past what SW
    control can hold. The clock it settles on slows the next tick's compute.
    """
    g = st.gpu
    gain = g.thermal_gain
    # Power: idle plus what the work costs; a power cap clips it and the clocks follow.
    limit = np.full(len(util), g.power_limit_w)
    if capped_gpus is not None:
        limit[capped_gpus] = CAPPED_FRACTION * g.power_limit_w
    want = g.idle_power_w + (g.load_power_w - g.idle_power_w) * load
    capped = want > limit * 0.98
    power = np.minimum(want, limit * (0.97 + 0.02 * rng.random(len(util))))
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
    st.clock = np.clip(clock_factor, 0.2, 1.0)
    st.energy += power * dt
    st.throttle[:, 0] += np.where(capped, dt, 0.0)
    st.throttle[:, 1] += np.where(sw_thermal, dt, 0.0)
    st.throttle[:, 2] += np.where(hw_thermal, dt, 0.0)
    reasons = (
        np.where(util < 0.05, IDLE, 0)
        | np.where(capped, SW_POWER_CAP, 0)
        | np.where(sw_thermal, SW_THERMAL, 0)
        | np.where(hw_thermal, HW_THERMAL, 0)
    )
    return GpuTick(util, load, power, limit, capped, clock_factor, sw_thermal, hw_thermal, reasons)
