"""InfiniBand / RoCE ports from sysfs: port counters and the NIC's hw_counters (no pyrdma needed)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ironsight.agent.samplers.base import (
    RESCAN_EVERY_S,
    BaseSampler,
    Every,
    SamplerContext,
    listdir,
    read_int_fast,
    read_text,
    register,
)
from ironsight.core.reading import DeviceInfo, Reading, Value
from ironsight.core.schema import RDMA_HW_COUNTERS

# counters/ file -> (column, scale). port_rcv_data and port_xmit_data count
# 4-byte words (IBA spec, PortCounters), hence the 4.
PORT_COUNTERS = {
    "port_rcv_data": ("port_data_received_bytes", 4),
    "port_xmit_data": ("port_data_transmitted_bytes", 4),
    "port_rcv_packets": ("port_packets_received", 1),
    "port_xmit_packets": ("port_packets_transmitted", 1),
    "port_rcv_discards": ("port_discards_received", 1),
    "unicast_rcv_packets": ("unicast_packets_received", 1),
    "unicast_xmit_packets": ("unicast_packets_transmitted", 1),
    "multicast_rcv_packets": ("multicast_packets_received", 1),
    "multicast_xmit_packets": ("multicast_packets_transmitted", 1),
    "port_rcv_errors": ("port_errors_received", 1),
    "port_xmit_discards": ("port_discards_transmitted", 1),
    "port_xmit_wait": ("port_transmit_wait", 1),
    "link_downed": ("link_downed", 1),
    "link_error_recovery": ("link_error_recovery", 1),
    "symbol_error": ("symbol_error", 1),
    "port_rcv_constraint_errors": ("port_constraint_errors_received", 1),
    "port_xmit_constraint_errors": ("port_constraint_errors_transmitted", 1),
    "excessive_buffer_overrun_errors": ("excessive_buffer_overrun_errors", 1),
    "local_link_integrity_errors": ("local_link_integrity_errors", 1),
    "VL15_dropped": ("vl15_dropped", 1),
}
HW_COUNTERS = RDMA_HW_COUNTERS.split()

_RATE = re.compile(r"^([\d.]+)\s*Gb/sec")


def parse_state(text: str | None) -> int | None:
    """ "4: ACTIVE" -> 4."""
    if not text:
        return None
    head = text.split(":", 1)[0].strip()
    return int(head) if head.isdigit() else None


def parse_rate(text: str | None) -> int | None:
    """ "40 Gb/sec (4X QDR)" -> 5_000_000_000 bytes a second."""
    m = _RATE.match(text or "")
    return int(float(m.group(1)) * 125_000_000) if m else None


@dataclass(frozen=True)
class _Port:
    """One port's files, found by a scan: a tick reads these paths and lists no folder."""

    device: str  # "mlx5_0:1"
    base: str
    counters: tuple[tuple[str, str, int], ...]  # (column, path, scale) of the counters/ files there
    hw_counters: tuple[tuple[str, str], ...]  # (column, path) of the hw_counters/ files there
    state: str
    phys_state: str
    rate: str


def scan_ports(infiniband: Path) -> list[_Port]:
    ports = []
    for hca in listdir(infiniband):
        for port in listdir(hca / "ports"):
            base = str(port)
            counters = tuple(
                (column, path, scale)
                for name, (column, scale) in PORT_COUNTERS.items()
                if os.path.exists(path := f"{base}/counters/{name}")
            )
            hw = tuple(
                (name, path) for name in HW_COUNTERS if os.path.exists(path := f"{base}/hw_counters/{name}")
            )
            ports.append(
                _Port(
                    f"{hca.name}:{port.name}",
                    base,
                    counters,
                    hw,
                    f"{base}/state",
                    f"{base}/phys_state",
                    f"{base}/rate",
                )
            )
    return ports


COLUMNS = [column for column, _ in PORT_COUNTERS.values()] + HW_COUNTERS


@register("rdma", "InfiniBand/RoCE port counters and hw_counters from sysfs")
class RdmaSampler(BaseSampler):
    """Which HCAs, ports and counter files exist is found once a minute (or when a port goes
    away), not every tick: a server has 8 or more HCAs with ~30 files each, and listing and
    joining paths for all of them cost more than reading them."""

    def __init__(self, ctx: SamplerContext) -> None:
        super().__init__(ctx)
        self._ports: list[_Port] = []
        self._rescan = Every(RESCAN_EVERY_S)

    def sample(self) -> Reading:
        if self._rescan.due():
            self._ports = scan_ports(self.paths.sys("class", "infiniband"))
        reading = Reading()
        for port in self._ports:
            state = read_text(port.state)
            if state is None and not os.path.isdir(port.base):  # gone with its HCA: look again next tick
                self._rescan.expire()
                continue
            values: dict[str, Value] = dict.fromkeys(COLUMNS)
            for column, path, scale in port.counters:
                raw = read_int_fast(path)
                values[column] = None if raw is None else raw * scale
            for column, path in port.hw_counters:
                values[column] = read_int_fast(path)
            values["state_id"] = parse_state(state)
            values["physical_state_id"] = parse_state(read_text(port.phys_state))
            values["rate_bytes_per_second"] = parse_rate(read_text(port.rate))
            reading.add("rdma", port.device, values)
        return reading

    def inventory(self) -> list[DeviceInfo]:
        out = []
        for hca in listdir(self.paths.sys("class", "infiniband")):
            attrs = {k: read_text(hca / k) or "" for k in ("board_id", "fw_ver", "hca_type", "node_guid")}
            for port in listdir(hca / "ports"):
                port_attrs = dict(attrs, link_layer=read_text(port / "link_layer") or "")
                out.append(DeviceInfo("rdma", f"{hca.name}:{port.name}", port_attrs))
        return out
