"""NVIDIA GPUs through NVML: utilization, memory, clocks, temperatures, power, throttling, PCIe,
NVLink, ECC and remapped rows, XID events, and Hopper GPM metrics.

Costly or locking calls stay off the hot path: processes are never
enumerated, counters come in one nvmlDeviceGetFieldValues call per GPU, and
sub-second utilization comes from the driver's own sample buffer
(nvmlDeviceGetSamples) rather than from polling faster.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from ironsight.agent.nvml import Nvml, NvmlUnavailable
from ironsight.agent.once import log_once
from ironsight.agent.samplers.base import BaseSampler, Every, SamplerContext, register
from ironsight.core.reading import DeviceInfo, Reading, Value

# (pynvml constant, column, scale to base units)
FIELD_IDS: tuple[tuple[str, str, float], ...] = (
    ("NVML_FI_DEV_MEMORY_TEMP", "memory_temperature_celsius", 1.0),
    ("NVML_FI_DEV_PCIE_COUNT_TX_BYTES", "pcie_tx_bytes", 1),
    ("NVML_FI_DEV_PCIE_COUNT_RX_BYTES", "pcie_rx_bytes", 1),
    ("NVML_FI_DEV_PCIE_REPLAY_COUNTER", "pcie_replays", 1),
    # Throttle time counters are nanoseconds.
    ("NVML_FI_DEV_CLOCKS_EVENT_REASON_SW_POWER_CAP", "throttle_sw_power_seconds", 1e-9),
    ("NVML_FI_DEV_CLOCKS_EVENT_REASON_SW_THERM_SLOWDOWN", "throttle_sw_thermal_seconds", 1e-9),
    ("NVML_FI_DEV_CLOCKS_EVENT_REASON_HW_THERM_SLOWDOWN", "throttle_hw_thermal_seconds", 1e-9),
    ("NVML_FI_DEV_CLOCKS_EVENT_REASON_HW_POWER_BRAKE_SLOWDOWN", "throttle_hw_power_brake_seconds", 1e-9),
    # NVLink data counters are KiB.
    ("NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX", "nvlink_tx_bytes", 1024),
    ("NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX", "nvlink_rx_bytes", 1024),
    ("NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", "nvlink_crc_errors", 1),
    ("NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL", "nvlink_replay_errors", 1),
    ("NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL", "nvlink_recovery_errors", 1),
    ("NVML_FI_DEV_ECC_SBE_VOL_TOTAL", "ecc_sbe_volatile", 1),
    ("NVML_FI_DEV_ECC_DBE_VOL_TOTAL", "ecc_dbe_volatile", 1),
    ("NVML_FI_DEV_ECC_SBE_AGG_TOTAL", "ecc_sbe_aggregate", 1),
    ("NVML_FI_DEV_ECC_DBE_AGG_TOTAL", "ecc_dbe_aggregate", 1),
    ("NVML_FI_DEV_REMAPPED_COR", "remapped_rows_correctable", 1),
    ("NVML_FI_DEV_REMAPPED_UNC", "remapped_rows_uncorrectable", 1),
    ("NVML_FI_DEV_REMAPPED_PENDING", "remapped_rows_pending", 1),
    ("NVML_FI_DEV_REMAPPED_FAILURE", "remapped_rows_failure", 1),
)

# (pynvml GPM metric constant, column). GPM reports percent; we store ratios.
GPM_METRICS = (
    ("NVML_GPM_METRIC_SM_UTIL", "gpm_sm_active_ratio"),
    ("NVML_GPM_METRIC_SM_OCCUPANCY", "gpm_sm_occupancy_ratio"),
    ("NVML_GPM_METRIC_ANY_TENSOR_UTIL", "gpm_tensor_active_ratio"),
    ("NVML_GPM_METRIC_DRAM_BW_UTIL", "gpm_dram_bandwidth_ratio"),
)
# GPM's PCIe rates (MiB/s), which keep the PCIe byte counters where GPM has them (GpuSampler._gpm).
GPM_PCIE = (
    ("NVML_GPM_METRIC_PCIE_RX_PER_SEC", "pcie_rx_bytes"),
    ("NVML_GPM_METRIC_PCIE_TX_PER_SEC", "pcie_tx_bytes"),
)
GPM_ALL = (*GPM_METRICS, *GPM_PCIE)  # one request for both, in this order


def gpm_metrics(lib: Any, sample1: Any, sample2: Any) -> Any:
    """GPM_ALL between two GPM samples, in one request: the answered request (each metric its own
    nvmlReturn and value). bench/nvml_calls.py times this very call."""
    request = lib.c_nvmlGpmMetricsGet_t()
    request.version = lib.NVML_GPM_METRICS_GET_VERSION
    request.numMetrics = len(GPM_ALL)
    request.sample1, request.sample2 = sample1, sample2
    for i, (const, _) in enumerate(GPM_ALL):
        request.metrics[i].metricId = getattr(lib, const)
    lib.nvmlGpmMetricsGet(request)
    return request


_VALUE_MEMBER = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}

# PCIe byte counters that the driver keeps in 32 bits: on an H200 (driver 580.159) the receive
# counter went from 3,790,899,024 to 42,692,404 in one 6 s stretch of ~90 MB/s, a wrap at 2**32
# (tests/traces/h200/h200-lockstep.trace). Under load that is every 45 s or so; the agent carries
# the wraps so the stored counter only grows while it runs (a restart starts it again, which the
# collector reads as a counter reset).
WRAP_32 = frozenset({"pcie_tx_bytes", "pcie_rx_bytes"})

# The costly calls' period (GpuSampler._slow): under a second so that at --interval 1 a tick
# that runs a little early still reads them (Every allows 50 ms); at 0.1 every ninth tick.
SLOW_EVERY_S = 0.9
# The energy counter, the costliest call (3.0 ms on an H200, 39 % of a whole tick there), every
# 10 s and repeated between: a counter loses no joules, and power_watts is read every tick (the
# detector reads neither; dcgm-exporter's default is a reading every 30 s).
ENERGY_EVERY_S = 10.0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _mhz(value: Any) -> float | None:
    return None if value is None else float(value) * 1e6


def _milli(value: Any) -> float | None:
    return None if value is None else float(value) / 1000.0


log = logging.getLogger("ironsight.agent")

XID_FALLEN_OFF_THE_BUS = 79  # what the driver logs for a GPU NVML then reports lost


@dataclass
class Gpu:
    index: int
    handle: Any
    info: dict[str, str]
    static: dict[str, Value]
    field_ids: list[int]
    field_columns: list[tuple[str, float]]
    last_sample_ts: int = 0
    gpm_prev: Any = None
    gpm_at: float = 0.0  # when gpm_prev was taken
    # Per PCIe column: the bytes GPM's rates have counted so far, and the driver's counter when they began.
    pcie_moved: dict[str, float] = field(default_factory=dict)
    pcie_start: dict[str, Value] = field(default_factory=dict)
    gpm_supported: bool = False
    lost: bool = False  # fallen off the bus: not asked again
    wraps: dict[str, tuple[int, int]] = field(default_factory=dict)  # column: (last raw, 2**32 wraps added)
    slow: dict[str, Value] = field(default_factory=dict)  # the last once-a-second reading
    slow_due: Every = field(kw_only=True)  # both on the sampler's clock
    energy_due: Every = field(kw_only=True)


@register("gpu", "NVIDIA GPUs through NVML (none here is a normal state)")
class GpuSampler(BaseSampler):
    def __init__(self, ctx: SamplerContext) -> None:
        super().__init__(ctx)
        self.nvml = Nvml(ctx.nvml)
        self.gpus: list[Gpu] = []
        self.events: Any = None
        self.available = False
        self.clock = ctx.clock or time.monotonic
        try:
            self.nvml.init()
        except NvmlUnavailable as exc:
            log_once("gpu.unavailable", f"gpu: {exc}; sampling everything else", logging.WARNING)
            return
        self.available = True
        count = self.nvml.call("nvmlDeviceGetCount") or 0
        for index in range(count):
            self.gpus.append(self._open(index))
        self._register_xid_events()

    def _open(self, index: int) -> Gpu:
        n, lib = self.nvml, self.nvml.lib
        handle = n.call("nvmlDeviceGetHandleByIndex", index)
        pci = n.call("nvmlDeviceGetPciInfo", handle)
        info = {
            "uuid": _text(n.call("nvmlDeviceGetUUID", handle) or ""),
            "model": _text(n.call("nvmlDeviceGetName", handle) or ""),
            "pci_bus_id": _text(getattr(pci, "busId", "") if pci is not None else ""),
            "serial": _text(n.call("nvmlDeviceGetSerial", handle) or ""),
            "driver": _text(n.call("nvmlSystemGetDriverVersion") or ""),
        }
        # Maxima and thresholds do not change while the driver is loaded.
        static: dict[str, Value] = {
            "sm_clock_max_hertz": _mhz(n.call("nvmlDeviceGetMaxClockInfo", handle, lib.NVML_CLOCK_SM)),
            "mem_clock_max_hertz": _mhz(n.call("nvmlDeviceGetMaxClockInfo", handle, lib.NVML_CLOCK_MEM)),
            "temperature_slowdown_celsius": n.call(
                "nvmlDeviceGetTemperatureThreshold", handle, lib.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN
            ),
            "temperature_shutdown_celsius": n.call(
                "nvmlDeviceGetTemperatureThreshold", handle, lib.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN
            ),
        }
        ids, columns = [], []
        for const, column, scale in FIELD_IDS:
            fid = getattr(lib, const, None)
            if fid is None:
                log_once(
                    f"nvml.field.{const}", f"gpu: {const} unknown to this nvidia-ml-py; {column} is NULL"
                )
                continue
            ids.append(fid)
            columns.append((column, scale))
        gpu = Gpu(
            index, handle, info, static, ids, columns,
            slow_due=Every(SLOW_EVERY_S, self.clock), energy_due=Every(ENERGY_EVERY_S, self.clock),
        )  # fmt: skip
        support = n.call("nvmlGpmQueryDeviceSupport", handle)
        gpu.gpm_supported = bool(getattr(support, "isSupportedDevice", 0))
        return gpu

    def _register_xid_events(self) -> None:
        n, lib = self.nvml, self.nvml.lib
        if not self.gpus:
            return
        events = n.call("nvmlEventSetCreate")
        if events is None:
            return
        for gpu in self.gpus:
            try:
                n.call("nvmlDeviceRegisterEvents", gpu.handle, lib.nvmlEventTypeXidCriticalError, events)
            except lib.NVMLError as exc:
                log_once(f"gpu.xid.{gpu.index}", f"gpu {gpu.index}: XID events unavailable ({exc})")
        self.events = events

    def sample(self) -> Reading:
        reading = Reading()
        lib = self.nvml.lib
        for gpu in self.gpus:
            if gpu.lost:
                continue
            try:
                values = self._sample_one(gpu)
            except lib.NVMLError as exc:  # one GPU's failure is its own; the others' rows go on
                if getattr(exc, "value", None) == getattr(lib, "NVML_ERROR_GPU_IS_LOST", -1):
                    self._lost(gpu, reading)
                else:
                    log_once(
                        f"gpu.{gpu.index}.{exc}",
                        f"gpu {gpu.index}: {exc}; its row is left out",
                        logging.WARNING,
                    )
                continue
            reading.add("gpu", str(gpu.index), values)
        self._drain_xids(reading)
        return reading

    def _lost(self, gpu: Gpu, reading: Reading) -> None:
        """NVML says the GPU is gone (NVML_ERROR_GPU_IS_LOST): the driver's XID 79, fallen off the bus.

        Recorded as that XID once (the detector's critical xid finding, with the GPU's identity in the
        inventory), marked lost in the inventory, and not asked again: each call would fail the same way."""
        gpu.lost = True
        gpu.info["state"] = "lost"
        reading.add("gpu_xid", str(gpu.index), {"xid": XID_FALLEN_OFF_THE_BUS})
        log.warning(
            "gpu %d (%s, %s): lost (NVML_ERROR_GPU_IS_LOST), recorded as XID %d; the other GPUs go on",
            gpu.index,
            gpu.info.get("uuid", "?"),
            gpu.info.get("pci_bus_id", "?"),
            XID_FALLEN_OFF_THE_BUS,
        )

    def _sample_one(self, gpu: Gpu) -> dict[str, Value]:
        n, lib, h = self.nvml, self.nvml.lib, gpu.handle
        values: dict[str, Value] = dict(gpu.static)
        util = n.call("nvmlDeviceGetUtilizationRates", h)
        values["util_gpu_percent"] = None if util is None else float(util.gpu)
        values["util_memory_percent"] = None if util is None else float(util.memory)
        values["memory_used_bytes"], values["memory_total_bytes"] = self._memory(h)
        values["sm_clock_hertz"] = _mhz(n.call("nvmlDeviceGetClockInfo", h, lib.NVML_CLOCK_SM))
        values["mem_clock_hertz"] = _mhz(n.call("nvmlDeviceGetClockInfo", h, lib.NVML_CLOCK_MEM))
        temp = n.call("nvmlDeviceGetTemperature", h, lib.NVML_TEMPERATURE_GPU)
        values["temperature_celsius"] = None if temp is None else float(temp)
        values["power_watts"] = _milli(n.call("nvmlDeviceGetPowerUsage", h))
        values["power_limit_watts"] = _milli(n.call("nvmlDeviceGetEnforcedPowerLimit", h))
        fan = n.call("nvmlDeviceGetFanSpeed", h)
        values["fan_speed_percent"] = None if fan is None else float(fan)
        # The "throttle" names were renamed "clocks event" in driver 535; ask the new one first.
        reasons = n.call("nvmlDeviceGetCurrentClocksEventReasons", h)
        if reasons is None:
            reasons = n.call("nvmlDeviceGetCurrentClocksThrottleReasons", h)
        values["clocks_event_reasons"] = None if reasons is None else int(reasons)
        values["pcie_link_gen"] = n.call("nvmlDeviceGetCurrPcieLinkGeneration", h)
        values["pcie_link_width"] = n.call("nvmlDeviceGetCurrPcieLinkWidth", h)
        values.update(self._slow(gpu))
        values.update(self._gpm(gpu))
        self._pcie_from_gpm(gpu, values)
        return values

    def _slow(self, gpu: Gpu) -> dict[str, Value]:
        """Energy, the driver's utilization samples and the field values (counters, ECC, the memory's
        temperature): the calls that cost milliseconds on a real GPU (on an H200 3.0 ms, 2.4 ms and
        1.3 ms, where every other call took about 2 us: tests/traces/h200/nvml-calls.json), read at
        most about once a second like the host samplers' slow sources (the energy counter every
        ENERGY_EVERY_S). At --interval 1 that is every tick; at 0.1 every ninth, the ticks between
        repeating that reading (each counter as of then, the sampled utilization of that second)."""
        if gpu.slow_due.due():
            energy = gpu.slow.get("energy_joules")
            if gpu.energy_due.due():
                energy = _milli(self.nvml.call("nvmlDeviceGetTotalEnergyConsumption", gpu.handle))
            slow: dict[str, Value] = {
                "util_gpu_sampled_percent": self._sampled_util(gpu),
                "energy_joules": energy,
            }
            slow.update(self._field_values(gpu))
            gpu.slow = slow
        return gpu.slow

    def _memory(self, h: Any) -> tuple[int | None, int | None]:
        """Used and total as DCGM counts them: used without the driver's own reservation, and total
        less it (what applications can allocate; DCGM's FB_USED_RATIO divides by the same), so that
        total - used is what nvidia-smi calls free. NVML's first memory call counts the reservation
        as used: an idle H200 showed 616 MiB used where nvidia-smi and dcgm-exporter say 0. Drivers
        without the second version (before R510) get the first."""
        n = self.nvml
        version = getattr(n.lib, "nvmlMemory_v2", None)
        mem = n.call("nvmlDeviceGetMemoryInfo", h, version) if version is not None else None
        if mem is not None:
            return int(mem.used), int(mem.total) - int(mem.reserved)
        mem = n.call("nvmlDeviceGetMemoryInfo", h)
        return (None, None) if mem is None else (int(mem.used), int(mem.total))

    def _unwrap(self, gpu: Gpu, column: str, raw: int) -> int:
        last, added = gpu.wraps.get(column, (raw, 0))
        if raw < last and last < 2**32:
            added += 2**32
        gpu.wraps[column] = (raw, added)
        return raw + added

    def _field_values(self, gpu: Gpu) -> dict[str, Value]:
        out: dict[str, Value] = {column: None for column, _ in gpu.field_columns}
        if not gpu.field_ids:
            return out
        results = self.nvml.call("nvmlDeviceGetFieldValues", gpu.handle, gpu.field_ids)
        if results is None:
            return out
        for (column, scale), fv in zip(gpu.field_columns, results, strict=False):
            if fv.nvmlReturn != 0:
                continue  # this field is not supported on this GPU: NULL
            raw = getattr(fv.value, _VALUE_MEMBER.get(fv.valueType, "ullVal"))
            if column in WRAP_32:
                raw = self._unwrap(gpu, column, int(raw))
            out[column] = raw * scale if isinstance(scale, float) else int(raw) * int(scale)
        return out

    def _sampled_util(self, gpu: Gpu) -> float | None:
        lib = self.nvml.lib
        try:
            got = self.nvml.call(
                "nvmlDeviceGetSamples", gpu.handle, lib.NVML_GPU_UTILIZATION_SAMPLES, gpu.last_sample_ts
            )
        except lib.NVMLError:
            return None  # no new samples since last time is reported as an error by some drivers
        if not got:
            return None
        _, samples = got
        if not samples:
            return None
        gpu.last_sample_ts = max(s.timeStamp for s in samples)
        return sum(float(s.sampleValue.uiVal) for s in samples) / len(samples)

    def _gpm(self, gpu: Gpu) -> dict[str, Value]:
        """GPM's ratios, and on GPUs where GPM has them the PCIe byte counters from its rates.

        NVML's PCIe byte counters are 32-bit and, read once a second, under-count any link faster
        than 4.29 GB/s; GPM's PCIe rates (MiB/s between two samples) times the seconds between the
        samples do not wrap. On an H200 copying 165 GB to the GPU at 55 GB/s for 3 s they summed to
        178.46 GB read a second apart, the 32-bit counter read every 10 ms to 178.28 GB, and read
        once a second to 10.6 GB (tests/traces/h200/pcie.json). Such a counter starts from the
        driver's as first read and grows by GPM's bytes from then on."""
        out: dict[str, Value] = {column: None for _, column in GPM_METRICS}
        if not gpu.gpm_supported:
            return out
        lib = self.nvml.lib
        try:
            request, now, at = self._gpm_request(gpu)
        except lib.NVMLError as exc:  # GPM failing costs its own values, never the GPU's row
            if gpu.gpm_prev is not None:  # start again from a fresh pair of samples
                with contextlib.suppress(lib.NVMLError):
                    lib.nvmlGpmSampleFree(gpu.gpm_prev)
            gpu.gpm_prev = None
            log_once(f"gpu.{gpu.index}.gpm.{exc}", f"gpu {gpu.index}: GPM: {exc}; its values are NULL")
            return out
        if request is None:
            return out  # GPM metrics are rates between two samples: the first tick has none
        for i, (_, column) in enumerate(GPM_ALL):
            metric = request.metrics[i]
            if metric.nvmlReturn != 0:
                continue
            if i < len(GPM_METRICS):
                out[column] = metric.value / 100.0
            else:
                gpu.pcie_moved[column] = gpu.pcie_moved.get(column, 0.0) + metric.value * 2**20 * (now - at)
        return out

    def _gpm_request(self, gpu: Gpu) -> tuple[Any, float, float]:
        """This tick's GPM sample against the last one's: the answered request (None on the first
        tick), and when the two samples were taken."""
        lib = self.nvml.lib
        current, now = lib.nvmlGpmSampleGet(gpu.handle, lib.nvmlGpmSampleAlloc()), self.clock()
        (previous, at), (gpu.gpm_prev, gpu.gpm_at) = (gpu.gpm_prev, gpu.gpm_at), (current, now)
        if previous is None:
            return None, now, at
        try:
            return gpm_metrics(lib, previous, current), now, at
        finally:
            lib.nvmlGpmSampleFree(previous)

    @staticmethod
    def _pcie_from_gpm(gpu: Gpu, values: dict[str, Value]) -> None:
        """The PCIe counters as the driver's first reading plus the bytes GPM has counted since (_gpm)."""
        for column, moved in gpu.pcie_moved.items():
            start = gpu.pcie_start.setdefault(column, values.get(column) or 0)  # no field counter: from 0
            if isinstance(start, int):
                values[column] = start + round(moved)

    def _drain_xids(self, reading: Reading) -> None:
        if self.events is None:
            return
        lib = self.nvml.lib
        by_handle = {id(g.handle): g.index for g in self.gpus}
        for _ in range(64):  # bounded: an XID storm must not hold the tick
            try:
                event = lib.nvmlEventSetWait(self.events, 0)
            except lib.NVMLError:
                return  # NVML_ERROR_TIMEOUT: nothing pending
            index = by_handle.get(id(event.device))
            if index is None:
                index = next((g.index for g in self.gpus if g.handle == event.device), -1)
            reading.add("gpu_xid", str(index), {"xid": int(event.eventData)})
            log_once(
                f"gpu.xid.{index}.{event.eventData}", f"gpu {index}: XID {event.eventData}", logging.WARNING
            )

    def inventory(self) -> list[DeviceInfo]:
        if self.available:
            self.nvml.forget_absent()  # once a minute: MIG mode or the driver may have changed
        return [DeviceInfo("gpu", str(g.index), dict(g.info)) for g in self.gpus]

    def close(self) -> None:
        if self.available:
            self.nvml.shutdown()
