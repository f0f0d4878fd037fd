"""The simulated node's state written out as telemetry: rows per table, cut into batches, and the label spans.

Rows carry the same tables and columns the real agent sends (core.schema), so a
simulated trace replays, stores and detects like a recorded one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from ironsight.core.columnar import TableBuilder, Value
from ironsight.offline.simulate.hardware import (
    GIB,
    LOADER_WORKERS_PER_GPU,
    MIB,
    RDMA_COUNTERS,
    GpuTick,
    NodeState,
)
from ironsight.offline.simulate.scenarios import Event
from ironsight.offline.simulate.workload import Host
from ironsight.v1 import telemetry_pb2 as pb


class Emitter:
    """Rows into each node's table builders, batches cut from them, and label spans from marks."""

    def __init__(self, header: pb.TraceHeader, dt: float, seed: int) -> None:
        self.header, self.dt, self.seed = header, dt, seed
        nodes = len(header.nodes)
        self.builders: list[dict[str, TableBuilder]] = [{} for _ in range(nodes)]
        self.seqs = [0] * nodes
        self.label_start: dict[tuple[str, int, int], float] = {}
        self.labels: dict[tuple[str, int, int], tuple[float, float, Event]] = {}
        self.critical: set[tuple[str, int, int]] = set()

    def add(self, n: int, table: str, time_ns: int, device: str, values: Mapping[str, Value]) -> None:
        b = self.builders[n].get(table)
        if b is None:
            b = self.builders[n][table] = TableBuilder(table)
        b.add(time_ns, device, values)

    def mark(self, kind: str, n: int, dev: int, t: float, e: Event) -> None:
        """The fault shows on (node, device) at t: its label runs from the first mark to the last."""
        key = (kind, n, dev)
        first = self.label_start.setdefault(key, t)
        self.labels[key] = (first, t + self.dt, e)

    def batches(self) -> Iterator[pb.Batch]:
        """One batch per node of everything added since the last call."""
        for n, info in enumerate(self.header.nodes):
            self.seqs[n] += 1
            batch = pb.Batch(
                node_id=info.node_id,
                boot_id=f"sim-seed{self.seed}-{n:03d}",
                seq=self.seqs[n],
                interval_s=self.dt,
            )
            batch.node.CopyFrom(info)
            for b in self.builders[n].values():
                batch.tables.append(b.to_proto())
            self.builders[n] = {}
            yield batch

    def write_labels(self, start_ns: int) -> None:
        for (kind, n, d), (start, end, e) in sorted(self.labels.items(), key=lambda kv: (kv[1][0], kv[0])):
            self.header.labels.add(
                kind=kind,
                node=f"sim-{n:03d}",
                device=f"mlx5_{e.port}:1" if kind == "network_jitter" else ("" if d < 0 else str(d)),
                start_ns=start_ns + round(start * 1e9),
                end_ns=start_ns + round(end * 1e9),
                cause="gpu_lost" if kind == "hardware_fault" else e.cause,  # the one hardware fault simulated
                severity="critical"
                if (kind, n, d) in self.critical
                else ("warning" if kind == "thermal" else ""),
            )


