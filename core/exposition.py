"""Readings -> Prometheus text format, under node_exporter's and dcgm-exporter's metric names.

People's dashboards and alerts already query those names; reusing them means
ironsight drops in without rewriting any of it. What neither exporter has is
ours, under ironsight_.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from ironsight.core.reading import DeviceInfo, Owners, Reading, Value
from ironsight.core.schema import MEMINFO_FIELDS, RDMA_HW_COUNTERS, TABLES

Family = GaugeMetricFamily | CounterMetricFamily


class _Families:
    """Metric families by name, created on first use, so each mapping below is one line."""

    def __init__(self) -> None:
        self.by_name: dict[str, Family] = {}

    def add(self, name: str, kind: str, labels: dict[str, str], value: Value, help: str = "") -> None:
        if value is None:
            return  # not available: no sample, never a 0
        fam = self.by_name.get(name)
        if fam is None:
            doc = help or name
            if kind == "counter":
                fam = CounterMetricFamily(name.removesuffix("_total"), doc, labels=list(labels))
            else:
                fam = GaugeMetricFamily(name, doc, labels=list(labels))
            self.by_name[name] = fam
        fam.add_metric(list(labels.values()), float(value))


_MEMINFO_NAME = {column: key for key, column in MEMINFO_FIELDS.items()}
_CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
_DISK = {
    "reads_completed": "node_disk_reads_completed_total",
    "reads_merged": "node_disk_reads_merged_total",
    "read_bytes": "node_disk_read_bytes_total",
    "read_time_seconds": "node_disk_read_time_seconds_total",
    "writes_completed": "node_disk_writes_completed_total",
    "writes_merged": "node_disk_writes_merged_total",
    "written_bytes": "node_disk_written_bytes_total",
    "write_time_seconds": "node_disk_write_time_seconds_total",
    "io_time_seconds": "node_disk_io_time_seconds_total",
    "io_time_weighted_seconds": "node_disk_io_time_weighted_seconds_total",
    "discards_completed": "node_disk_discards_completed_total",
    "discards_merged": "node_disk_discards_merged_total",
    "discarded_sectors": "node_disk_discarded_sectors_total",
    "discard_time_seconds": "node_disk_discard_time_seconds_total",
    "flush_requests": "node_disk_flush_requests_total",
    "flush_requests_time_seconds": "node_disk_flush_requests_time_seconds_total",
}
_NIC = {
    "rx_bytes": "receive_bytes",
    "rx_packets": "receive_packets",
    "rx_errors": "receive_errs",
    "rx_dropped": "receive_drop",
    "rx_fifo_errors": "receive_fifo",
    "rx_frame_errors": "receive_frame",
    "rx_compressed": "receive_compressed",
    "rx_multicast": "receive_multicast",
    "tx_bytes": "transmit_bytes",
    "tx_packets": "transmit_packets",
    "tx_errors": "transmit_errs",
    "tx_dropped": "transmit_drop",
    "tx_fifo_errors": "transmit_fifo",
    "tx_collisions": "transmit_colls",
    "tx_carrier_errors": "transmit_carrier",
    "tx_compressed": "transmit_compressed",
}
_TCP = {
    "active_opens": "ActiveOpens",
    "passive_opens": "PassiveOpens",
    "in_segs": "InSegs",
    "out_segs": "OutSegs",
    "retrans_segs": "RetransSegs",
    "in_errs": "InErrs",
    "out_rsts": "OutRsts",
    "curr_estab": "CurrEstab",
}
_PRESSURE = {
    "cpu_some_seconds": "node_pressure_cpu_waiting_seconds_total",
    "io_some_seconds": "node_pressure_io_waiting_seconds_total",
    "io_full_seconds": "node_pressure_io_stalled_seconds_total",
    "memory_some_seconds": "node_pressure_memory_waiting_seconds_total",
    "memory_full_seconds": "node_pressure_memory_stalled_seconds_total",
    "irq_full_seconds": "node_pressure_irq_stalled_seconds_total",
}
# dcgm-exporter's names and units (MHz, MiB, W, mJ, percent).
_DCGM: dict[str, tuple[str, float]] = {
    "util_gpu_percent": ("DCGM_FI_DEV_GPU_UTIL", 1),
    "util_memory_percent": ("DCGM_FI_DEV_MEM_COPY_UTIL", 1),
    "sm_clock_hertz": ("DCGM_FI_DEV_SM_CLOCK", 1e-6),
    "mem_clock_hertz": ("DCGM_FI_DEV_MEM_CLOCK", 1e-6),
    "temperature_celsius": ("DCGM_FI_DEV_GPU_TEMP", 1),
    "memory_temperature_celsius": ("DCGM_FI_DEV_MEMORY_TEMP", 1),
    "power_watts": ("DCGM_FI_DEV_POWER_USAGE", 1),
    "power_limit_watts": ("DCGM_FI_DEV_POWER_MGMT_LIMIT", 1),
    "energy_joules": ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", 1000),
    "memory_used_bytes": ("DCGM_FI_DEV_FB_USED", 1 / 2**20),
    "clocks_event_reasons": ("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", 1),
    "pcie_replays": ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", 1),
    "ecc_sbe_volatile": ("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", 1),
    "ecc_dbe_volatile": ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", 1),
    "remapped_rows_correctable": ("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", 1),
    "remapped_rows_uncorrectable": ("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", 1),
    "remapped_rows_failure": ("DCGM_FI_DEV_ROW_REMAP_FAILURE", 1),
    "gpm_sm_active_ratio": ("DCGM_FI_PROF_SM_ACTIVE", 1),
    "gpm_sm_occupancy_ratio": ("DCGM_FI_PROF_SM_OCCUPANCY", 1),
    "gpm_tensor_active_ratio": ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", 1),
    "gpm_dram_bandwidth_ratio": ("DCGM_FI_PROF_DRAM_ACTIVE", 1),
}


class XidHistory:
    """XIDs arrive as events on one tick; a scrape must still show them afterwards."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}
        self.count: dict[str, int] = {}

    def add(self, reading: Reading) -> None:
        for index, v in reading.rows("gpu_xid"):
            xid = v.get("xid")
            if xid is not None:
                self.last[index] = int(xid)
                self.count[index] = self.count.get(index, 0) + 1


