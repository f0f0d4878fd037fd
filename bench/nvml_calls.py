"""What each NVML call the agent makes costs on this machine's real GPUs, against nvidia-smi.

Only a machine with an NVIDIA driver can run this (tools/gpu_session.sh runs it on a lent
H200); elsewhere it says so and exits 2. Each call is timed as the GPU sampler and job
discovery make it (same arguments, through pynvml), a call that errors timed with its
error; then the GPU sampler's whole tick, and the peer: one `nvidia-smi --query-gpu` of
the same values, the way a shell script or a textfile exporter would read them. Last, the
sampler's values beside nvidia-smi's from the same moment, so a unit or scale mistake
shows as a ratio far from 1.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from ironsight.agent.samplers.base import SamplerContext
from ironsight.agent.samplers.gpu import FIELD_IDS, GPM_ALL, GpuSampler, gpm_metrics

NAME = "nvml-calls"

# nvidia-smi's name for a value, our column, and the factor from nvidia-smi's unit (nounits) to ours.
SMI_FIELDS = (
    ("utilization.gpu", "util_gpu_percent", 1.0),
    ("memory.used", "memory_used_bytes", 2**20),
    ("memory.total", "memory_total_bytes", 2**20),
    ("clocks.sm", "sm_clock_hertz", 1e6),
    ("clocks.mem", "mem_clock_hertz", 1e6),
    ("clocks.max.sm", "sm_clock_max_hertz", 1e6),
    ("temperature.gpu", "temperature_celsius", 1.0),
    ("temperature.memory", "memory_temperature_celsius", 1.0),
    ("power.draw", "power_watts", 1.0),
    ("enforced.power.limit", "power_limit_watts", 1.0),
    ("pcie.link.gen.current", "pcie_link_gen", 1.0),
    ("pcie.link.width.current", "pcie_link_width", 1.0),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nvml-rounds", type=int, default=200, help="calls timed of each")
    p.add_argument("--smi-rounds", type=int, default=10, help="nvidia-smi queries timed")


def _time(fn: Callable[[], object], rounds: int) -> dict[str, Any]:
    """Median and p99 wall microseconds a call, mean CPU microseconds, and the error it raised, if it did."""
    error = ""
    took: list[float] = []
    cpu0 = time.process_time()
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        try:
            fn()
        except Exception as exc:  # NVMLError_NotSupported and kin: the agent pays for these too
            error = f"{type(exc).__name__}: {exc}"[:120]
        took.append((time.perf_counter_ns() - t0) / 1000)
    cpu = (time.process_time() - cpu0) / rounds * 1e6
    took.sort()
    return {
        "median_us": round(statistics.median(took), 1),
        "p99_us": round(took[min(len(took) - 1, int(len(took) * 0.99))], 1),
        "mean_us": round(statistics.fmean(took), 1),
        "cpu_us": round(cpu, 1),
        **({"error": error} if error else {}),
    }


def _calls(nv: Any, h: Any, field_ids: list[int]) -> dict[str, Callable[[], object]]:
    last = [0]

    def samples() -> object:
        _, got = nv.nvmlDeviceGetSamples(h, nv.NVML_GPU_UTILIZATION_SAMPLES, last[0])
        if got:
            last[0] = max(s.timeStamp for s in got)
        return got

    def gpm() -> object:
        return _gpm(nv, h, 0.0)

    return {
        "nvmlDeviceGetUtilizationRates": lambda: nv.nvmlDeviceGetUtilizationRates(h),
        "nvmlDeviceGetSamples": samples,
        "nvmlDeviceGetMemoryInfo": lambda: nv.nvmlDeviceGetMemoryInfo(h),
        "nvmlDeviceGetClockInfo(SM)": lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM),
        "nvmlDeviceGetTemperature": lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU),
        "nvmlDeviceGetPowerUsage": lambda: nv.nvmlDeviceGetPowerUsage(h),
        "nvmlDeviceGetEnforcedPowerLimit": lambda: nv.nvmlDeviceGetEnforcedPowerLimit(h),
        "nvmlDeviceGetTotalEnergyConsumption": lambda: nv.nvmlDeviceGetTotalEnergyConsumption(h),
        "nvmlDeviceGetFanSpeed": lambda: nv.nvmlDeviceGetFanSpeed(h),
        "nvmlDeviceGetCurrentClocksEventReasons": lambda: nv.nvmlDeviceGetCurrentClocksEventReasons(h),
        "nvmlDeviceGetCurrPcieLinkGeneration": lambda: nv.nvmlDeviceGetCurrPcieLinkGeneration(h),
        f"nvmlDeviceGetFieldValues({len(field_ids)} fields)": lambda: nv.nvmlDeviceGetFieldValues(
            h, field_ids
        ),
        "GPM: two samples and the sampler's metrics get": gpm,
        "nvmlDeviceGetComputeRunningProcesses": lambda: nv.nvmlDeviceGetComputeRunningProcesses(h),
        "nvmlDeviceGetProcessUtilization": lambda: nv.nvmlDeviceGetProcessUtilization(h, 0),
    }


def _gpm(nv: Any, h: Any, apart_s: float) -> dict[str, tuple[int, float]]:
    """The sampler's GPM request (every metric it asks for, in one call) between two samples
    apart_s apart: each metric's NVML return and value."""
    a = nv.nvmlGpmSampleGet(h, nv.nvmlGpmSampleAlloc())
    time.sleep(apart_s)
    b = nv.nvmlGpmSampleGet(h, nv.nvmlGpmSampleAlloc())
    try:
        req = gpm_metrics(nv, a, b)
    finally:
        nv.nvmlGpmSampleFree(a)
        nv.nvmlGpmSampleFree(b)
    got = enumerate(GPM_ALL)
    return {column: (int(req.metrics[i].nvmlReturn), float(req.metrics[i].value)) for i, (_, column) in got}


