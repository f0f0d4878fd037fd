"""Detector thresholds and windows, with their defaults and why."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class Thresholds:
    step_s: int = 10  # how often a window is judged
    window_s: int = 60  # how far back each judgement looks
    close_after_s: int = 30  # a finding closes once its condition has been clear this long
    bridge_s: int = 180  # a condition flagged again within this long is the same incident, reopened
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
    # median active GPU's (job-wide dips such as checkpoints and evaluation cancel
    # out; a straggler's GPUs, busier through an evaluation pass, do not lift it),
    # or under 60 % outright while a host bottleneck coincides (a whole job starved
    # by shared storage has no healthy peers). Critical under half.
    starvation_window_s: int = (
        20  # five 4 s iterations; a 60 s mean took 3-4 steps to cross the bar, 30 s 2.3
    )
    starved_peer_ratio: float = 0.70
    job_busy_percent: float = 60.0  # the job's baseline must be training, not warming up, stalled or idle
    starved_util_percent: float = 60.0
    active_memory_bytes: int = 2**30
    # Causes: evidence that points at input, never one pegged core (each rank spins one).
    storage_busy_fraction: float = 0.90  # NVMe time busy, with reads at least the writes
    io_full_fraction: float = 0.10  # PSI io full stall time, without a write flood
    cpu_pressure_fraction: float = 0.25  # PSI cpu some: runnable tasks waiting for a core
    cores_busy_fraction: float = 0.80  # of all the node's cores (or a run queue over the cores)
    h2d_link_fraction: float = 0.80  # PCIe RX of the link's ceiling as trained now, in most seconds
    # Network jitter per RDMA port. Loss on a fabric that should be lossless: any
    # growth of out_of_sequence, packet_seq_err or local_ack_timeout_err. Congestion:
    # CNP and ECN-marked packet rates at least 10x both the port's own baseline (the
    # median of the 10 minutes before, leaving out the steps it stood 10x above its
    # peers: the baseline must not learn the fault) and its peers' (the median over
    # all ports in the same step), above a floor, in each of the last 2 steps.
    congestion_factor: float = 10.0
    congestion_floor_per_s: float = 20.0
    congestion_baseline_s: int = 600
    congestion_held_steps: int = 2
    # Stragglers: a node's iteration period (autocorrelation of its GPUs' mean
    # utilization over the window) at least 10 % above its peers' median, and,
    # with 4 or more peers, a robust z-score (median absolute deviation, floored at
    # 2 % of the median) of at least 3.5. Critical from 50 % slower. A period needs
    # an autocorrelation peak of 0.6: checkpoint pauses and idle spells have none.
    # Windows of 2/3, 1, 4/3, 5/3, 5/2 and 5 times this (16-120 s), each judging periods
    # up to half its length: a slowed node is read within about two of its new
    # iterations, where one window of three periods took 3-6 steps.
    straggler_window_s: int = 24
    straggler_min_strength: float = 0.6
    straggler_sure_strength: float = 0.65  # weaker, off a window of a minute or more: two steps in a row
    straggler_level_shift: float = 0.2  # window halves' means apart by more: a phase change, not judged
    straggler_min_swing: float = 0.05  # activity's spread over its mean: less is a level, not a rhythm
    straggler_slower_fraction: float = 0.10
    straggler_hold_s: int = 120  # an unjudged window (a checkpoint pause) keeps the last verdict this long
    straggler_critical_fraction: float = 0.50
    straggler_z: float = 3.5
    straggler_z_min_peers: int = 4
    # Judged only while the job trains at full tilt: its GPUs >= 80 % busy to NVML (an
    # evaluation pass runs lower, and its sub-second steps alias into false periods).
    straggler_training_util_percent: float = 80.0
    # Lock-step: a node whose mean activity (SM active, or power against its limit) over
    # the window is 7 % above its peers' while all run in step (activity correlated with
    # the others' mean at 0.5 or more) and NVML calls them all busy (>= 90 %: at the barrier, not
    # waiting for input, which idles a GPU to NVML too): they wait for it.
    straggler_busy_window_s: int = 30  # with 2/3, 2 and 4 times it: the shortest holding two periods
    straggler_busy_fraction: float = 0.07
    straggler_busy_util_percent: float = 90.0
    straggler_in_step: float = 0.5
    # A node this well in step with its peers (correlation) shares their period: another one
    # read off it is noise. Not at 0.5: a loosely coupled node falling out of phase as it
    # slows is still at 0.5-0.7 for its first slow window.
    straggler_period_in_step: float = 0.8


def with_overrides(items: list[str] | tuple[str, ...], base: Thresholds | None = None) -> Thresholds:
    """Thresholds from KEY=VALUE strings (e.g. window_s=120); ValueError names what is wrong."""
    known = {f.name: f.type for f in fields(Thresholds)}
    changes: dict[str, int | float] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise ValueError(f"threshold {item!r}: expected KEY=VALUE")
        if key not in known:
            raise ValueError(f"unknown threshold {key!r}; known: {', '.join(sorted(known))}")
        try:
            value: int | float = int(raw) if known[key] in ("int", int) else float(raw)
        except ValueError:
            raise ValueError(
                f"threshold {key}: expected {'an integer' if known[key] in ('int', int) else 'a number'}, got {raw!r}"
            ) from None
        if value < 0 or (
            key in ("step_s", "window_s", "straggler_window_s", "starvation_window_s") and value <= 0
        ):
            raise ValueError(f"threshold {key}: must be positive, got {raw!r}")
        changes[key] = value
    t = replace(base or Thresholds(), **changes)  # type: ignore[arg-type]
    if t.window_s % t.step_s or t.starvation_window_s % t.step_s or t.window_s < t.step_s:
        raise ValueError("threshold windows must be whole multiples of step_s")
    return t
