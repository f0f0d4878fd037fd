"""Pressure stall information (PSI): cumulative stall time for cpu, io, memory, irq."""

from __future__ import annotations

import contextlib
import os

from ironsight.agent.once import log_once
from ironsight.agent.samplers.base import (
    RESCAN_EVERY_S,
    BaseSampler,
    Every,
    SamplerContext,
    read_text,
    register,
)
from ironsight.core.reading import Reading, Value


def parse_psi(text: str) -> dict[str, float]:
    """{"some": seconds, "full": seconds} from one /proc/pressure file (totals are microseconds)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0] not in ("some", "full"):
            continue
        for part in parts[1:]:
            key, _, value = part.partition("=")
            if key == "total":
                with contextlib.suppress(ValueError):
                    out[parts[0]] = int(value) / 1e6
    return out


@register("pressure", "PSI stall totals (needs a kernel with CONFIG_PSI)")
class PressureSampler(BaseSampler):
    RESOURCES = ("cpu", "io", "memory", "irq")

    def __init__(self, ctx: SamplerContext) -> None:
        super().__init__(ctx)
        self._all = [(r, str(self.paths.proc("pressure", r))) for r in self.RESOURCES]
        self._files: list[tuple[str, str]] = []
        self._scan = Every(RESCAN_EVERY_S)

    def sample(self) -> Reading:
        # Which files exist (irq arrived in 6.1, and needs CONFIG_IRQ_TIME_ACCOUNTING) is
        # looked up once a minute: a failed open of a missing one cost 0.1 ms a tick here.
        if self._scan.due():
            self._files = [(r, path) for r, path in self._all if os.path.exists(path)]
        values: dict[str, Value] = {}
        found = False
        for resource, path in self._files:
            text = read_text(path)
            if text is None:
                continue
            found = True
            psi = parse_psi(text)
            for kind in ("some", "full"):
                column = f"{resource}_{kind}_seconds"
                if column != "irq_some_seconds":
                    values[column] = psi.get(kind)
        reading = Reading()
        if found:
            reading.add("pressure", "", values)
        else:
            log_once(
                "pressure.missing", f"pressure: {self.paths.proc('pressure')} not found; PSI not sampled"
            )
        return reading