def _smi(query: str) -> list[list[str]]:
    out = subprocess.run(
        ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    return [[c.strip() for c in line.split(",")] for line in out.strip().splitlines()]


def run(args: argparse.Namespace) -> dict[str, object]:
    try:
        import pynvml as nv

        nv.nvmlInit()
    except Exception as exc:
        sys.exit(f"nvml-calls: needs an NVIDIA driver and GPU ({exc})")
    h = nv.nvmlDeviceGetHandleByIndex(0)
    ids = [getattr(nv, c) for c, _, _ in FIELD_IDS if hasattr(nv, c)]
    calls = {name: _time(fn, args.nvml_rounds) for name, fn in _calls(nv, h, ids).items()}
    # Each field's NVML return and value type (1: 32-bit unsigned, 3: 64-bit): which counters can wrap.
    named = [column for c, column, _ in FIELD_IDS if hasattr(nv, c)]
    fields = {
        column: {"return": int(fv.nvmlReturn), "value_type": int(fv.valueType)}
        for column, fv in zip(named, nv.nvmlDeviceGetFieldValues(h, ids), strict=True)
    }
    try:  # the metrics the sampler asks GPM for, answered together (or the error that says why not)
        gpm: object = _gpm(nv, h, 1.0)
    except Exception as exc:
        gpm = f"{type(exc).__name__}: {exc}"
    clock = [0.0]  # the sampler's seconds: each tick as if --interval had passed
    sampler = GpuSampler(SamplerContext(clock=lambda: clock[0]))

    def tick(interval: float) -> Callable[[], object]:
        def one() -> object:
            clock[0] += interval
            return sampler.sample()

        return one

    try:
        sampler.sample()  # GPM's first tick has no previous sample
        tick_1s = _time(tick(1.0), args.nvml_rounds)  # as at --interval 1: the energy counter one tick in ten
        tick_01 = _time(tick(0.1), args.nvml_rounds)  # the costly ones one tick in nine
        query = ",".join(q for q, _, _ in SMI_FIELDS)
        has_smi = shutil.which("nvidia-smi") is not None
        ours = sampler.sample().rows("gpu")  # next to nvidia-smi's answer, within a few ms
        theirs = _smi(query)[0] if has_smi else []
    finally:
        sampler.close()
    smi = _time(lambda: _smi(query), args.smi_rounds) if has_smi else {}
    row = dict(ours)["0"]
    compare: dict[str, dict[str, object]] = {}
    for (_, column, factor), raw in zip(SMI_FIELDS, theirs, strict=False):
        try:
            compare[column] = {"ironsight": row.get(column), "nvidia_smi": float(raw) * factor}
        except ValueError:
            compare[column] = {"ironsight": row.get(column), "nvidia_smi": raw}
    gpus = nv.nvmlDeviceGetCount()
    return {
        "gpu": nv.nvmlDeviceGetName(h),
        "driver": nv.nvmlSystemGetDriverVersion(),
        "gpus": gpus,
        "sampler_tick_median_ms": tick_1s["median_us"] / 1000,
        "sampler_tick_p99_ms": tick_1s["p99_us"] / 1000,
        "sampler_tick_cpu_ms": tick_1s["cpu_us"] / 1000,
        "sampler_tick_at_0.1s_mean_ms": tick_01["mean_us"] / 1000,
        "sampler_tick_at_0.1s_cpu_ms": tick_01["cpu_us"] / 1000,
        "nvidia_smi_query_median_ms": smi.get("median_us", 0) / 1000,
        "sampler_tick_vs_nvidia_smi": round(tick_1s["median_us"] / smi["median_us"], 4) if smi else None,
        "calls": calls,
        "fields": fields,
        "gpm_metrics_one_second_apart": gpm,
        "values_vs_nvidia_smi": compare,
    }
