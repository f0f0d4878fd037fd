"""Memory: /proc/meminfo, and per-NUMA-node totals where the machine has several nodes."""

from __future__ import annotations

import re
import time

from agent.samplers.base import BaseSampler, Reading, SamplerContext, Value, listdir, read_text, register

# meminfo key -> our column. Values are kB in the file (really KiB).
FIELDS = {
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

NODES_REFRESH_S = 60.0


def parse_meminfo(text: str) -> dict[str, Value]:
    values: dict[str, Value] = dict.fromkeys(FIELDS.values())
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        column = FIELDS.get(key.strip())
        parts = rest.split()
        if column is None or not parts:
            continue
        try:
            number = int(parts[0])
        except ValueError:
            continue
        values[column] = number * 1024 if len(parts) > 1 and parts[1] == "kB" else number
    return values


def parse_numa_meminfo(text: str) -> dict[str, Value]:
    """ "Node 0 MemTotal:  4417312 kB" lines -> our columns, in bytes."""
    raw: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0] == "Node" and parts[3].isdigit():
            raw[parts[2].rstrip(":")] = int(parts[3]) * 1024
    return {
        "mem_total_bytes": raw.get("MemTotal"),
        "mem_free_bytes": raw.get("MemFree"),
        "mem_used_bytes": raw.get("MemUsed"),
        "file_pages_bytes": raw.get("FilePages"),
    }


@register("memory", "meminfo fields and NUMA nodes")
class MemorySampler(BaseSampler):
    def __init__(self, ctx: SamplerContext) -> None:
        super().__init__(ctx)
        self._meminfo = str(self.paths.proc("meminfo"))
        self._nodes: list[tuple[str, str]] = []
        self._nodes_at = -NODES_REFRESH_S

    def sample(self) -> Reading:
        text = read_text(self._meminfo)
        if text is None:
            raise OSError(f"cannot read {self._meminfo}")
        reading = Reading()
        reading.add("memory", "", parse_meminfo(text))
        if time.monotonic() - self._nodes_at > NODES_REFRESH_S:  # NUMA nodes come and go only with hotplug
            self._nodes = [
                (node.name[4:], str(node / "meminfo"))
                for node in listdir(self.paths.sys("devices", "system", "node"))
                if re.fullmatch(r"node\d+", node.name)
            ]
            self._nodes_at = time.monotonic()
        for node, path in self._nodes:
            numa = read_text(path)
            if numa:
                reading.add("memory_numa", node, parse_numa_meminfo(numa))
        return reading
