"""What the writers changed in the sample tables, said after each commit, for whoever keeps a copy.

The Prometheus API keeps recent samples in memory (promql/head.py); every writer
of a sample table (ingest, the remote-write receiver's settling, retention) tells
this object, after its COMMIT, which table it touched between which times, or
before which time it deleted. A listener reads the touched span again before it
next answers: a notice after the commit can make it read twice, never miss a row.
"""

from __future__ import annotations

import threading
from typing import Protocol


class Listener(Protocol):
    def wrote(self, table: str, lo_ms: int, hi_ms: int) -> None: ...

    def pruned(self, before_ms: int) -> None: ...


class Changes:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def listen(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def wrote(self, table: str, lo_ms: int, hi_ms: int) -> None:
        """Rows of table (its base name: gpu, not gpu_hot) with lo_ms <= time (ms) <= hi_ms were
        inserted or updated and are committed."""
        for listener in self._listeners:
            listener.wrote(table, lo_ms, hi_ms)

    def pruned(self, before_ms: int) -> None:
        """Every sample table's rows before before_ms are deleted."""
        for listener in self._listeners:
            listener.pruned(before_ms)
