"""memory: /proc/meminfo without the fields old kernels lack."""

from __future__ import annotations

from ironsight.agent.samplers.memory import parse_meminfo


def test_meminfo_without_memavailable() -> None:
    v = parse_meminfo("MemTotal: 1000 kB\nMemFree: 10 kB\nHugePages_Total: 4\nbogus\nDirty: x kB\n")
    assert v["mem_total_bytes"] == 1024000
    assert v["hugepages_total"] == 4
    assert v["mem_available_bytes"] is None
    assert v["dirty_bytes"] is None
