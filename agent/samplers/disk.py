"""Block devices: /proc/diskstats per device, and NVMe controller facts from sysfs."""

from __future__ import annotations

import re

from ironsight.agent.samplers.base import (
    BaseSampler,
    SamplerContext,
    listdir,
    read_text,
    register,
    to_int,
)
from ironsight.core.reading import DeviceInfo, Reading, Value

SECTOR_BYTES = 512  # diskstats counts 512-byte sectors whatever the device's block size

# Partitions and pseudo devices, as node_exporter's default device exclude.
EXCLUDE = re.compile(r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$")

# Per-line field counts (after major, minor, name): 11 before kernel 4.18,
# 15 with discard stats (4.18), 17 with flush stats (5.5). Columns a kernel
# does not have are NULL, not 0.
BASE = (
    ("reads_completed", 1),
    ("reads_merged", 1),
    ("read_bytes", SECTOR_BYTES),
    ("read_time_seconds", 0.001),
    ("writes_completed", 1),
    ("writes_merged", 1),
    ("written_bytes", SECTOR_BYTES),
    ("write_time_seconds", 0.001),
    ("io_now", 1),
    ("io_time_seconds", 0.001),
    ("io_time_weighted_seconds", 0.001),
    ("discards_completed", 1),
    ("discards_merged", 1),
    ("discarded_sectors", 1),
    ("discard_time_seconds", 0.001),
    ("flush_requests", 1),
    ("flush_requests_time_seconds", 0.001),
)


def parse_diskstats(text: str, exclude: re.Pattern[str] = EXCLUDE) -> dict[str, dict[str, Value]]:
    devices: dict[str, dict[str, Value]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 14 or exclude.match(parts[2]):
            continue
        values: dict[str, Value] = {}
        for i, (column, scale) in enumerate(BASE):
            raw = to_int(parts[3 + i]) if 3 + i < len(parts) else None
            values[column] = None if raw is None else raw * scale
        devices[parts[2]] = values
    return devices


@register("disk", "diskstats per block device, NVMe controller info")
class DiskSampler(BaseSampler):
    def __init__(self, ctx: SamplerContext) -> None:
        super().__init__(ctx)
        self._diskstats = str(self.paths.proc("diskstats"))

    def sample(self) -> Reading:
        text = read_text(self._diskstats)
        if text is None:
            raise OSError(f"cannot read {self._diskstats}")
        reading = Reading()
        for device, values in parse_diskstats(text).items():
            reading.add("disk", device, values)
        return reading

    def inventory(self) -> list[DeviceInfo]:
        out = []
        for ctrl in listdir(self.paths.sys("class", "nvme")):
            attrs = {
                key: read_text(ctrl / key) or ""
                for key in ("model", "serial", "firmware_rev", "state", "cntlid", "transport")
            }
            out.append(DeviceInfo("nvme", ctrl.name, attrs))
        return out
