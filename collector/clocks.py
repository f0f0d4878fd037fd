"""Each node's clock against the collector's, from every batch's send time, and the shift its samples get.

The agent stamps each batch with its send time (Batch.sent_ns) as it writes it
to the stream, on its own timeline, which holds for a whole boot (agent.clock).
Receive time minus send time is the node's clock offset plus the network's delay, and a delay only ever adds, so the smallest of a node's last
few measurements is its offset. Within TOLERANCE the samples are stored as
stamped (a few seconds of skew is the node's own business, and shifting would
move them off the interval grid for nothing); beyond it they are stored
shifted by the offset, rounded to whole intervals, so that a node whose clock
is hours ahead or days behind lands where its samples belong instead of being
refused. The shift is kept with each batch (batches.clock_offset_ns), so the
original stamp is always the stored time minus it. A batch without a send
time (a replayed trace, an older agent) is stored as stamped.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field

log = logging.getLogger("ironsight.collector")

TOLERANCE_NS = 5 * 10**9
WINDOW = 8  # measurements kept per node: a delay spike on a few batches does not move the estimate


@dataclass
class NodeClock:
    boot_id: str = ""
    measured: deque[int] = field(default_factory=lambda: deque(maxlen=WINDOW))
    shifting: bool = False  # beyond tolerance at the last batch (logged when that changes)

    @property
    def offset_ns(self) -> int:
        return min(self.measured)


class Clocks:
    def __init__(self, tolerance_ns: int = TOLERANCE_NS) -> None:
        self.tolerance_ns = tolerance_ns
        self.nodes: dict[str, NodeClock] = {}

    def shift(self, node: str, boot_id: str, sent_ns: int, received_ns: int, interval_s: float) -> int:
        """Records one measurement; the shift in ns for this batch's samples (0: store as stamped)."""
        if sent_ns <= 0:
            return 0
        clock = self.nodes.get(node)
        if clock is None or clock.boot_id != boot_id:  # a reboot starts the agent's timeline anew
            clock = self.nodes[node] = NodeClock(boot_id, shifting=clock.shifting if clock else False)
        clock.measured.append(received_ns - sent_ns)
        offset = clock.offset_ns
        beyond = abs(offset) > self.tolerance_ns
        if beyond and not clock.shifting:
            log.warning(
                "node %s: its clock is %.1fs %s the collector's; its samples are stored shifted by the offset"
                " (batches.clock_offset_ns keeps it)",
                node,
                abs(offset) / 1e9,
                "behind" if offset > 0 else "ahead of",
            )
        elif clock.shifting and not beyond:
            log.info(
                "node %s: its clock is within %.0fs of the collector's again", node, self.tolerance_ns / 1e9
            )
        clock.shifting = beyond
        if not beyond:
            return 0
        step = (
            max(1, round(interval_s * 1e9)) if math.isfinite(interval_s) and interval_s > 0 else 1
        )  # checked later
        return round(offset / step) * step

    def offset_ns(self, node: str) -> int | None:
        """The node's latest estimate (None: no batch of it carried a send time)."""
        clock = self.nodes.get(node)
        return clock.offset_ns if clock is not None else None

    def offsets_s(self) -> dict[str, float]:
        """Each node's latest estimate, in seconds (the collector's clock minus the node's)."""
        return {node: c.offset_ns / 1e9 for node, c in self.nodes.items()}
