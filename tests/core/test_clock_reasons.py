"""NVML's clock event reasons in words, checked against pynvml's own constants."""

from __future__ import annotations

import pynvml

from ironsight.core.clock_reasons import COSTLY, REASONS, decode


def test_bits_are_nvmls() -> None:
    names = {
        "idle": "GpuIdle",
        "app clocks": "ApplicationsClocksSetting",
        "power cap": "SwPowerCap",
        "HW slowdown": "HwSlowdown",
        "sync boost": "SyncBoost",
        "SW thermal": "SwThermalSlowdown",
        "HW thermal": "HwThermalSlowdown",
        "power brake": "HwPowerBrakeSlowdown",
        "display clock": "DisplayClockSetting",
    }
    assert {word: bit for bit, word, _ in REASONS} == {
        word: getattr(pynvml, f"nvmlClocksEventReason{name}") for word, name in names.items()
    }


def test_decode() -> None:
    assert decode(None) == [] and decode(0) == []
    assert decode(0x1) == [("idle", False)]
    # A thermal incident: SW and HW thermal slowdown together, both costing clocks.
    assert decode(0x60) == [("SW thermal", True), ("HW thermal", True)]
    assert decode(0x4 | 0x1000) == [("power cap", True), ("0x1000", False)]
    assert COSTLY == 0x4 | 0x8 | 0x20 | 0x40 | 0x80
