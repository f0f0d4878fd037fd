"""CPU: per-core time by mode (/proc/stat), frequency and thermal throttle counts (sysfs), load."""

from __future__ import annotations

import time
from dataclasses import dataclass

from agent.samplers.base import (
    BaseSampler,
    Reading,
    SamplerContext,
    Value,
    read_int,
    read_text,
    register,
    to_int,
)

# /proc/stat counts in USER_HZ, which the kernel fixes at 100 for userspace
# whatever CONFIG_HZ is (see man 5 proc).
USER_HZ = 100.0

# Column order of a "cpuN" line. Older kernels stop earlier (steal arrived in
# 2.6.11, guest in 2.6.24, guest_nice in 2.6.33): missing columns are NULL.
MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal", "guest", "guest_nice")


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
            values: dict[str, Value] = {}
            for i, mode in enumerate(MODES):
                raw = to_int(parts[i + 1]) if i + 1 < len(parts) else None
                values[f"{mode}_seconds"] = None if raw is None else raw / USER_HZ
            cpus[key[3:]] = values
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


TOPOLOGY_REFRESH_S = 60.0


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
        self._facts_at = -TOPOLOGY_REFRESH_S

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

    def sample(self) -> Reading:
        if time.monotonic() - self._facts_at > TOPOLOGY_REFRESH_S:
            self._facts, self._facts_at = {}, time.monotonic()
        reading = Reading()
        stat = read_text(self.paths.proc("stat"))
        if stat is None:
            raise OSError(f"cannot read {self.paths.proc('stat')}")
        cpus, host = parse_stat(stat)
        core_counts: dict[tuple[Value, Value], Value] = {}
        package_counts: dict[Value, Value] = {}
        facts = [(cpu, values, self._static(cpu)) for cpu, values in cpus.items()]
        for _, _, f in facts:
            if f.core_throttles:
                core_counts[(f.static["package_id"], f.static["core_id"])] = read_int(f.core_throttles)
            if f.package_throttles:
                package_counts[f.static["package_id"]] = read_int(f.package_throttles)
        for cpu, values, f in facts:
            values["frequency_hertz"] = _khz(read_int(f.cur_freq)) if f.cur_freq else None
            values.update(f.static)
            values["core_throttles"] = core_counts.get((f.static["package_id"], f.static["core_id"]))
            values["package_throttles"] = package_counts.get(f.static["package_id"])
            reading.add("cpu", cpu, values)
        load = read_text(self.paths.proc("loadavg"))
        host.update(parse_loadavg(load or ""))
        reading.add("load", "", host)
        return reading
