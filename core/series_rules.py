"""Which Prometheus series each stored column becomes: names, labels and units, as data.

One table of rules serves both renderers: the agent's /metrics, which renders
one reading at a time (core/exposition.py), and the collector's remote write,
which renders whole Arrow columns at once (collector/remote_write/encode.py).
So a metric added here lands in both, under the same name and labels. What a
rule cannot say (a value built from two columns, labels taken from values,
the XID history) is in SPECIAL and each renderer handles it itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ironsight.core.reading import DeviceInfo
from ironsight.core.schema import MEMINFO_FIELDS, RDMA_HW_COUNTERS, TABLES


@dataclass(frozen=True)
class Rule:
    column: str
    name: str  # the sample's name: a counter's ends in _total
    kind: str  # gauge, counter or untyped
    scale: float = 1.0  # value * scale, for dcgm-exporter's units
    labels: tuple[tuple[str, str], ...] = ()  # beside the device's labels, e.g. mode="user"


def _g(column: str, name: str, scale: float = 1.0, **labels: str) -> Rule:
    return Rule(column, name, "gauge", scale, tuple(labels.items()))


def _c(column: str, name: str, **labels: str) -> Rule:
    return Rule(column, name, "counter", 1.0, tuple(labels.items()))


_CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
_DISK = (
    "reads_completed reads_merged read_bytes read_time_seconds writes_completed writes_merged "
    "written_bytes write_time_seconds io_time_seconds io_time_weighted_seconds discards_completed "
    "discards_merged discarded_sectors discard_time_seconds flush_requests flush_requests_time_seconds"
)
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


def _rdma() -> tuple[Rule, ...]:
    hw = set(RDMA_HW_COUNTERS.split())
    out = []
    for f in TABLES["rdma"].fields:
        if f.name in hw:
            out.append(_c(f.name, f"ironsight_rdma_{f.name}_total"))
        elif f.kind == "counter":
            out.append(_c(f.name, f"node_infiniband_{f.name}_total"))
        else:
            out.append(_g(f.name, f"node_infiniband_{f.name}"))
    return tuple(out)


def _gpu() -> tuple[Rule, ...]:
    dcgm = [_g(column, name, scale) for column, (name, scale) in _DCGM.items()]
    ours = [
        Rule(f.name, f"ironsight_gpu_{f.name}{'_total' if f.kind == 'counter' else ''}", f.kind)
        for f in TABLES["gpu"].fields
    ]
    return (*dcgm, *ours)


RULES: dict[str, tuple[Rule, ...]] = {
    "cpu": (
        *(_c(f"{mode}_seconds", "node_cpu_seconds_total", mode=mode) for mode in _CPU_MODES),
        _c("guest_seconds", "node_cpu_guest_seconds_total", mode="user"),
        _c("guest_nice_seconds", "node_cpu_guest_seconds_total", mode="nice"),
        _g("frequency_hertz", "node_cpu_scaling_frequency_hertz"),
        _g("frequency_max_hertz", "node_cpu_scaling_frequency_max_hertz"),
    ),
    "load": (
        *(_g(k, f"node_{k}") for k in ("load1", "load5", "load15")),
        _g("procs_running", "node_procs_running"),
        _g("procs_blocked", "node_procs_blocked"),
        _c("context_switches", "node_context_switches_total"),
        _c("interrupts", "node_intr_total"),
        _c("forks", "node_forks_total"),
    ),
    "memory": tuple(
        _g(column, f"node_memory_{key}_bytes" if column.endswith("_bytes") else f"node_memory_{key}")
        for key, column in MEMINFO_FIELDS.items()
    ),
    "memory_numa": (
        _g("mem_total_bytes", "node_memory_numa_MemTotal"),
        _g("mem_free_bytes", "node_memory_numa_MemFree"),
        _g("mem_used_bytes", "node_memory_numa_MemUsed"),
    ),
    "pressure": tuple(_c(column, name) for column, name in _PRESSURE.items()),
    "disk": (
        *(_c(column, f"node_disk_{column}_total") for column in _DISK.split()),
        _g("io_now", "node_disk_io_now"),
    ),
    "nic": (
        *(_c(column, f"node_network_{name}_total") for column, name in _NIC.items()),
        _g("up", "node_network_up"),
        _g("speed_bytes_per_second", "node_network_speed_bytes"),
        _g("mtu", "node_network_mtu_bytes"),
        _c("carrier_changes", "node_network_carrier_changes_total"),
    ),
    "tcp": tuple(
        Rule(column, f"node_netstat_Tcp_{name}", "gauge" if column == "curr_estab" else "untyped")
        for column, name in _TCP.items()
    ),
    "rdma": _rdma(),
    "hwmon": (
        _g("temp_celsius", "node_hwmon_temp_celsius"),
        _g("temp_max_celsius", "node_hwmon_temp_max_celsius"),
        _g("temp_crit_celsius", "node_hwmon_temp_crit_celsius"),
        _g("temp_crit_alarm", "node_hwmon_temp_crit_alarm_celsius"),
    ),
    "thermal": (_g("temp_celsius", "node_thermal_zone_temp"),),
    "gpu": _gpu(),
    "sampler": (
        _g("duration_seconds", "ironsight_sampler_duration_seconds"),
        _g("success", "ironsight_sampler_success"),
    ),
}

# What rules cannot say; both renderers produce these themselves.
CORE_THROTTLES = "node_cpu_core_throttles_total"  # {core, package}: once per core, not per hyperthread
PACKAGE_THROTTLES = "node_cpu_package_throttles_total"  # {package}
FB_FREE = "DCGM_FI_DEV_FB_FREE"  # (memory_total_bytes - memory_used_bytes) in MiB
XID_LAST = "DCGM_FI_DEV_XID_ERRORS"  # as dcgm-exporter: the last XID seen, 0 while there has been none
XID_COUNT = "ironsight_gpu_xid_events_total"
MIB = 2**20


def gpu_labels(device: str, inventory: Mapping[tuple[str, str], DeviceInfo], hostname: str) -> dict[str, str]:
    inv = inventory.get(("gpu", device))
    attrs = inv.attrs if inv else {}
    return {
        "gpu": device,
        "UUID": attrs.get("uuid", ""),
        "modelName": attrs.get("model", ""),
        "pci_bus_id": attrs.get("pci_bus_id", ""),
        "hostname": hostname,
    }


def device_labels(
    table: str, device: str, inventory: Mapping[tuple[str, str], DeviceInfo], hostname: str
) -> dict[str, str]:
    """The labels a row's device key becomes, as node_exporter and dcgm-exporter name them."""
    if table == "cpu":
        return {"cpu": device}
    if table in ("disk", "nic"):
        return {"device": device}
    if table == "memory_numa":
        return {"node": device}
    if table == "rdma":
        hca, _, port = device.rpartition(":")
        return {"device": hca, "port": port}
    if table == "hwmon":
        chip, _, sensor = device.rpartition(":")
        return {"chip": chip, "sensor": sensor}
    if table == "thermal":
        inv = inventory.get(("thermal", device))
        return {"type": inv.attrs.get("type", "") if inv else "", "zone": device}
    if table == "gpu":
        return gpu_labels(device, inventory, hostname)
    if table == "sampler":
        return {"sampler": device}
    return {}
