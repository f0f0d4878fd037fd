"""The tables an agent may send and the collector stores: names, column types, units.

This is part of the wire contract (like telemetry.proto): the agent encodes
exactly these columns, the collector validates against them, and a test pins
the collector's migrated DuckDB schema to them. Counters stay raw counters;
values are in base units (bytes, seconds, hertz, watts, joules, celsius).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Literal

ColumnType = Literal["int", "float"]
ColumnKind = Literal["counter", "gauge"]


@dataclass(frozen=True)
class Field:
    name: str
    type: ColumnType
    kind: ColumnKind

    @property
    def duckdb_type(self) -> str:
        return "BIGINT" if self.type == "int" else "DOUBLE"


@dataclass(frozen=True)
class Table:
    name: str
    device: str  # what the device key names: "cpu", "disk", "" for host-wide tables
    fields: tuple[Field, ...]

    @cached_property
    def _by_name(self) -> dict[str, Field]:
        return {f.name: f for f in self.fields}

    def field(self, name: str) -> Field:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{self.name} has no column {name!r}") from None

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


def _fields(kind: ColumnKind, type_: ColumnType, names: str) -> tuple[Field, ...]:
    return tuple(Field(n, type_, kind) for n in names.split())


def _table(name: str, device: str, *groups: tuple[Field, ...]) -> Table:
    return Table(name, device, tuple(f for g in groups for f in g))


CPU = _table(
    "cpu",
    "cpu",
    _fields(
        "counter",
        "float",
        "user_seconds nice_seconds system_seconds idle_seconds iowait_seconds irq_seconds "
        "softirq_seconds steal_seconds guest_seconds guest_nice_seconds",
    ),
    _fields("gauge", "float", "frequency_hertz frequency_max_hertz"),
    _fields("gauge", "int", "core_id package_id"),
    _fields("counter", "int", "core_throttles package_throttles"),
)

LOAD = _table(
    "load",
    "",
    _fields("gauge", "float", "load1 load5 load15"),
    _fields("gauge", "int", "procs_running procs_blocked"),
    _fields("counter", "int", "context_switches interrupts forks"),
)

MEMORY = _table(
    "memory",
    "",
    _fields(
        "gauge",
        "int",
        "mem_total_bytes mem_free_bytes mem_available_bytes buffers_bytes cached_bytes "
        "dirty_bytes writeback_bytes active_bytes inactive_bytes mapped_bytes shmem_bytes "
        "slab_bytes swap_total_bytes swap_free_bytes swap_cached_bytes hugepages_total "
        "hugepages_free hugepage_size_bytes",
    ),
)

MEMORY_NUMA = _table(
    "memory_numa",
    "numa node",
    _fields("gauge", "int", "mem_total_bytes mem_free_bytes mem_used_bytes file_pages_bytes"),
)

PRESSURE = _table(
    "pressure",
    "",
    _fields(
        "counter",
        "float",
        "cpu_some_seconds cpu_full_seconds io_some_seconds io_full_seconds "
        "memory_some_seconds memory_full_seconds irq_full_seconds",
    ),
)

DISK = _table(
    "disk",
    "block device",
    _fields(
        "counter",
        "int",
        "reads_completed reads_merged read_bytes writes_completed writes_merged written_bytes "
        "discards_completed discards_merged discarded_sectors flush_requests",
    ),
    _fields(
        "counter",
        "float",
        "read_time_seconds write_time_seconds io_time_seconds io_time_weighted_seconds "
        "discard_time_seconds flush_requests_time_seconds",
    ),
    _fields("gauge", "int", "io_now"),
)

NIC = _table(
    "nic",
    "interface",
    _fields(
        "counter",
        "int",
        "rx_bytes rx_packets rx_errors rx_dropped rx_fifo_errors rx_frame_errors rx_compressed "
        "rx_multicast tx_bytes tx_packets tx_errors tx_dropped tx_fifo_errors tx_collisions "
        "tx_carrier_errors tx_compressed carrier_changes",
    ),
    _fields("gauge", "int", "up speed_bytes_per_second mtu"),
)

TCP = _table(
    "tcp",
    "",
    _fields("counter", "int", "active_opens passive_opens in_segs out_segs retrans_segs in_errs out_rsts"),
    _fields("gauge", "int", "curr_estab"),
)

# /proc/meminfo key -> our column (the agent's parser and the exposition's names both use it).
# Values are kB in the file (really KiB).
MEMINFO_FIELDS = {
    "MemTotal": "mem_total_bytes",
    "MemFree": "mem_free_bytes",
    "MemAvailable": "mem_available_bytes",
    "Buffers": "buffers_bytes",
    "Cached": "cached_bytes",
    "Dirty": "dirty_bytes",
    "Writeback": "writeback_bytes",
    "Active": "active_bytes",
    "Inactive": "inactive_bytes",
    "Mapped": "mapped_bytes",
    "Shmem": "shmem_bytes",
    "Slab": "slab_bytes",
    "SwapTotal": "swap_total_bytes",
    "SwapFree": "swap_free_bytes",
    "SwapCached": "swap_cached_bytes",
    "HugePages_Total": "hugepages_total",
    "HugePages_Free": "hugepages_free",
    "Hugepagesize": "hugepage_size_bytes",
}


# InfiniBand / RoCE port counters. The kernel counts port_rcv_data and
# port_xmit_data in 4-byte words; the sampler multiplies, so *_bytes are bytes.
RDMA_PORT_COUNTERS = (
    "port_data_received_bytes port_data_transmitted_bytes port_packets_received "
    "port_packets_transmitted port_discards_received unicast_packets_received unicast_packets_transmitted "
    "multicast_packets_received multicast_packets_transmitted port_errors_received "
    "port_discards_transmitted port_transmit_wait link_downed link_error_recovery symbol_error "
    "port_constraint_errors_received port_constraint_errors_transmitted "
    "excessive_buffer_overrun_errors local_link_integrity_errors vl15_dropped"
)
RDMA_HW_COUNTERS = (
    "np_cnp_sent rp_cnp_handled rp_cnp_ignored np_ecn_marked_roce_packets out_of_sequence "
    "packet_seq_err local_ack_timeout_err duplicate_request implied_nak_seq_err rnr_nak_retry_err "
    "roce_adp_retrans roce_slow_restart out_of_buffer"
)
RDMA = _table(
    "rdma",
    "hca:port",
    _fields("counter", "int", RDMA_PORT_COUNTERS),
    _fields("counter", "int", RDMA_HW_COUNTERS),
    _fields("gauge", "int", "state_id physical_state_id rate_bytes_per_second"),
)

HWMON = _table(
    "hwmon",
    "chip:sensor",
    _fields("gauge", "float", "temp_celsius temp_max_celsius temp_crit_celsius temp_crit_alarm"),
)

THERMAL = _table("thermal", "thermal zone", _fields("gauge", "float", "temp_celsius"))

GPU = _table(
    "gpu",
    "gpu index",
    _fields(
        "gauge",
        "float",
        "util_gpu_percent util_memory_percent util_gpu_sampled_percent "
        "sm_clock_hertz mem_clock_hertz sm_clock_max_hertz mem_clock_max_hertz "
        "temperature_celsius memory_temperature_celsius temperature_slowdown_celsius "
        "temperature_shutdown_celsius power_watts power_limit_watts fan_speed_percent "
        "gpm_sm_active_ratio gpm_sm_occupancy_ratio gpm_tensor_active_ratio gpm_dram_bandwidth_ratio",
    ),
    _fields(
        "gauge",
        "int",
        "memory_used_bytes memory_total_bytes clocks_event_reasons pcie_link_gen pcie_link_width",
    ),
    _fields("counter", "float", "energy_joules"),
    _fields(
        "counter",
        "float",
        "throttle_sw_power_seconds throttle_sw_thermal_seconds throttle_hw_thermal_seconds "
        "throttle_hw_power_brake_seconds",
    ),
    _fields(
        "counter",
        "int",
        "pcie_tx_bytes pcie_rx_bytes pcie_replays nvlink_tx_bytes nvlink_rx_bytes "
        "nvlink_crc_errors nvlink_replay_errors nvlink_recovery_errors "
        "ecc_sbe_volatile ecc_dbe_volatile ecc_sbe_aggregate ecc_dbe_aggregate",
    ),
    _fields(
        "gauge",
        "int",
        "remapped_rows_correctable remapped_rows_uncorrectable remapped_rows_pending remapped_rows_failure",
    ),
)

# XID errors are events, not samples: one row per event, at the time NVML saw it.
GPU_XID = _table("gpu_xid", "gpu index", _fields("gauge", "int", "xid"))

# Every sampler run reports its own duration and success, so a failing source
# is visible in the data rather than silent.
SAMPLER = _table(
    "sampler", "sampler", _fields("gauge", "float", "duration_seconds"), _fields("gauge", "int", "success")
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        CPU,
        LOAD,
        MEMORY,
        MEMORY_NUMA,
        PRESSURE,
        DISK,
        NIC,
        TCP,
        RDMA,
        HWMON,
        THERMAL,
        GPU,
        GPU_XID,
        SAMPLER,
    )
}


# Device names. The kernel names interfaces, block devices, hwmon chips, thermal
# zones and InfiniBand ports with bytes, not text: UTF-8 in practice, with spaces,
# quotes and backslashes where it permits them. Stored as they are, except what a
# string on the wire cannot carry or a reader would be fooled by: bytes that are
# not UTF-8 (Python hands them over as lone surrogates) and control characters
# become \xNN, and a name is cut at MAX_DEVICE_NAME characters.
MAX_DEVICE_NAME = 256


@lru_cache(maxsize=4096)  # an agent's names are few and stable; hot-plug churn stays bounded
def device_name(name: str) -> str:
    """The stored form of a device name the kernel gave (see above); the same name, mostly."""
    if name.isprintable() and len(name) <= MAX_DEVICE_NAME:
        return name  # the common case: one C-level check
    out = []
    for ch in name:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's surrogateescape: the byte that was not UTF-8
            out.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF or unicodedata.category(ch) == "Cc":
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)[:MAX_DEVICE_NAME]


def device_name_problem(name: str) -> str | None:
    """Why the collector refuses a device name as sent (None: it is fine); device_name() never yields one."""
    if len(name) > MAX_DEVICE_NAME:
        return f"is {len(name)} characters, more than {MAX_DEVICE_NAME}"
    for ch in name:
        if unicodedata.category(ch) in ("Cc", "Cs"):
            return f"has the control character {ch!r}"
    return None