def gpu_rows(
    out: Emitter, n: int, tns: int, st: NodeState, tick: GpuTick, compute: np.ndarray, memory: float
) -> None:
    """Each GPU's row, as the agent's NVML sampler would read it; memory: share of the job's held."""
    g = st.gpu
    for d in range(len(tick.util)):
        util, clock, c = tick.util[d], tick.clock_factor[d], compute[d]
        sm = g.sm_clock_max_mhz * clock if util >= 0.05 else g.sm_clock_idle_mhz
        nccl = max(0.0, util - c)
        row: dict[str, float | int | None] = {
            "util_gpu_percent": float(round(100 * util)),
            "util_memory_percent": float(round(g.mem_util_at_load * c)),
            "util_gpu_sampled_percent": round(100 * util, 1),
            "memory_used_bytes": int(memory * (0.86 * g.memory_total_mib + d) * MIB),
            # As the agent counts it: the total less the driver's reservation.
            "memory_total_bytes": (g.memory_total_mib - g.memory_reserved_mib) * MIB,
            "sm_clock_hertz": round(sm) * 1e6,
            "mem_clock_hertz": g.mem_clock_mhz * 1e6,
            "sm_clock_max_hertz": g.sm_clock_max_mhz * 1e6,
            "mem_clock_max_hertz": g.mem_clock_mhz * 1e6,
            "temperature_celsius": float(round(st.gpu_temp[d])),
            "memory_temperature_celsius": float(
                round(g.idle_mem_temp_c + g.memory_thermal_gain * (tick.power[d] - g.idle_power_w))
            ),
            "temperature_slowdown_celsius": g.slowdown_c,
            "temperature_shutdown_celsius": g.shutdown_c,
            "power_watts": round(float(tick.power[d]), 2),
            "power_limit_watts": float(tick.limit[d]),
            "energy_joules": round(float(st.energy[d]), 3),
            "clocks_event_reasons": int(tick.reasons[d]),
            "throttle_sw_power_seconds": round(float(st.throttle[d, 0]), 6),
            "throttle_sw_thermal_seconds": round(float(st.throttle[d, 1]), 6),
            "throttle_hw_thermal_seconds": round(float(st.throttle[d, 2]), 6),
            "throttle_hw_power_brake_seconds": 0.0,
            "pcie_tx_bytes": int(st.pcie_tx[d]),
            "pcie_rx_bytes": int(st.pcie_rx[d]),
            "pcie_replays": 0,
            "nvlink_tx_bytes": int(st.nvlink[d]),
            "nvlink_rx_bytes": int(st.nvlink[d]),
            "pcie_link_gen": int(st.link_gen[d]),
            "pcie_link_width": int(st.link_width[d]),
            "ecc_sbe_volatile": 0,
            "ecc_dbe_volatile": 0,
            "remapped_rows_correctable": 0,
            "remapped_rows_uncorrectable": 0,
            "remapped_rows_pending": 0,
            "remapped_rows_failure": 0,
        }
        if g.gpm:  # SM activity: compute fills the SMs, NCCL's kernels occupy a few
            row["gpm_sm_active_ratio"] = round(0.92 * c + 0.06 * nccl, 4)
            row["gpm_sm_occupancy_ratio"] = round(0.48 * c + 0.02 * nccl, 4)
            row["gpm_tensor_active_ratio"] = round(0.61 * c, 4)
            row["gpm_dram_bandwidth_ratio"] = round(0.38 * c + 0.05 * nccl, 4)
        out.add(n, "gpu", tns, str(d), row)


