"""Memory: /proc/meminfo, and per-NUMA-node totals where the machine has several nodes."""

from __future__ import annotations

import re

from ironsight.agent.samplers.base import (
    RESCAN_EVERY_S,
    BaseSampler,
    Every,
    SamplerContext,
    listdir,
    read_text,
    register,
)
from ironsight.core.reading import Reading, Value
from ironsight.core.schema import MEMINFO_FIELDS

# "MemTotal:" -> column: the file split into words in one C call, then only the
# keys we keep are looked at (a fifth cheaper than a split per line, which counts at 0.1 s).
_KEYS = {f"{key}:": column for key, column in MEMINFO_FIELDS.items()}


def parse_meminfo(text: str) -> dict[str, Value]:
    values: dict[str, Value] = dict.fromkeys(MEMINFO_FIELDS.values())
    words = text.split()
    for i, word in enumerate(words):
        column = _KEYS.get(word)
        if column is None or i + 1 >= len(words):
            continue
        try:
            number = int(words[i + 1])
        except ValueError:
            continue
        values[column] = number * 1024 if i + 2 < len(words) and words[i + 2] == "kB" else number
    return values


_NUMA = {
    "MemTotal": "mem_total_bytes",
    "MemFree": "mem_free_bytes",
    "MemUsed": "mem_used_bytes",
    "FilePages": "file_pages_bytes",
}
# Only the lines we keep, found by the regex engine rather than a Python loop over all ~30.
_NUMA_LINE = re.compile(r"^Node \d+ (MemTotal|MemFree|MemUsed|FilePages):[ \t]*(\d+)", re.M)


def parse_numa_meminfo(text: str) -> dict[str, Value]:
    """ "Node 0 MemTotal:  4417312 kB" lines -> our columns, in bytes."""
    values: dict[str, Value] = dict.fromkeys(_NUMA.values())
    for key, number in _NUMA_LINE.findall(text):
        values[_NUMA[key]] = int(number) * 1024
    return values


@register("memory", "meminfo fields and NUMA nodes")
class MemorySampler(BaseSampler):
    def __init__(self, ctx: SamplerContext) -> None:
        super().__init__(ctx)
        self._meminfo = str(self.paths.proc("meminfo"))
        self._nodes: list[tuple[str, str]] = []
        self._rescan = Every(RESCAN_EVERY_S)
        self._every = Every()
        self._numa: list[tuple[str, dict[str, Value]]] = []

    def sample(self) -> Reading:
        text = read_text(self._meminfo)
        if text is None:
            raise OSError(f"cannot read {self._meminfo}")
        reading = Reading()
        reading.add("memory", "", parse_meminfo(text))
        if self._rescan.due():  # NUMA nodes come and go only with hotplug
            self._nodes = [
                (node.name[4:], str(node / "meminfo"))
                for node in listdir(self.paths.sys("devices", "system", "node"))
                if re.fullmatch(r"node\d+", node.name)
            ]
        if self._every.due():  # a NUMA node's meminfo walks all its zones: once a second is plenty
            self._numa = [
                (node, parse_numa_meminfo(text)) for node, path in self._nodes if (text := read_text(path))
            ]
        for node, values in self._numa:
            reading.add("memory_numa", node, values)
        return reading
