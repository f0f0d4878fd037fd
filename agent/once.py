"""Log a state once, not on every tick: missing hardware, an unsupported NVML call, a file a kernel lacks.

Its own module (not the samplers' base) so that NVML's wrapper can use it
without importing the samplers package, which imports NVML's wrapper.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("ironsight.agent")


class LogOnce:
    """Logs a given key once: missing hardware is a state, not an event per tick."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, key: str, msg: str, level: int = logging.INFO) -> None:
        with self._lock:
            if key in self._seen:
                return
            self._seen.add(key)
        log.log(level, msg)


log_once = LogOnce()
