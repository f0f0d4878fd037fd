"""Logging for the services: one line per event on stderr (journald keeps it), text or JSON, and no
line repeated in a loop: past a burst, repeats of the same message are counted and summarised.
"""

from __future__ import annotations

import datetime as dt
import faulthandler
import json
import logging
import signal
import sys
import threading
import time

BURST = 5  # the same line (logger, level, text) this many times per window, then counted only
WINDOW_S = 60.0


class RateLimit(logging.Filter):
    def __init__(self, burst: int = BURST, window_s: float = WINDOW_S) -> None:
        super().__init__()
        self.burst, self.window_s = burst, window_s
        self._seen: dict[tuple[str, int, str], list[float | int]] = {}  # key -> [window start, count]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "summary", False):
            return True
        # The rendered text: distinct events (each finding opened) are never held back, only repeats.
        key = (record.name, record.levelno, record.getMessage())
        now = time.monotonic()
        with self._lock:
            if len(self._seen) > 10_000:  # forget what has not been said for a window
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.window_s}
            entry = self._seen.get(key)
            if entry is None or now - entry[0] >= self.window_s:
                suppressed = int(entry[1]) - self.burst if entry is not None and entry[1] > self.burst else 0
                self._seen[key] = [now, 1]
                if suppressed:
                    record.suppressed = suppressed  # the first line of a new window says what was held back
                return True
            entry[1] += 1
            return entry[1] <= self.burst


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        n = getattr(record, "suppressed", 0)
        return f"{line} (and {n} more like it in the last minute, not shown)" if n else line


class _Fields(logging.Formatter):
    """The one set of fields both structured formats write."""

    def fields(self, record: logging.LogRecord) -> dict[str, object]:
        out: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if getattr(record, "suppressed", 0):
            out["suppressed"] = getattr(record, "suppressed", 0)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return out


class LogfmtFormatter(_Fields):
    """key=value pairs (logfmt), values quoted when they hold spaces, quotes or '='."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_quote(str(v))}" for k, v in self.fields(record).items())


def _quote(value: str) -> str:
    if value and not any(c in value for c in ' "=\n\\'):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class JsonFormatter(_Fields):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(self.fields(record), default=str)


def setup(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    formatters = {"json": JsonFormatter, "logfmt": LogfmtFormatter}
    handler.setFormatter(formatters.get(fmt, TextFormatter)())
    handler.addFilter(RateLimit())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def stacks_on_signal(signum: int = signal.SIGUSR1) -> None:
    """Every thread's stack to stderr (the journal) on signum, the service carrying on: `kill -USR1 PID`
    shows where a service that stopped answering, or will not stop, is waiting."""
    faulthandler.register(signum, file=sys.stderr, all_threads=True)
