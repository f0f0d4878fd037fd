"""Prometheus series -> ironsight columns: the agent's own rules read backwards, plus dcgm-exporter's extras.

The agent renders each stored column as a node_exporter or dcgm-exporter series
(core/series_rules.py); a series a sender scraped from those exporters is
mapped back through the same rules, so the two directions cannot disagree on
a name, a label or a unit. A series is (name, labels); its column is the rule
whose name and fixed labels (mode="user") match, its device comes from the
labels node_exporter and dcgm-exporter put it in, and its value is divided by
the rule's scale (dcgm-exporter's MHz back to Hz, MiB back to bytes).

Some columns are not one series: DCGM_FI_DEV_FB_FREE is total minus used, and
DCGM_FI_DEV_XID_ERRORS the last XID seen. They map to the pseudo-columns below,
which the settling step turns into memory_total_bytes and gpu_xid rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ironsight.core.series_rules import FB_FREE, MIB, RULES, XID_LAST

FB_FREE_COLUMN = "_fb_free_bytes"  # settles into memory_total_bytes = free + used
XID_COLUMN = "_xid"  # settles into a gpu_xid row when it changes to a new non-zero XID

# dcgm-exporter's names for columns the agent exposes under another name, with their units.
_DCGM_EXTRA = {
    "DCGM_FI_DEV_CLOCKS_EVENT_REASONS": ("clocks_event_reasons", 1.0),  # dcgm-exporter 3.3+'s name
    "DCGM_FI_DEV_POWER_VIOLATION": ("throttle_sw_power_seconds", 1e-6),  # microseconds below clocks
    "DCGM_FI_DEV_THERMAL_VIOLATION": ("throttle_sw_thermal_seconds", 1e-6),
    "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL": ("ecc_sbe_aggregate", 1.0),
    "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL": ("ecc_dbe_aggregate", 1.0),
    "DCGM_FI_DEV_FAN_SPEED": ("fan_speed_percent", 1.0),
    "DCGM_FI_DEV_PCIE_LINK_GEN": ("pcie_link_gen", 1.0),
    "DCGM_FI_DEV_PCIE_LINK_WIDTH": ("pcie_link_width", 1.0),
    "DCGM_FI_DEV_FB_TOTAL": ("memory_total_bytes", float(MIB)),
    "DCGM_FI_DEV_SLOWDOWN_TEMP": ("temperature_slowdown_celsius", 1.0),
    "DCGM_FI_DEV_SHUTDOWN_TEMP": ("temperature_shutdown_celsius", 1.0),
    "DCGM_FI_DEV_MAX_SM_CLOCK": ("sm_clock_max_hertz", 1e6),
    "DCGM_FI_DEV_MAX_MEM_CLOCK": ("mem_clock_max_hertz", 1e6),
    FB_FREE: (FB_FREE_COLUMN, float(MIB)),
    XID_LAST: (XID_COLUMN, 1.0),
}

# The labels a table's device key is made of, joined by ":" (core.series_rules.device_labels backwards).
DEVICE_LABELS: dict[str, tuple[str, ...]] = {
    "cpu": ("cpu",),
    "disk": ("device",),
    "nic": ("device",),
    "memory_numa": ("node",),
    "rdma": ("device", "port"),
    "hwmon": ("chip", "sensor"),
    "thermal": ("zone",),
    "gpu": ("gpu",),
    "sampler": ("sampler",),
}
# Labels that describe a device rather than name it: they go to the inventory (devices.attrs).
INVENTORY_LABELS: dict[str, dict[str, str]] = {
    "gpu": {"UUID": "uuid", "modelName": "model", "pci_bus_id": "pci_bus_id"},
    "thermal": {"type": "type"},
}


@dataclass(frozen=True)
class Target:
    table: str
    column: str
    factor: float  # stored value = sent value * factor
    fixed: tuple[tuple[str, str], ...] = ()  # labels the series must carry (mode="user")


def _targets() -> dict[str, list[Target]]:
    out: dict[str, list[Target]] = {}
    for table, rules in RULES.items():
        for rule in rules:
            out.setdefault(rule.name, []).append(Target(table, rule.column, 1.0 / rule.scale, rule.labels))
    for name, (column, factor) in _DCGM_EXTRA.items():
        out.setdefault(name, []).append(Target("gpu", column, factor))
    return out


TARGETS = _targets()


def target(name: str, labels: Mapping[str, str]) -> Target | None:
    """The column a series lands in, or None: ironsight has no column for it."""
    for t in TARGETS.get(name, ()):
        for k, v in t.fixed:
            if labels.get(k) != v:
                break
        else:
            return t
    return None


def device(table: str, labels: Mapping[str, str]) -> str | None:
    """The series' device key in its table; None when a label that names it is missing."""
    names = DEVICE_LABELS.get(table)
    if names is None:
        return ""
    parts = [labels.get(n) for n in names]
    if any(p is None or p == "" for p in parts):
        return None
    return ":".join(p for p in parts if p is not None)


def family(name: str) -> str:
    """A dropped series' family for the counts: its name without a counter's or a unit's suffix."""
    for suffix in ("_total", "_bucket", "_sum", "_count", "_created"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
