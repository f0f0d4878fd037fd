"""A test double of the pynvml functions the GPU sampler calls, fed from real nvidia-smi captures.

The captures (../shared/fixtures/nvidia_smi_captures) hold `nvidia-smi
--query-gpu` CSV of real cards idle and under load; this double answers NVML
calls with those values in NVML's own units (MiB -> bytes, W -> mW, us -> ns)
and raises NVML's errors where the capture says [N/A] or has no value.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pynvml as real

NA = ("[N/A]", "N/A", "[Not Supported]", "[Requested functionality has been deprecated]", "")


def query_gpu(capture: Path, phase: str) -> dict[str, str]:
    """The `phase :: query-gpu` CSV section of a capture as {field: raw value} (first GPU)."""
    text = capture.read_text()
    m = re.search(rf"# {phase} :: query-gpu .*?\n#+\n(.*?)\n(.*?)\n", text, re.S)
    if not m:
        raise ValueError(f"no {phase} query-gpu section in {capture.name}")
    header = [h.strip() for h in next(csv.reader(io.StringIO(m.group(1))))]
    values = [v.strip() for v in next(csv.reader(io.StringIO(m.group(2))))]
    return {re.sub(r"\s*\[.*\]$", "", h): v for h, v in zip(header, values, strict=True)}


def number(raw: str) -> float | None:
    if raw in NA:
        return None
    head = raw.split()[0]
    try:
        return float(int(head, 16)) if head.startswith("0x") else float(head)
    except ValueError:
        return None


class NVMLError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


@dataclass
class FieldValue:
    fieldId: int
    nvmlReturn: int
    valueType: int
    value: Any


class CaptureNvml:
    """Looks like the pynvml module to the sampler."""

    NVMLError = NVMLError

    def __init__(self, capture: Path, phase: str = "load", missing: tuple[str, ...] = ()) -> None:
        self.q = query_gpu(capture, phase)
        self.calls: list[str] = []
        for name in dir(real):
            if name.startswith(("NVML_", "nvmlEventType")):
                setattr(self, name, getattr(real, name))
        for name in missing:  # simulate an older library without these functions
            setattr(self, name, None)
        self.init_error: int | None = None

    def __getattribute__(self, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if value is None and name.startswith("nvml"):
            raise AttributeError(name)
        return value

    def _num(self, key: str) -> float:
        v = number(self.q.get(key, ""))
        if v is None:
            raise NVMLError(real.NVML_ERROR_NOT_SUPPORTED)
        return v

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise NVMLError(self.init_error)

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        return 1

    def nvmlDeviceGetHandleByIndex(self, index: int) -> object:
        return ("handle", index)

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.q["driver_version"]

    def nvmlDeviceGetName(self, h: object) -> str:
        return self.q["name"]

    def nvmlDeviceGetUUID(self, h: object) -> str:
        return self.q["uuid"]

    def nvmlDeviceGetSerial(self, h: object) -> str:
        return self.q["serial"]

    def nvmlDeviceGetPciInfo(self, h: object) -> Any:
        return SimpleNamespace(busId=self.q["pci.bus_id"].encode())

    def nvmlDeviceGetMaxClockInfo(self, h: object, clock: int) -> int:
        key = {real.NVML_CLOCK_SM: "clocks.max.sm", real.NVML_CLOCK_MEM: "clocks.max.memory"}[clock]
        return int(self._num(key))

    def nvmlDeviceGetClockInfo(self, h: object, clock: int) -> int:
        key = {real.NVML_CLOCK_SM: "clocks.current.sm", real.NVML_CLOCK_MEM: "clocks.current.memory"}[clock]
        return int(self._num(key))

    def nvmlDeviceGetTemperatureThreshold(self, h: object, kind: int) -> int:
        # --query-gpu carries no absolute slowdown/shutdown thresholds.
        raise NVMLError(real.NVML_ERROR_NOT_SUPPORTED)

    def nvmlDeviceGetUtilizationRates(self, h: object) -> Any:
        return SimpleNamespace(
            gpu=int(self._num("utilization.gpu")), memory=int(self._num("utilization.memory"))
        )

    def nvmlDeviceGetMemoryInfo(self, h: object) -> Any:
        mib = 2**20
        return SimpleNamespace(
            total=int(self._num("memory.total")) * mib, used=int(self._num("memory.used")) * mib
        )

    def nvmlDeviceGetTemperature(self, h: object, sensor: int) -> int:
        return int(self._num("temperature.gpu"))

    def nvmlDeviceGetPowerUsage(self, h: object) -> int:
        return round(self._num("power.draw") * 1000)

    def nvmlDeviceGetEnforcedPowerLimit(self, h: object) -> int:
        return round(self._num("enforced.power.limit") * 1000)

    def nvmlDeviceGetTotalEnergyConsumption(self, h: object) -> int:
        raise NVMLError(real.NVML_ERROR_NOT_SUPPORTED)

    def nvmlDeviceGetFanSpeed(self, h: object) -> int:
        return int(self._num("fan.speed"))

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: object) -> int:
        return int(self._num("clocks_event_reasons.active"))

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h: object) -> int:
        return int(self._num("clocks_event_reasons.active"))

    def nvmlDeviceGetCurrPcieLinkGeneration(self, h: object) -> int:
        return int(self._num("pcie.link.gen.gpucurrent"))

    def nvmlDeviceGetCurrPcieLinkWidth(self, h: object) -> int:
        return int(self._num("pcie.link.width.current"))

    FIELDS: ClassVar[dict[str, tuple[str, int]]] = {
        "NVML_FI_DEV_MEMORY_TEMP": ("temperature.memory", 1),
        "NVML_FI_DEV_CLOCKS_EVENT_REASON_SW_POWER_CAP": ("clocks_event_reasons_counters.sw_power_cap", 1000),
        "NVML_FI_DEV_CLOCKS_EVENT_REASON_SW_THERM_SLOWDOWN": (
            "clocks_event_reasons_counters.sw_thermal_slowdown",
            1000,
        ),
        "NVML_FI_DEV_CLOCKS_EVENT_REASON_HW_THERM_SLOWDOWN": (
            "clocks_event_reasons_counters.hw_thermal_slowdown",
            1000,
        ),
        "NVML_FI_DEV_CLOCKS_EVENT_REASON_HW_POWER_BRAKE_SLOWDOWN": (
            "clocks_event_reasons_counters.hw_power_brake_slowdown",
            1000,
        ),
        "NVML_FI_DEV_ECC_SBE_VOL_TOTAL": ("ecc.errors.corrected.volatile.total", 1),
        "NVML_FI_DEV_ECC_DBE_VOL_TOTAL": ("ecc.errors.uncorrected.volatile.total", 1),
        "NVML_FI_DEV_ECC_SBE_AGG_TOTAL": ("ecc.errors.corrected.aggregate.total", 1),
        "NVML_FI_DEV_ECC_DBE_AGG_TOTAL": ("ecc.errors.uncorrected.aggregate.total", 1),
        "NVML_FI_DEV_REMAPPED_COR": ("remapped_rows.correctable", 1),
        "NVML_FI_DEV_REMAPPED_UNC": ("remapped_rows.uncorrectable", 1),
        "NVML_FI_DEV_REMAPPED_PENDING": ("remapped_rows.pending", 1),
        "NVML_FI_DEV_REMAPPED_FAILURE": ("remapped_rows.failure", 1),
    }

    def nvmlDeviceGetFieldValues(self, h: object, ids: list[int]) -> list[FieldValue]:
        by_id = {getattr(real, const): spec for const, spec in self.FIELDS.items()}
        out = []
        for fid in ids:
            spec = by_id.get(fid)
            raw = number(self.q.get(spec[0], "")) if spec else None
            if raw is None and spec and self.q.get(spec[0]) in ("No", "Yes"):
                raw = 1.0 if self.q[spec[0]] == "Yes" else 0.0
            if raw is None:
                out.append(FieldValue(fid, real.NVML_ERROR_NOT_SUPPORTED, 3, SimpleNamespace(ullVal=0)))
            else:
                value = int(raw * spec[1]) if spec else 0
                out.append(FieldValue(fid, 0, 3, SimpleNamespace(ullVal=value, dVal=float(value))))
        return out

    def nvmlDeviceGetSamples(self, h: object, kind: int, since: int) -> tuple[int, list[Any]]:
        util = int(self._num("utilization.gpu"))
        samples = [
            SimpleNamespace(timeStamp=since + i + 1, sampleValue=SimpleNamespace(uiVal=util))
            for i in range(6)
        ]
        return 1, samples

    def nvmlGpmQueryDeviceSupport(self, h: object) -> Any:
        raise NVMLError(real.NVML_ERROR_NOT_SUPPORTED)

    def nvmlEventSetCreate(self) -> object:
        return ("events",)

    def nvmlDeviceRegisterEvents(self, h: object, types: int, events: object) -> None:
        self.registered = types

    def nvmlEventSetWait(self, events: object, timeout_ms: int) -> Any:
        pending = getattr(self, "xids", [])
        if pending:
            return SimpleNamespace(device=("handle", 0), eventData=pending.pop(0))
        raise NVMLError(real.NVML_ERROR_TIMEOUT)
