"""The agent's timeline: the wall clock at start, carried on by a clock that is never stepped.

Every sample and every batch's send time is stamped on this timeline, not on
the system clock directly. A step of the system clock (NTP correcting a node
fresh from imaging, an operator's `date -s`) then neither repeats nor skips
a stretch of samples: the tick grid goes on, counters see no hole. The
timeline is CLOCK_BOOTTIME, which NTP slews but never steps and which counts
a suspend, anchored to the wall clock when the agent first starts in a boot
(kept in the state directory, so a restart within the boot stays on it). How far the
timeline is from true time is the collector's to measure and correct, from
each batch's send time (docs/operations.md, "Clocks"); here a step is only
noticed and logged, once per step.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

log = logging.getLogger("ironsight.agent")

STEP_NS = 1_000_000_000  # wall clock and timeline apart by more than this: the system clock was stepped


class Timeline:
    def __init__(self) -> None:
        # timeline = CLOCK_BOOTTIME + offset; anchored on the wall clock now, or by anchor() below.
        self._offset_ns = time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        self._logged_ns = 0  # the wall clock's distance from the timeline when last logged

    def now_ns(self) -> int:
        return time.clock_gettime_ns(time.CLOCK_BOOTTIME) + self._offset_ns

    def anchor(self, path: Path, boot_id: str) -> None:
        """One timeline per boot, kept in path: an agent restarted within the boot stamps on the timeline its
        spooled batches were made on, so their send times (stamped at the resend) and samples agree."""
        try:
            kept_boot, _, offset = path.read_text().partition(" ")
            if kept_boot == boot_id:
                self._offset_ns = int(offset)
                return
        except (OSError, ValueError):
            pass  # first start of this boot, or an unreadable file: anchor on the wall clock now
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{boot_id} {self._offset_ns}")
        except OSError as exc:
            log.warning(
                "cannot keep the agent's timeline in %s (%s); a restart re-reads the wall clock", path, exc
            )

    def check_wall(self) -> int:
        """The system clock minus the timeline, in ns; logs a step of it once (cheap: two clock reads)."""
        apart = time.time_ns() - self.now_ns()
        if abs(apart - self._logged_ns) > STEP_NS:
            log.warning(
                "the system clock moved %+.1fs against the agent's timeline; samples stay on the timeline"
                " (no repeated or skipped ticks), the collector corrects the node's offset",
                (apart - self._logged_ns) / 1e9,
            )
            self._logged_ns = apart
        return apart


TIMELINE = Timeline()  # one per agent process: the loop and the sender stamp on the same timeline
