"""Batches the collector refused after they were spooled: kept on disk, counted, never deleted silently.

The batcher leaves out whatever the collector's checks would refuse, so a
refusal here means the two disagree (an older or newer collector, a bug).
Resending such a batch would stall the stream forever; deleting it would lose
its data without a trace. So it moves here: one file per batch (the bytes as
spooled, readable with the trace tools' protobuf), a line per batch in
refused.log with the collector's reason, and at most max_bytes in all: past
that the oldest files go, counted and logged. `ironsight doctor` shows what
is here.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path

log = logging.getLogger("ironsight.agent")

SUFFIX = ".batch"
LOG_NAME = "refused.log"


class Quarantine:
    def __init__(self, folder: Path | None, max_bytes: int = 64 * 2**20) -> None:
        """folder None: count and log only (an agent without a spool)."""
        self.folder, self.max_bytes = folder, max_bytes
        self.rejected: Counter[str] = Counter()  # by the collector's reason
        self.evicted = 0  # quarantined batches removed to stay under max_bytes

    def keep(self, seq: int, payload: bytes | None, reason: str, message: str) -> None:
        if reason not in self.rejected:
            log.error(
                "collector refused a batch (%s): %s; kept in %s, counted from now on",
                reason,
                message,
                self.folder or "memory (no spool): not kept",
            )
        self.rejected[reason] += 1
        if self.folder is None or payload is None:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / f"{seq}{SUFFIX}").write_bytes(payload)
            with open(self.folder / LOG_NAME, "a") as f:
                f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} seq={seq} reason={reason} {message}\n")
            self._bound()
        except OSError as exc:
            log.error("cannot keep refused batch %d in %s: %s", seq, self.folder, exc)

    def _bound(self) -> None:
        assert self.folder is not None
        files = sorted(self.folder.glob(f"*{SUFFIX}"), key=lambda p: int(p.stem))
        sizes = [p.stat().st_size for p in files]
        total = sum(sizes)
        while files and total > self.max_bytes:
            oldest = files.pop(0)
            total -= sizes.pop(0)
            oldest.unlink(missing_ok=True)
            self.evicted += 1
            if self.evicted == 1 or self.evicted % 100 == 0:
                log.warning(
                    "quarantine over %d bytes: removed %d oldest refused batches so far",
                    self.max_bytes,
                    self.evicted,
                )


def held(folder: Path) -> tuple[int, int]:
    """(batches, bytes) kept in a quarantine folder, for doctor."""
    files = list(folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []
    return len(files), sum(p.stat().st_size for p in files)
