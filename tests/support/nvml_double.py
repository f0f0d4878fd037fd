"""A test double of the pynvml functions the GPU sampler calls, fed from real nvidia-smi captures.

Two kinds of capture feed it, both normalised to `--query-gpu` field names:
utkuozdemir/nvidia_gpu_exporter's captures (H100, H200, L40S, RTX; idle and
under load: `--query-gpu` CSV plus `-q` text for PCIe throughput) and
telegraf's `nvidia-smi -q -x` XML (A100 and others, with absolute slowdown
and shutdown thresholds). The double answers NVML calls with those values
in NVML's own units (MiB -> bytes, W -> mW, us -> ns) and raises NVML's
errors where the capture says N/A or has no value. PCIe byte counters
advance at the captured throughput on a clock the test moves (`advance`).
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pynvml as real

from support.fixturetree import need_shared

NA = ("[N/A]", "N/A", "[Not Supported]", "[Requested functionality has been deprecated]", "")


def query_gpu(capture: Path, phase: str) -> dict[str, str]:
    """The `phase :: query-gpu` CSV section of a capture as {field: raw value} (first GPU),
    plus the PCIe throughput and replay count its `phase :: query (-q)` section reports."""
    text = capture.read_text()
    m = re.search(rf"# {phase} :: query-gpu .*?\n#+\n(.*?)\n(.*?)\n", text, re.S)
    if not m:
        raise ValueError(f"no {phase} query-gpu section in {capture.name}")
    header = [h.strip() for h in next(csv.reader(io.StringIO(m.group(1))))]
    values = [v.strip() for v in next(csv.reader(io.StringIO(m.group(2))))]
    q = {re.sub(r"\s*\[.*\]$", "", h): v for h, v in zip(header, values, strict=True)}
    section = re.search(rf"# {phase} :: query \(-q\)\n.*?#+\n(.*?)\n#####", text, re.S)
    if section:
        for key, label in (
            ("pcie.tx_util", "Tx Throughput"),
            ("pcie.rx_util", "Rx Throughput"),
            ("pcie.replay", "Replays Since Reset"),
        ):
            hit = re.search(rf"^\s*{label}\s*:\s*(.+)$", section.group(1), re.M)
            if hit:
                q[key] = hit.group(1).strip()
    return q


def query_processes(capture: Path, phase: str) -> list[tuple[int, str, str, float | None]]:
    """(pid, type C/G/C+G, name, used MiB or None) of each process the phase's `-q` section lists."""
    text = capture.read_text()
    section = re.search(rf"# {phase} :: query \(-q\)\n.*?#+\n(.*?)\n#####", text, re.S)
    block = re.search(r"^    Processes\n(.*?)(?=^    \S)", section.group(1), re.S | re.M) if section else None
    out = []
    for m in re.finditer(
        r"Process ID\s*:\s*(\d+)\s*\n\s*Type\s*:\s*(\S+)\s*\n\s*Name\s*:\s*(.+?)\s*\n\s*Used GPU Memory\s*:\s*(.+)",
        block.group(1) if block else "",
    ):
        out.append((int(m.group(1)), m.group(2), m.group(3), number(m.group(4).strip())))
    return out


REASON_BITS = {
    "gpu_idle": 0x1,
    "applications_clocks_setting": 0x2,
    "sw_power_cap": 0x4,
    "hw_slowdown": 0x8,
    "sync_boost": 0x10,
    "sw_thermal_slowdown": 0x20,
    "hw_thermal_slowdown": 0x40,
    "hw_power_brake_slowdown": 0x80,
    "display_clocks_setting": 0x100,
}