def host_rows(
    out: Emitter, n: int, tns: int, st: NodeState, h: Host, dt: float, rng: np.random.Generator
) -> None:
    """Every core (the ranks', the loader's, the rest), load, memory, pressure and the NVMe."""
    cores, gpus = len(st.cpu), len(st.clock)
    busy = np.full(cores, h.other_busy)
    busy[:gpus] = h.ranks_busy
    busy[gpus : gpus * (1 + LOADER_WORKERS_PER_GPU)] = h.loader_busy
    busy = np.clip(busy * (0.98 + 0.04 * rng.random(cores)), 0, 1)
    iowait = np.zeros(cores)
    iowait[gpus : gpus * (1 + LOADER_WORKERS_PER_GPU)] = h.iowait
    busy = np.minimum(busy, 1 - iowait)
    st.cpu += np.stack([0.8 * busy, 0.18 * busy, 1 - busy - iowait, iowait, 0.02 * busy, 0 * busy], 1) * dt
    values = np.round(st.cpu, 2).tolist()
    for c, (user, system, idle, wait, softirq, steal) in enumerate(values):
        out.add(n, "cpu", tns, str(c), {
            "user_seconds": user, "system_seconds": system, "idle_seconds": idle, "iowait_seconds": wait,
            "softirq_seconds": softirq, "nice_seconds": 0.0, "irq_seconds": 0.0, "steal_seconds": steal,
            "frequency_hertz": 3.1e9 if busy[c] > 0.5 else 2.0e9, "frequency_max_hertz": 3.8e9,
            "core_id": c % (cores // 2), "package_id": c // (cores // 2),
            "core_throttles": 0, "package_throttles": 0,
        })  # fmt: skip
    st.load1 += (h.run_queue - st.load1) * (1 - np.exp(-dt / 60))
    blocked = int(h.iowait * gpus * LOADER_WORKERS_PER_GPU)
    out.add(n, "load", tns, "", {
        "load1": round(st.load1 + blocked, 2), "load5": round(st.load1, 2), "load15": round(st.load1, 2),
        "procs_running": round(h.run_queue), "procs_blocked": blocked,
    })  # fmt: skip
    held = h.ranks_busy > 0.5
    out.add(n, "memory", tns, "", {
        "mem_total_bytes": 2048 * GIB, "mem_available_bytes": int((1800 - 300 * held) * GIB),
        "mem_free_bytes": int((900 - 300 * held) * GIB), "cached_bytes": 800 * GIB,
        "dirty_bytes": int(h.dirty_gib * GIB),
    })  # fmt: skip
    for key, share in (("cpu_some", h.cpu_some), ("io_some", h.io_some), ("io_full", h.io_full)):
        st.psi[key] += share * dt
    out.add(n, "pressure", tns, "", {f"{k}_seconds": round(v, 6) for k, v in st.psi.items()})
    st.disk["read_bytes"] += h.read_bps * dt
    st.disk["reads"] += h.read_bps * dt / (16 * 1024 if h.io_busy > 0.95 and h.read_bps else 128 * 1024)
    st.disk["written_bytes"] += h.write_bps * dt
    st.disk["writes"] += h.write_bps * dt / (256 * 1024)
    st.disk["io_time"] += dt * min(0.99, h.io_busy)
    st.disk["weighted"] += dt * (32 if h.io_busy > 0.95 else 2) * min(0.99, h.io_busy)
    out.add(n, "disk", tns, "nvme0n1", {
        "read_bytes": int(st.disk["read_bytes"]) // 512 * 512, "reads_completed": int(st.disk["reads"]),
        "written_bytes": int(st.disk["written_bytes"]) // 512 * 512,
        "writes_completed": int(st.disk["writes"]),
        "io_time_seconds": round(st.disk["io_time"], 3),
        "io_time_weighted_seconds": round(st.disk["weighted"], 3),
        "io_now": 32 if h.io_busy > 0.95 else int(h.io_busy * 4),
    })  # fmt: skip


def fabric_rows(
    out: Emitter, n: int, tns: int, st: NodeState, comm: np.ndarray, fault: Event | None, t: float, dt: float,
    rng: np.random.Generator,
) -> None:  # fmt: skip
    """One RoCE port per GPU (rail-aligned): the all-reduce's bytes, congestion and loss on a bad one; NIC, TCP."""
    gpus = len(st.clock)
    col = {name: i for i, name in enumerate(RDMA_COUNTERS)}
    st.rdma[:, col["port_data_received_bytes"]] += 2.4e10 * comm * dt
    st.rdma[:, col["port_data_transmitted_bytes"]] += 2.4e10 * comm * dt
    cnp, handled, ecn = rng.poisson(2 * dt, gpus), rng.poisson(2 * dt, gpus), rng.poisson(3 * dt, gpus)
    burst = False
    if fault is not None and fault.cause == "congestion":
        swell = 1 + 0.6 * np.sin(2 * np.pi * t / 23)
        cnp[fault.port] += rng.poisson(1800 * swell * dt)
        handled[fault.port] += rng.poisson(1700 * swell * dt)
        ecn[fault.port] += rng.poisson(4000 * swell * dt)
    elif fault is not None:
        # Loss comes in bursts (a flapping transceiver, a bad cable), some tens of seconds apart.
        if t >= st.burst_until and rng.random() < dt / 40:
            st.burst_until = t + 2 + 3 * rng.random()
        burst = t < st.burst_until
        if burst:
            st.rdma[fault.port, col["out_of_sequence"]] += rng.poisson(25 * dt)
            st.rdma[fault.port, col["packet_seq_err"]] += rng.poisson(3 * dt)
            st.rdma[fault.port, col["local_ack_timeout_err"]] += rng.poisson(0.5 * dt)
    st.rdma[:, col["np_cnp_sent"]] += cnp
    st.rdma[:, col["rp_cnp_handled"]] += handled
    st.rdma[:, col["np_ecn_marked_roce_packets"]] += ecn
    extra = {"state_id": 4, "physical_state_id": 5, "rate_bytes_per_second": 50_000_000_000}
    for g, counters in enumerate(st.rdma.astype(np.int64).tolist()):
        out.add(n, "rdma", tns, f"mlx5_{g}:1", dict(zip(RDMA_COUNTERS, counters, strict=True)) | extra)
    st.nic["rx_bytes"] += 5e7 * dt
    st.nic["tx_bytes"] += 1e7 * dt
    st.nic["rx_packets"] += 5e7 * dt / 1500
    st.nic["tx_packets"] += 1e7 * dt / 1500
    out.add(n, "nic", tns, "eth0", {k: int(v) for k, v in st.nic.items()} | {
        "up": 1, "speed_bytes_per_second": 3_125_000_000, "mtu": 9000,
        "rx_errors": 0, "rx_dropped": 0, "tx_errors": 0, "tx_dropped": 0,
    })  # fmt: skip
    st.tcp["in_segs"] += 4e4 * dt
    st.tcp["out_segs"] += 1e4 * dt
    st.tcp["retrans_segs"] += rng.poisson((60 if burst else 0.1) * dt)
    out.add(n, "tcp", tns, "", {k: int(v) for k, v in st.tcp.items()})
