"""SIGHUP: read the configuration again and apply what can change while running.

The sampler set, the interval and the batch period change in place (the
pending ticks are sent first); everything else (collector address, TLS,
node id, listen addresses, spool) needs a restart and is said so, once per
key. A configuration that no longer parses is refused with one line and the
running one is kept.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from ironsight.core.config import changes

log = logging.getLogger("ironsight.agent")

LIVE = ("interval", "batch_seconds")  # plus the enable_* sampler switches


class Signals:
    """SIGTERM/SIGINT end the loop for good; SIGHUP ends it to reload. Both wake it at once."""

    def __init__(self) -> None:
        self.wake = threading.Event()
        self.term = False
        self.hup = False
        signal.signal(signal.SIGTERM, self._term)
        signal.signal(signal.SIGINT, self._term)
        signal.signal(signal.SIGHUP, self._hup)

    def _term(self, *_: Any) -> None:
        self.term = True
        self.wake.set()

    def _hup(self, *_: Any) -> None:
        self.hup = True
        self.wake.set()

    def rearm(self) -> None:
        self.hup = False
        self.wake.clear()
        if self.term:  # a SIGTERM that came with the SIGHUP still ends it
            self.wake.set()


def reload(old: argparse.Namespace, parse: Callable[[], argparse.Namespace]) -> argparse.Namespace:
    """The configuration to run with now: the new one's live keys over the old one."""
    try:
        new = parse()
    except SystemExit:  # argparse has printed its one line
        log.error("reload: the configuration does not parse (see above); keeping the running one")
        return old
    live, restart = changes(old, new, lambda k: k in LIVE or k.startswith("enable_"), ignore=("tls",))
    if not live and not restart:
        log.info("reload: nothing changed")
    for key, (before, after) in live.items():
        log.info("reload: %s %s -> %s", key.removeprefix("enable_") + (" sampler" if key.startswith("enable_") else ""),
                 before, after)  # fmt: skip
        setattr(old, key, after)
    for key in restart:
        log.warning("reload: %s changed; it takes effect at the next restart", key)
    return old
