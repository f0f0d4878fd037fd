"""InfiniBand / RoCE ports from sysfs: port counters and the NIC's hw_counters (no pyrdma needed)."""

from __future__ import annotations

import re

from agent.samplers.base import BaseSampler, DeviceInfo, Reading, Value, listdir, read_text, register
from ironsight.schema import RDMA_HW_COUNTERS

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


def read_counter(text: str | None) -> int | None:
    """A counter file's value; "N/A (no PMA)" and garbage are NULL."""
    if text is None:
        return None
    try:
        return int(text.split()[0])
    except (ValueError, IndexError):
        return None


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


@register("rdma", "InfiniBand/RoCE port counters and hw_counters from sysfs")
class RdmaSampler(BaseSampler):
    def sample(self) -> Reading:
        reading = Reading()
        for hca in listdir(self.paths.sys("class", "infiniband")):
            for port in listdir(hca / "ports"):
                values: dict[str, Value] = {}
                for fname, (column, scale) in PORT_COUNTERS.items():
                    raw = read_counter(read_text(port / "counters" / fname))
                    values[column] = None if raw is None else raw * scale
                for name in HW_COUNTERS:
                    values[name] = read_counter(read_text(port / "hw_counters" / name))
                values["state_id"] = parse_state(read_text(port / "state"))
                values["physical_state_id"] = parse_state(read_text(port / "phys_state"))
                values["rate_bytes_per_second"] = parse_rate(read_text(port / "rate"))
                reading.add("rdma", f"{hca.name}:{port.name}", values)
        return reading

    def inventory(self) -> list[DeviceInfo]:
        out = []
        for hca in listdir(self.paths.sys("class", "infiniband")):
            attrs = {k: read_text(hca / k) or "" for k in ("board_id", "fw_ver", "hca_type", "node_guid")}
            for port in listdir(hca / "ports"):
                port_attrs = dict(attrs, link_layer=read_text(port / "link_layer") or "")
                out.append(DeviceInfo("rdma", f"{hca.name}:{port.name}", port_attrs))
        return out