def query_xml(capture: Path) -> dict[str, str]:
    """telegraf's `nvidia-smi -q -x` capture normalised to --query-gpu names (first GPU)."""
    root = ET.parse(capture).getroot()
    gpu = root.find("gpu")
    assert gpu is not None

    def text(path: str) -> str:
        e = gpu.find(path)
        return (e.text or "").strip() if e is not None and e.text else "[N/A]"

    power = "gpu_power_readings" if gpu.find("gpu_power_readings") is not None else "power_readings"
    reasons_el = gpu.find("clocks_event_reasons")
    if reasons_el is None:
        reasons_el = gpu.find("clocks_throttle_reasons")
    active = 0
    for child in reasons_el if reasons_el is not None else []:
        name = child.tag.replace("clocks_event_reason_", "").replace("clocks_throttle_reason_", "")
        if (child.text or "").strip() == "Active":
            active |= REASON_BITS.get(name, 0)
    return {
        "driver_version": (root.findtext("driver_version") or "").strip(),
        "name": text("product_name"),
        "uuid": text("uuid"),
        "serial": text("serial"),
        "pci.bus_id": text("pci/pci_bus_id"),
        "memory.total": text("fb_memory_usage/total"),
        "memory.used": text("fb_memory_usage/used"),
        "utilization.gpu": text("utilization/gpu_util"),
        "utilization.memory": text("utilization/memory_util"),
        "temperature.gpu": text("temperature/gpu_temp"),
        "temperature.memory": text("temperature/memory_temp"),
        "temperature.slowdown": text("temperature/gpu_temp_slow_threshold"),
        "temperature.shutdown": text("temperature/gpu_temp_max_threshold"),
        "power.draw": text(f"{power}/power_draw"),
        "enforced.power.limit": text(f"{power}/enforced_power_limit")
        if gpu.find(f"{power}/enforced_power_limit") is not None
        else text(f"{power}/current_power_limit"),
        "clocks.current.sm": text("clocks/sm_clock"),
        "clocks.current.memory": text("clocks/mem_clock"),
        "clocks.max.sm": text("max_clocks/sm_clock"),
        "clocks.max.memory": text("max_clocks/mem_clock"),
        "fan.speed": text("fan_speed"),
        "clocks_event_reasons.active": hex(active) if reasons_el is not None else "[N/A]",
        "pcie.link.gen.gpucurrent": text("pci/pci_gpu_link_info/pcie_gen/current_link_gen"),
        "pcie.link.width.current": text("pci/pci_gpu_link_info/link_widths/current_link_width").rstrip("x"),
        "pcie.tx_util": text("pci/tx_util"),
        "pcie.rx_util": text("pci/rx_util"),
        "pcie.replay": text("pci/replay_counter"),
        "ecc.errors.corrected.volatile.total": text("ecc_errors/volatile/dram_correctable"),
        "ecc.errors.uncorrected.volatile.total": text("ecc_errors/volatile/dram_uncorrectable"),
    }


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

    def __init__(
        self, capture: Path | dict[str, str], phase: str = "load", missing: tuple[str, ...] = ()
    ) -> None:
        self.q = capture if isinstance(capture, dict) else query_gpu(capture, phase)
        # (pid, type, name, MiB) of the processes on each GPU, as the capture lists them.
        self.processes = [] if isinstance(capture, dict) else query_processes(capture, phase)
        self.process_util: list[Any] | None = None  # per-process samples; None: NOT_FOUND, as most drivers
        self.xids: list[int] = []  # XID events nvmlEventSetWait hands out, oldest first
        self.clock = 0.0  # seconds since the double started, moved by advance()
        for name in dir(real):
            if name.startswith(("NVML_", "nvmlEventType", "nvmlMemory_v")):
                setattr(self, name, getattr(real, name))
        for name in missing:  # simulate an older library without these functions
            setattr(self, name, None)
        self.init_error: int | None = None
        self.count = 1  # GPUs, each answering from the same capture
        self.lost: set[int] = set()  # indices of GPUs fallen off the bus: every device call says GPU_IS_LOST

    def __getattribute__(self, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if value is None and name.startswith("nvml"):
            raise AttributeError(name)
        if name.startswith("nvmlDevice") and name not in ("nvmlDeviceGetCount", "nvmlDeviceGetHandleByIndex"):
            lost = object.__getattribute__(self, "lost")
            if lost:

                def guarded(h: Any, *args: Any) -> Any:
                    if isinstance(h, tuple) and h[1] in lost:
                        raise NVMLError(real.NVML_ERROR_GPU_IS_LOST)
                    return value(h, *args)

                return guarded
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
        return self.count

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

    def advance(self, seconds: float) -> None:
        self.clock += seconds

    def now(self) -> float:
        """The double's clock, for a sampler's SamplerContext(clock=...): what it reads once a
        second is read again after advance(1) or more, as on a card a second later."""
        return self.clock

    def nvmlDeviceGetTemperatureThreshold(self, h: object, kind: int) -> int:
        # --query-gpu carries no absolute thresholds (NotSupported); the XML captures do.
        key = {real.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN: "temperature.slowdown"}.get(
            kind, "temperature.shutdown"
        )
        return int(self._num(key))

    def nvmlDeviceGetUtilizationRates(self, h: object) -> Any:
        return SimpleNamespace(
            gpu=int(self._num("utilization.gpu")), memory=int(self._num("utilization.memory"))
        )

    def nvmlDeviceGetMemoryInfo(self, h: object, version: int | None = None) -> Any:
        """nvidia-smi's Used leaves out the driver's reservation; so does NVML's second version, and
        the first counts it as used (an idle H200: 616 MiB used by the first, 0 by nvidia-smi)."""
        mib = 2**20
        total, used = int(self._num("memory.total")) * mib, int(self._num("memory.used")) * mib
        reserved = int(number(self.q.get("memory.reserved", "")) or 0) * mib
        if version:
            return SimpleNamespace(total=total, reserved=reserved, used=used, free=total - reserved - used)
        return SimpleNamespace(total=total, used=used + reserved, free=total - reserved - used)

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
        "NVML_FI_DEV_PCIE_REPLAY_COUNTER": ("pcie.replay", 1),
    }
    # PCIe byte counters advance at the captured throughput (KB/s, KB = 1024 bytes in NVML).
    THROUGHPUT: ClassVar[dict[str, str]] = {
        "NVML_FI_DEV_PCIE_COUNT_TX_BYTES": "pcie.tx_util",
        "NVML_FI_DEV_PCIE_COUNT_RX_BYTES": "pcie.rx_util",
    }
    COUNTER_BASE = 10**12  # counters do not start at 0 on a real card
    # The PCIe byte counters' width: an H200 on driver 580.159 reports them as 32-bit values
    # (value type 1) that wrap at 2**32 (tests/traces/h200/nvml-calls.json, pcie.json).
    pcie_counter_bits = 64

    def nvmlDeviceGetFieldValues(self, h: object, ids: list[int]) -> list[FieldValue]:
        by_id = {getattr(real, const): spec for const, spec in self.FIELDS.items()}
        rates = {getattr(real, const): key for const, key in self.THROUGHPUT.items()}
        out = []
        for fid in ids:
            if fid in rates:
                kbps = number(self.q.get(rates[fid], ""))
                if kbps is None:
                    out.append(FieldValue(fid, real.NVML_ERROR_NOT_SUPPORTED, 3, SimpleNamespace(ullVal=0)))
                else:
                    value = self.COUNTER_BASE + round(kbps * 1024 * self.clock)
                    if self.pcie_counter_bits == 32:
                        out.append(FieldValue(fid, 0, 1, SimpleNamespace(uiVal=value % 2**32)))
                    else:
                        out.append(FieldValue(fid, 0, 3, SimpleNamespace(ullVal=value)))
                continue
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

    # GPM (Hopper and later): metric constant name -> its value between any two samples (percent,
    # or MiB/s for the PCIe rates). None: a GPU without GPM, as every capture's.
    gpm: dict[str, float] | None = None
    c_nvmlGpmMetricsGet_t = real.c_nvmlGpmMetricsGet_t

    def nvmlGpmQueryDeviceSupport(self, h: object) -> Any:
        if self.gpm is None:
            raise NVMLError(real.NVML_ERROR_NOT_SUPPORTED)
        return SimpleNamespace(isSupportedDevice=1)

    def nvmlGpmSampleAlloc(self) -> Any:
        return real.c_nvmlGpmSample_t()

    def nvmlGpmSampleGet(self, h: object, sample: Any) -> Any:
        return sample

    def nvmlGpmSampleFree(self, sample: Any) -> None:
        pass

    def nvmlGpmMetricsGet(self, request: Any) -> Any:
        by_id = {getattr(real, name): value for name, value in (self.gpm or {}).items()}
        for i in range(request.numMetrics):
            metric = request.metrics[i]
            if metric.metricId in by_id:
                metric.value, metric.nvmlReturn = by_id[metric.metricId], 0
            else:
                metric.nvmlReturn = real.NVML_ERROR_NOT_SUPPORTED
        return request

    def _running(self, kinds: tuple[str, ...]) -> list[Any]:
        return [
            SimpleNamespace(
                pid=pid,
                # NVML_VALUE_NOT_AVAILABLE where nvidia-smi says N/A (MIG, no permission).
                usedGpuMemory=(2**64 - 1) if mib is None else int(mib) * 2**20,
                gpuInstanceId=0xFFFFFFFF,
                computeInstanceId=0xFFFFFFFF,
            )
            for pid, kind, _, mib in self.processes
            if kind in kinds
        ]

    def nvmlDeviceGetComputeRunningProcesses(self, h: object) -> list[Any]:
        return self._running(("C", "C+G"))

    def nvmlDeviceGetGraphicsRunningProcesses(self, h: object) -> list[Any]:
        return self._running(("G", "C+G"))

    def nvmlDeviceGetMaxMigDeviceCount(self, h: object) -> int:
        if self.q.get("mig.mode.current") != "Enabled":
            raise NVMLError(real.NVML_ERROR_NOT_SUPPORTED)  # as a GPU without MIG answers
        return 7

    def nvmlDeviceGetProcessUtilization(self, h: object, since: int) -> list[Any]:
        if self.process_util is None:
            raise NVMLError(real.NVML_ERROR_NOT_FOUND)
        return [s for s in self.process_util if s.timeStamp > since]

    def nvmlEventSetCreate(self) -> object:
        return ("events",)

    def nvmlDeviceRegisterEvents(self, h: object, types: int, events: object) -> None:
        self.registered = types

    def nvmlEventSetWait(self, events: object, timeout_ms: int) -> Any:
        if self.xids:
            return SimpleNamespace(device=("handle", 0), eventData=self.xids.pop(0))
        raise NVMLError(real.NVML_ERROR_TIMEOUT)


def capture(name: str) -> Path:
    path = need_shared("nvidia_smi_captures") / name
    assert path.exists(), path
    return path


H100 = "linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01.txt"
