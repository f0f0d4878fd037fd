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
    # Data starvation. DESIGN.md starts from TensorFlow's input-pipeline rule (share
    # of seconds a GPU is under 50 % busy: moderate at 5 %, high at 20 %), but a
    # synchronous job's per-second utilization dips at every all-reduce: a healthy
    # GPU spends 0-25 % of its seconds under 50 % depending on how the iteration
    # falls on the sampling grid. So a GPU is starved when, holding memory and not
    # throttled, its mean utilization over the window is under 70 % of the job's
    # busier active GPUs' (75th percentile; job-wide dips such as checkpoints and
    # evaluation cancel out),
    # or under 60 % outright while a host bottleneck coincides (a whole job starved
    # by shared storage has no healthy peers). Critical under half.
    starvation_window_s: int = (
        20  # five 4 s iterations; a 60 s mean took 3-4 steps to cross the bar, 30 s 2.3
    )
    starved_peer_ratio: float = 0.70
    job_busy_percent: float = 50.0  # the job's baseline must be training, not stalled or idle
    starved_util_percent: float = 60.0
    active_memory_bytes: int = 2**30
    storage_busy_fraction: float = 0.90  # NVMe time busy
    io_full_fraction: float = 0.10  # PSI io full stall time
    cpu_core_busy_fraction: float = 0.95  # the busiest core (a data loader's)
    h2d_link_fraction: float = 0.80  # PCIe RX of the link's ceiling
    # Network jitter per RDMA port. Loss on a fabric that should be lossless: any
    # growth of out_of_sequence, packet_seq_err or local_ack_timeout_err. Congestion:
    # CNP and ECN-marked packet rates at least 10x both the port's own baseline (the
    # median of the 10 minutes before) and its peers' (the median over all ports in
    # the same step), above a floor, in each of the last 3 steps.
    congestion_factor: float = 10.0
    congestion_floor_per_s: float = 20.0
    congestion_baseline_s: int = 600
    congestion_held_steps: int = 3
