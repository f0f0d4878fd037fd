"""Where each injected fault really shows: the marks that become a trace's labels, for scoring detectors."""

from __future__ import annotations

import numpy as np

from ironsight.offline.simulate.emission import Emitter
from ironsight.offline.simulate.hardware import GpuTick, NodeState
from ironsight.offline.simulate.job import ITERATING, TRAIN
from ironsight.offline.simulate.scenarios import Event
from ironsight.offline.simulate.workload import Faults


def mark_faults(
    out: Emitter, events: list[Event], n: int, t: float, tns: int, st: NodeState, tick: GpuTick, f: Faults, ph: int,
    waiting: np.ndarray | None,
) -> None:  # fmt: skip
    """Marks every fault visible on node n at t (waiting: each GPU's share of the tick spent waiting for
    input); an XID also sends its one gpu_xid row."""
    g = st.gpu
    overheating, cap = f.heat[n], f.cap[n]
    for d in range(len(tick.util)):
        # A thermal incident shows from its pre-warning (within 5 C of slowdown)
        # until the die has cooled below it again, after the fault too.
        hot_fault = next(
            (e for e in events if e.kind == "thermal" and e.node == n and d in e.gpus and t >= e.start_s),
            None,
        )
        if hot_fault is not None and (
            (overheating is not None and bool(tick.sw_thermal[d])) or st.gpu_temp[d] >= g.slowdown_c - 5
        ):
            out.mark("thermal", n, d, t, hot_fault)
            if tick.hw_thermal[d]:
                out.critical.add(("thermal", n, d))
        if cap is not None and d in cap.gpus and tick.capped[d]:
            out.mark("power_cap", n, d, t, cap)
        # Starvation shows while the GPU waits for input: from the fault's start until the
        # iteration it starved has its data, which can outlast the fault by a step.
        starved = next(
            (
                e
                for e in events
                if e.kind == "data_starvation" and e.node == n and d in e.gpus and e.start_s <= t
            ),
            None,
        )
        if starved is not None and (
            (t < starved.end_s and ph in ITERATING)
            or (ph == TRAIN and waiting is not None and waiting[d] > 0.05 and t < starved.end_s + 60)
        ):
            out.mark("data_starvation", n, d, t, starved)
    for e in events:
        if e.kind == "xid" and e.node == n and not st.xid_sent and t >= e.start_s:
            out.add(n, "gpu_xid", tns, str(e.gpus[0]), {"xid": e.xid})
            st.xid_sent = True
        if e.kind == "xid" and e.start_s <= t < e.start_s + 10:
            # The label is the event; the stall that follows is its consequence.
            for d in e.gpus if e.node == n else []:
                out.mark("xid", n, d, t, e)
                if e.xid == 79:  # fallen off the bus: a hardware fault as well as the event
                    out.mark("hardware_fault", n, d, t, e)
                    out.critical.add(("hardware_fault", n, d))
    slow, port = f.straggle[n], f.network[n]
    if slow is not None and ph in ITERATING:
        out.mark("straggler", n, -1, t, slow)
    if port is not None and (port.cause == "congestion" or st.burst_until > port.start_s):
        out.mark("network_jitter", n, -1, t, port)  # loss shows from its first burst