def _scaled(value: Value, scale: float) -> Value:
    return None if value is None else value * scale


class ReadingCollector(Collector):
    def __init__(
        self,
        reading: Reading,
        inventory: list[DeviceInfo],
        hostname: str,
        xids: XidHistory | None = None,
        owners: Owners | None = None,
    ) -> None:
        """owners: the last look at who owns each GPU (the reading's own, if it has one)."""
        self.reading = reading
        # dcgm-exporter's label for a GPU's HPC job (never `job`, which Prometheus owns); several
        # jobs on one GPU comma-separated. Only where some GPU has a job, as dcgm-exporter.
        # On Kubernetes, dcgm-exporter's pod, namespace and container instead (the first pod on a GPU).
        self.hpc_jobs: dict[str, str] = {}
        self.pods: dict[str, dict[str, str]] = {}
        for o in (owners or reading.owners or Owners((), ())).jobs:
            if o.source == "kubernetes":
                attrs = dict(o.attrs)
                self.pods.setdefault(o.gpu, {k: attrs.get(k, "") for k in ("pod", "namespace", "container")})
            else:
                self.hpc_jobs[o.gpu] = f"{self.hpc_jobs[o.gpu]},{o.job}" if o.gpu in self.hpc_jobs else o.job
        self.inventory = {(d.kind, d.name): d for d in inventory}
        self.hostname = hostname
        if xids is None:  # one reading alone (--once): what it saw
            xids = XidHistory()
            xids.add(reading)
        self.xids = xids

    def collect(self) -> Iterator[Metric]:
        f = _Families()
        r = self.reading
        self._cpu(f)
        for _, v in r.rows("load"):
            for k in ("load1", "load5", "load15"):
                f.add(f"node_{k}", "gauge", {}, v.get(k))
            f.add("node_procs_running", "gauge", {}, v.get("procs_running"))
            f.add("node_procs_blocked", "gauge", {}, v.get("procs_blocked"))
            f.add("node_context_switches_total", "counter", {}, v.get("context_switches"))
            f.add("node_intr_total", "counter", {}, v.get("interrupts"))
            f.add("node_forks_total", "counter", {}, v.get("forks"))
        for _, v in r.rows("memory"):
            for column, key in _MEMINFO_NAME.items():
                f.add(
                    f"node_memory_{key}_bytes" if column.endswith("_bytes") else f"node_memory_{key}",
                    "gauge",
                    {},
                    v.get(column),
                )
        for node, v in r.rows("memory_numa"):
            for column, key in (
                ("mem_total_bytes", "MemTotal"),
                ("mem_free_bytes", "MemFree"),
                ("mem_used_bytes", "MemUsed"),
            ):
                f.add(f"node_memory_numa_{key}", "gauge", {"node": node}, v.get(column))
        for _, v in r.rows("pressure"):
            for column, name in _PRESSURE.items():
                f.add(name, "counter", {}, v.get(column))
        for dev, v in r.rows("disk"):
            for column, name in _DISK.items():
                f.add(name, "counter", {"device": dev}, v.get(column))
            f.add("node_disk_io_now", "gauge", {"device": dev}, v.get("io_now"))
        for dev, v in r.rows("nic"):
            for column, name in _NIC.items():
                f.add(f"node_network_{name}_total", "counter", {"device": dev}, v.get(column))
            f.add("node_network_up", "gauge", {"device": dev}, v.get("up"))
            f.add("node_network_speed_bytes", "gauge", {"device": dev}, v.get("speed_bytes_per_second"))
            f.add("node_network_mtu_bytes", "gauge", {"device": dev}, v.get("mtu"))
            f.add("node_network_carrier_changes_total", "counter", {"device": dev}, v.get("carrier_changes"))
        for _, v in r.rows("tcp"):
            for column, name in _TCP.items():
                f.add(
                    f"node_netstat_Tcp_{name}",
                    "gauge" if column == "curr_estab" else "untyped",
                    {},
                    v.get(column),
                )
        self._rdma(f)
        for dev, v in r.rows("hwmon"):
            chip, _, sensor = dev.rpartition(":")
            labels = {"chip": chip, "sensor": sensor}
            f.add("node_hwmon_temp_celsius", "gauge", labels, v.get("temp_celsius"))
            f.add("node_hwmon_temp_max_celsius", "gauge", labels, v.get("temp_max_celsius"))
            f.add("node_hwmon_temp_crit_celsius", "gauge", labels, v.get("temp_crit_celsius"))
            f.add("node_hwmon_temp_crit_alarm_celsius", "gauge", labels, v.get("temp_crit_alarm"))
        for zone, v in r.rows("thermal"):
            inv = self.inventory.get(("thermal", zone))
            labels = {"type": inv.attrs.get("type", "") if inv else "", "zone": zone}
            f.add("node_thermal_zone_temp", "gauge", labels, v.get("temp_celsius"))
        self._gpu(f)
        for name, v in r.rows("sampler"):
            f.add("ironsight_sampler_duration_seconds", "gauge", {"sampler": name}, v.get("duration_seconds"))
            f.add("ironsight_sampler_success", "gauge", {"sampler": name}, v.get("success"))
        yield from f.by_name.values()

    def _cpu(self, f: _Families) -> None:
        cores: dict[tuple[str, str], Value] = {}
        packages: dict[str, Value] = {}
        for cpu, v in self.reading.rows("cpu"):
            for mode in _CPU_MODES:
                f.add(
                    "node_cpu_seconds_total", "counter", {"cpu": cpu, "mode": mode}, v.get(f"{mode}_seconds")
                )
            f.add(
                "node_cpu_guest_seconds_total",
                "counter",
                {"cpu": cpu, "mode": "user"},
                v.get("guest_seconds"),
            )
            f.add(
                "node_cpu_guest_seconds_total",
                "counter",
                {"cpu": cpu, "mode": "nice"},
                v.get("guest_nice_seconds"),
            )
            f.add("node_cpu_scaling_frequency_hertz", "gauge", {"cpu": cpu}, v.get("frequency_hertz"))
            f.add("node_cpu_scaling_frequency_max_hertz", "gauge", {"cpu": cpu}, v.get("frequency_max_hertz"))
            core, package = v.get("core_id"), v.get("package_id")
            if core is not None and package is not None:
                # Throttle counters belong to a core and a package, not to each
                # hyperthread: emit each once, as node_exporter does.
                cores.setdefault((str(core), str(package)), v.get("core_throttles"))
                packages.setdefault(str(package), v.get("package_throttles"))
        for (core_label, package_label), count in sorted(cores.items()):
            labels = {"core": core_label, "package": package_label}
            f.add("node_cpu_core_throttles_total", "counter", labels, count)
        for package_label, count in sorted(packages.items()):
            f.add("node_cpu_package_throttles_total", "counter", {"package": package_label}, count)

    def _rdma(self, f: _Families) -> None:
        hw = set(RDMA_HW_COUNTERS.split())
        for dev, v in self.reading.rows("rdma"):
            hca, _, port = dev.rpartition(":")
            labels = {"device": hca, "port": port}
            for field in TABLES["rdma"].fields:
                value = v.get(field.name)
                if field.name in hw:
                    f.add(f"ironsight_rdma_{field.name}_total", "counter", labels, value)
                elif field.kind == "counter":
                    f.add(f"node_infiniband_{field.name}_total", "counter", labels, value)
                else:
                    f.add(f"node_infiniband_{field.name}", "gauge", labels, value)

    def _gpu(self, f: _Families) -> None:
        for index, v in self.reading.rows("gpu"):
            inv = self.inventory.get(("gpu", index))
            attrs = inv.attrs if inv else {}
            labels = {
                "gpu": index,
                "UUID": attrs.get("uuid", ""),
                "modelName": attrs.get("model", ""),
                "pci_bus_id": attrs.get("pci_bus_id", ""),
                "hostname": self.hostname,
            }
            if self.hpc_jobs:
                labels["hpc_job"] = self.hpc_jobs.get(index, "")
            if self.pods:
                labels |= self.pods.get(index, dict.fromkeys(("pod", "namespace", "container"), ""))
            for column, (name, scale) in _DCGM.items():
                f.add(name, "gauge", labels, _scaled(v.get(column), scale))
            mem_used, mem_total = v.get("memory_used_bytes"), v.get("memory_total_bytes")
            if mem_used is not None and mem_total is not None:
                f.add("DCGM_FI_DEV_FB_FREE", "gauge", labels, (mem_total - mem_used) / 2**20)
            for field in TABLES["gpu"].fields:
                suffix = "_total" if field.kind == "counter" else ""
                f.add(f"ironsight_gpu_{field.name}{suffix}", field.kind, labels, v.get(field.name))
            # As dcgm-exporter: the last XID seen, 0 while there has been none.
            f.add("DCGM_FI_DEV_XID_ERRORS", "gauge", labels, self.xids.last.get(index, 0))
            f.add("ironsight_gpu_xid_events_total", "counter", labels, self.xids.count.get(index, 0))


def render(reading: Reading, inventory: list[DeviceInfo], hostname: str) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReadingCollector(reading, inventory, hostname))
    return generate_latest(registry)
