"""The simulated node's state written out as telemetry: rows per table, cut into batches, and the label spans.

Rows carry the same tables and columns the real agent sends (core.schema), so a
simulated trace replays, stores and detects like a recorded one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np

from ironsight.core.columnar import TableBuilder, Value
from ironsight.offline.simulate.hardware import CORES, GIB, H100, LOADER_CORES, MIB, Gpu, GpuTick, NodeState
from ironsight.offline.simulate.scenarios import Event, Phase, Workload
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
                device="mlx5_0:1" if kind == "network_jitter" else ("" if d < 0 else str(d)),
                start_ns=start_ns + round(start * 1e9),
                end_ns=start_ns + round(end * 1e9),
                cause="gpu_lost" if kind == "hardware_fault" else e.cause,  # the one hardware fault simulated
                severity="critical"
                if (kind, n, d) in self.critical
                else ("warning" if kind == "thermal" else ""),
            )


def gpu_rows(out: Emitter, n: int, tns: int, st: NodeState, tick: GpuTick, held: bool, g: Gpu = H100) -> None:
    """Each GPU's row, as the agent's NVML sampler would read it."""
    for d in range(len(tick.busy)):
        busy, clock = tick.busy[d], tick.clock_factor[d]
        sm = g.sm_clock_max_mhz * clock if busy >= 0.05 else g.sm_clock_idle_mhz
        out.add(
            n,
            "gpu",
            tns,
            str(d),
            {
                "util_gpu_percent": float(round(100 * busy)),
                "util_memory_percent": float(round(g.mem_util_at_load * busy)),
                "util_gpu_sampled_percent": round(100 * busy, 1),
                "memory_used_bytes": int((70 * 1024 + d) * MIB) if held else 0,
                "memory_total_bytes": g.memory_total_mib * MIB,
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
                "pcie_link_gen": 5,
                "pcie_link_width": 16,
                "ecc_sbe_volatile": 0,
                "ecc_dbe_volatile": 0,
                "remapped_rows_correctable": 0,
                "remapped_rows_uncorrectable": 0,
                "remapped_rows_pending": 0,
                "remapped_rows_failure": 0,
                "gpm_sm_active_ratio": round(0.92 * busy * clock, 4),
                "gpm_sm_occupancy_ratio": round(0.48 * busy, 4),
                "gpm_tensor_active_ratio": round(0.61 * busy * clock, 4),
                "gpm_dram_bandwidth_ratio": round(0.38 * busy, 4),
            },
        )


def host_rows(
    out: Emitter, n: int, tns: int, st: NodeState, w: Workload, ph: Phase, dt: float, rng: np.random.Generator
) -> None:
    """The loader's cores, load, memory, pressure and the NVMe it reads from."""
    iowait = 0.3 if w.starve is not None and w.starve.cause == "storage" else 0.01
    for c in range(CORES):
        u = (w.loader_busy if c < LOADER_CORES else 0.05) * (0.98 + 0.04 * rng.random())
        u = min(u, 1.0 - iowait)
        st.cpu[c] += np.array([0.85 * u, 0.13 * u, max(0.0, 1 - u - iowait), iowait, 0.02 * u]) * dt
        out.add(
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
    load1 = LOADER_CORES * w.loader_busy + (2.0 if iowait > 0.1 else 0.0)
    out.add(
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
    out.add(
        n,
        "memory",
        tns,
        "",
        {
            "mem_total_bytes": 1024 * GIB,
            "mem_available_bytes": int((900 - 80 * ph.held) * GIB),
            "mem_free_bytes": int((400 - 80 * ph.held) * GIB),
            "cached_bytes": 500 * GIB,
            "dirty_bytes": int((2 if ph.checkpoint else 0.05) * GIB),
        },
    )
    st.psi["cpu_some"] += dt * max(0.0, w.loader_busy - 0.85) * 2
    st.psi["io_some"] += dt * (0.6 if w.io_busy > 0.95 else 0.01 * w.io_busy)
    st.psi["io_full"] += dt * (0.4 if w.io_busy > 0.95 else 0.0)
    out.add(n, "pressure", tns, "", {f"{k}_seconds": round(v, 6) for k, v in st.psi.items()})
    _disk_rows(out, n, tns, st, w, ph, dt)


def _disk_rows(out: Emitter, n: int, tns: int, st: NodeState, w: Workload, ph: Phase, dt: float) -> None:
    """The NVMe: the loader's reads, a checkpoint's writes, how busy it is."""
    read = w.demand * dt * (1.0 if ph.job else 0.0)
    written = (2.0e9 if ph.checkpoint else 1e6) * dt
    st.disk["read_bytes"] += read
    st.disk["reads"] += read / (128 * 1024)
    st.disk["written_bytes"] += written
    st.disk["writes"] += written / (256 * 1024)
    st.disk["io_time"] += dt * min(0.99, max(w.io_busy if ph.job else 0.0, 0.8 if ph.checkpoint else 0.0))
    st.disk["weighted"] += dt * (32 if w.io_busy > 0.95 else 2) * min(0.99, w.io_busy)
    out.add(
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
            "io_now": 32 if w.io_busy > 0.95 else int(w.io_busy * 4),
        },
    )


def fabric_rows(
    out: Emitter, n: int, tns: int, st: NodeState, w: Workload, t: float, dt: float, rng: np.random.Generator
) -> None:
    """The RoCE port the all-reduce runs over (congestion and loss bursts under jitter), the NIC, TCP."""
    fabric = 2.4e10 * w.comm * dt
    st.rdma["port_data_received_bytes"] += fabric
    st.rdma["port_data_transmitted_bytes"] += fabric
    burst = w.jitter is not None and (t % 10) < 5
    cnp = rng.poisson((400 if burst else 2) * dt)
    st.rdma["np_cnp_sent"] += cnp
    st.rdma["rp_cnp_handled"] += rng.poisson((380 if burst else 2) * dt)
    st.rdma["np_ecn_marked_roce_packets"] += rng.poisson((900 if burst else 3) * dt)
    if burst:
        st.rdma["out_of_sequence"] += rng.poisson(25 * dt)
        st.rdma["packet_seq_err"] += rng.poisson(3 * dt)
        st.rdma["local_ack_timeout_err"] += rng.poisson(0.5 * dt)
    out.add(
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
    out.add(
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
    out.add(n, "tcp", tns, "", {k: int(v) for k, v in st.tcp.items()})
