"""The real GPU sampler against an NVML double fed from real nvidia-smi captures."""

from __future__ import annotations

import logging
from pathlib import Path

import pynvml
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.exposition import render
from agent.samplers.base import SamplerContext, log_once
from agent.samplers.gpu import GpuSampler

from conftest import need_shared
from nvml_double import CaptureNvml, number, query_gpu

MIB = 2**20


def capture(name: str) -> Path:
    path = need_shared("nvidia_smi_captures") / name
    assert path.exists(), path
    return path


H100 = "linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01.txt"
L40S = "linux-x86_64__nvidia-l40s__595.80.txt"


@pytest.mark.parametrize("card", [H100, L40S, "linux-x86_64__nvidia-h200__590.48.01.txt"])
@pytest.mark.parametrize("phase", ["idle", "load"])
def test_values_equal_the_capture_in_base_units(card: str, phase: str) -> None:
    path = capture(card)
    q = query_gpu(path, phase)
    sampler = GpuSampler(SamplerContext(nvml=CaptureNvml(path, phase)))
    [(device, v)] = sampler.sample().rows("gpu")
    assert device == "0"
    assert v["util_gpu_percent"] == number(q["utilization.gpu"])
    assert v["util_memory_percent"] == number(q["utilization.memory"])
    assert v["util_gpu_sampled_percent"] == number(q["utilization.gpu"])
    assert v["memory_used_bytes"] == int(number(q["memory.used"]) or 0) * MIB
    assert v["memory_total_bytes"] == int(number(q["memory.total"]) or 0) * MIB
    assert v["sm_clock_hertz"] == (number(q["clocks.current.sm"]) or 0) * 1e6
    assert v["sm_clock_max_hertz"] == (number(q["clocks.max.sm"]) or 0) * 1e6
    assert v["mem_clock_max_hertz"] == (number(q["clocks.max.memory"]) or 0) * 1e6
    assert v["temperature_celsius"] == number(q["temperature.gpu"])
    assert v["power_watts"] == pytest.approx(number(q["power.draw"]), abs=1e-3)
    assert v["power_limit_watts"] == pytest.approx(number(q["enforced.power.limit"]))
    assert v["clocks_event_reasons"] == int(q["clocks_event_reasons.active"], 16)
    assert v["throttle_sw_power_seconds"] == pytest.approx(
        (number(q["clocks_event_reasons_counters.sw_power_cap"]) or 0) / 1e6
    )
    assert v["pcie_link_gen"] == number(q["pcie.link.gen.gpucurrent"])
    mem_temp = number(q["temperature.memory"])
    assert v["memory_temperature_celsius"] == mem_temp  # None on cards without HBM sensors
    assert v["remapped_rows_correctable"] == number(q["remapped_rows.correctable"])
    # Not in the capture, not supported by the double: NULL, never 0.
    assert v["energy_joules"] is None
    assert v["pcie_tx_bytes"] is None
    assert v["temperature_slowdown_celsius"] is None
    assert v["gpm_sm_active_ratio"] is None
    [inv] = sampler.inventory()
    assert inv.attrs["model"] == q["name"] and inv.attrs["uuid"] == q["uuid"]


def test_dcgm_names_and_labels_on_the_exposition() -> None:
    path = capture(H100)
    sampler = GpuSampler(SamplerContext(nvml=CaptureNvml(path, "load")))
    text = render(sampler.sample(), sampler.inventory(), "node1").decode()
    q = query_gpu(path, "load")
    labels = {
        "gpu": "0",
        "UUID": q["uuid"],
        "modelName": q["name"],
        "pci_bus_id": q["pci.bus_id"],
        "hostname": "node1",
    }
    samples = {s.name: s for fam in text_string_to_metric_families(text) for s in fam.samples}
    for name, key in (
        ("DCGM_FI_DEV_GPU_UTIL", "utilization.gpu"),
        ("DCGM_FI_DEV_FB_USED", "memory.used"),
        ("DCGM_FI_DEV_GPU_TEMP", "temperature.gpu"),
        ("DCGM_FI_DEV_SM_CLOCK", "clocks.current.sm"),
    ):
        assert samples[name].labels == labels
        assert samples[name].value == number(q[key]), name
    assert samples["DCGM_FI_DEV_POWER_USAGE"].value == pytest.approx(number(q["power.draw"]))
    assert "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" not in samples  # not available: no sample at all


def test_function_not_found_is_null_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    nvml = CaptureNvml(capture(H100), "load", missing=("nvmlDeviceGetCurrentClocksEventReasons",))
    sampler = GpuSampler(SamplerContext(nvml=nvml))
    with caplog.at_level(logging.INFO):
        first = sampler.sample().rows("gpu")[0][1]
        sampler.sample()
    # The old name is asked instead: same value.
    assert first["clocks_event_reasons"] == int(
        query_gpu(capture(H100), "load")["clocks_event_reasons.active"], 16
    )
    assert sum("nvmlDeviceGetCurrentClocksEventReasons" in r.message for r in caplog.records) <= 1


def test_missing_library_is_a_normal_state(caplog: pytest.LogCaptureFixture) -> None:
    nvml = CaptureNvml(capture(H100), "idle")
    nvml.init_error = pynvml.NVML_ERROR_LIBRARY_NOT_FOUND
    log_once._seen.discard("gpu.unavailable")
    with caplog.at_level(logging.WARNING):
        sampler = GpuSampler(SamplerContext(nvml=nvml))
        GpuSampler(SamplerContext(nvml=nvml))
    assert sampler.sample().tables == {}
    assert sampler.inventory() == []
    assert sum("NVML not available" in r.message for r in caplog.records) == 1


def test_xid_events_become_rows() -> None:
    nvml = CaptureNvml(capture(H100), "load")
    sampler = GpuSampler(SamplerContext(nvml=nvml))
    assert nvml.registered == pynvml.nvmlEventTypeXidCriticalError
    nvml.xids = [79, 48]
    rows = sampler.sample().rows("gpu_xid")
    assert rows == [("0", {"xid": 79}), ("0", {"xid": 48})]
    assert sampler.sample().rows("gpu_xid") == []
