"""Detector thresholds and windows, with their defaults and why."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    step_s: int = 10  # how often a window is judged
    window_s: int = 60  # how far back each judgement looks
    close_after_s: int = 30  # a finding closes once its condition has been clear this long
    min_samples: int = 3  # fewer samples in a window: no judgement
    # Thermal (DESIGN.md): critical when HW thermal or HW power brake time grew at all;
    # warning when SW thermal time is >= 5 % of the window, or the SM clock is under
    # 90 % of its maximum with a thermal reason set; pre-warning within 5 C of slowdown.
    sw_thermal_fraction: float = 0.05
    clock_fraction: float = 0.90
    prewarn_margin_c: float = 5.0
    # Power capping is its own finding: SW power cap time >= 5 % of the window.
    power_cap_fraction: float = 0.05
    # Hardware faults: any growth of uncorrectable ECC or NVLink error counters, new
    # pending or uncorrectable row remaps, and PCIe replays beyond a trickle.
    pcie_replays_per_window: int = 10
