"""CPU: per-core time by mode (/proc/stat), frequency and thermal throttle counts (sysfs), load."""

from __future__ import annotations

import itertools
import operator
from dataclasses import dataclass

from ironsight.agent.samplers.base import (
    RESCAN_EVERY_S,
    BaseSampler,
    Every,
    SamplerContext,
    read_int,
    read_int_fast,
    read_text,
    register,
    to_int,
)
from ironsight.core.reading import Reading, Value

# /proc/stat counts in USER_HZ, which the kernel fixes at 100 for userspace
# whatever CONFIG_HZ is (see man 5 proc).
USER_HZ = 100.0

# Column order of a "cpuN" line. Older kernels stop earlier (steal arrived in
# 2.6.11, guest in 2.6.24, guest_nice in 2.6.33): missing columns are NULL.
MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")


_MODE_COLUMNS = tuple(f"{mode}_seconds" for mode in MODES)


_PER_HZ = itertools.repeat(USER_HZ)


def _cpu_seconds(fields: list[str]) -> dict[str, Value]:
    """One cpu line's modes in seconds: map, zip and dict in C (a 192-core node has 192 lines a tick)."""
    try:
        values: dict[str, Value] = dict(
            zip(_MODE_COLUMNS, map(operator.truediv, map(int, fields), _PER_HZ), strict=False)
        )
    except ValueError:
        values = {
            c: None if (r := to_int(f)) is None else r / USER_HZ
            for c, f in zip(_MODE_COLUMNS, fields, strict=False)
        }
    if len(values) < len(_MODE_COLUMNS):  # older kernels stop early: those are NULL
        values = {c: values.get(c) for c in _MODE_COLUMNS}
    return values


def parse_stat(text: str) -> tuple[dict[str, dict[str, Value]], dict[str, Value]]:
    """Per-cpu seconds by mode, and the host-wide counters of /proc/stat."""
    cpus: dict[str, dict[str, Value]] = {}
    host: dict[str, Value] = {}
    for line in text.splitlines():
        # The intr and softirq lines carry a thousand or more fields: split only
        # as far as the total (measured: most of this function's time otherwise).
        parts = line.split(None, 2) if line.startswith(("intr", "softirq")) else line.split()
        if not parts:
            continue
        key = parts[0]
        if key.startswith("cpu") and key != "cpu":
            cpus[key[3:]] = _cpu_seconds(parts[1:])
        elif key == "ctxt" and len(parts) > 1:
            host["context_switches"] = to_int(parts[1])
        elif key == "intr" and len(parts) > 1:
            host["interrupts"] = to_int(parts[1])
        elif key == "processes" and len(parts) > 1:
            host["forks"] = to_int(parts[1])
        elif key in ("procs_running", "procs_blocked") and len(parts) > 1:
            host[key] = to_int(parts[1])
    return cpus, host


def parse_loadavg(text: str) -> dict[str, Value]:
    parts = text.split()
    out: dict[str, Value] = {}
    for i, name in enumerate(("load1", "load5", "load15")):
        try:
            out[name] = float(parts[i])
        except (IndexError, ValueError):
            out[name] = None
    return out


def _khz(value: int | None) -> float | None:
    return None if value is None else value * 1000.0


@dataclass(frozen=True)
class CpuFacts:
    static: dict[str, Value]
    cur_freq: str | None
    core_throttles: str | None
    package_throttles: str | None


@register("cpu", "per-core time by mode, frequency, thermal throttle counts, load")
class CpuSampler(BaseSampler):
    def __init__(self, ctx: SamplerContext) -> None:
        super().__init__(ctx)
        self._facts: dict[str, CpuFacts] = {}
        self._rescan = Every(RESCAN_EVERY_S)
        self._every = Every()
        self._per_cpu: dict[str, dict[str, Value]] = {}
        self._load: dict[str, Value] = {}
        self._stat = str(self.paths.proc("stat"))
        self._loadavg = str(self.paths.proc("loadavg"))

    def _static(self, cpu: str) -> CpuFacts:
        """Topology, maximum frequency and which files exist change only with
        hotplug: found once a minute, so a tick opens only files that are there."""
        facts = self._facts.get(cpu)
        if facts is None:
            base = self.paths.sys("devices", "system", "cpu", f"cpu{cpu}")
            static: dict[str, Value] = {
                "frequency_max_hertz": _khz(read_int(base / "cpufreq" / "scaling_max_freq")),
                "core_id": read_int(base / "topology" / "core_id"),
                "package_id": read_int(base / "topology" / "physical_package_id"),
            }

            def existing(*parts: str) -> str | None:
                path = base.joinpath(*parts)
                return str(path) if path.exists() else None

            # Throttle counts belong to a core and a package: read them from
            # the first thread of each only, and share the value.
            core_key = (static["package_id"], static["core_id"])
            first_of_core = core_key not in {
                (f.static["package_id"], f.static["core_id"]) for f in self._facts.values()
            }
            first_of_package = static["package_id"] not in {
                f.static["package_id"] for f in self._facts.values()
            }
            facts = self._facts[cpu] = CpuFacts(
                static,
                existing("cpufreq", "scaling_cur_freq"),
                existing("thermal_throttle", "core_throttle_count") if first_of_core else None,
                existing("thermal_throttle", "package_throttle_count") if first_of_package else None,
            )
        return facts

    def _slow(self, cpus: list[str]) -> dict[str, dict[str, Value]]:
        """Per cpu: its static facts, frequency and throttle counts (the per-core sysfs reads)."""
        core_counts: dict[tuple[Value, Value], Value] = {}
        package_counts: dict[Value, Value] = {}
        facts = [(cpu, self._static(cpu)) for cpu in cpus]
        for _, f in facts:
            if f.core_throttles:
                core_counts[(f.static["package_id"], f.static["core_id"])] = read_int_fast(f.core_throttles)
            if f.package_throttles:
                package_counts[f.static["package_id"]] = read_int_fast(f.package_throttles)
        out = {}
        for cpu, f in facts:
            khz = read_int_fast(f.cur_freq) if f.cur_freq else None
            out[cpu] = {
                **f.static,
                "frequency_hertz": _khz(khz),
                "core_throttles": core_counts.get((f.static["package_id"], f.static["core_id"])),
                "package_throttles": package_counts.get(f.static["package_id"]),
            }
        return out

    def sample(self) -> Reading:
        if self._rescan.due():
            self._facts = {}
        reading = Reading()
        stat = read_text(self._stat)
        if stat is None:
            raise OSError(f"cannot read {self._stat}")
        cpus, host = parse_stat(stat)
        # Per-core sysfs files and the load average (which the kernel recomputes every
        # 5 s) at most once a second; a cpu coming online is read at once.
        if self._every.due() or cpus.keys() != self._per_cpu.keys():
            self._per_cpu = self._slow(list(cpus))
            self._load = parse_loadavg(read_text(self._loadavg) or "")
        for cpu, values in cpus.items():
            values.update(self._per_cpu[cpu])
            reading.add("cpu", cpu, values)
        host.update(self._load)
        reading.add("load", "", host)
        return reading
