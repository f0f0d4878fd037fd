"""The store: one DuckDB file, migrated on open, written by one thread that commits batches in groups.

All writes go through the writer thread, which takes whatever batches are
waiting and stores them in one transaction (collector.ingest), then
acknowledges each. Readers get their own cursors beside it (DuckDB's MVCC).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ironsight.collector.changes import Changes
from ironsight.collector.cold import cold_dir, rebuild_views
from ironsight.collector.database import connect
from ironsight.collector.ingest import Ingest, IngestStats
from ironsight.collector.migrations import migrate
from ironsight.core.validate import InvalidBatch, ValidBatch
from ironsight.core.worker import QueueWorker
from ironsight.v1 import telemetry_pb2 as pb

log = logging.getLogger("ironsight.collector")

MAX_QUEUED = 4096  # batches waiting for the writer; past that, ingest calls wait (back-pressure)


@dataclass
class Pending:
    batch: ValidBatch
    done: Callable[[pb.Ack | None, BaseException | None], None]

    @property
    def samples(self) -> int:
        return self.batch.samples


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.con = connect(self.path, sandboxed=True, readable=cold_dir(self.path))
        migrate(self.con)
        rebuild_views(self.con, self.path)
        self.changes = Changes()  # what each commit wrote, for the query API's head (promql/head.py)
        self.ingester = Ingest(self.con, self.changes)
        self._writer = _Writer(self.ingester)
        self._closed = False

    @property
    def stats(self) -> IngestStats:
        return self.ingester.stats

    def ingest(self, batches: Sequence[pb.Batch | ValidBatch]) -> list[pb.Ack | InvalidBatch]:
        """Stores batches now, on the caller's thread (replay into a file, tests)."""
        return self.ingester.ingest(batches)

    def start(self) -> None:
        self._writer.start()

    def writer_alive(self) -> bool:
        return self._writer.alive()

    def submit(self, p: Pending) -> None:
        self._writer.put(p)

    def reader(self) -> Any:
        """A connection for queries beside the writer (DuckDB's MVCC keeps them consistent)."""
        return self.con.cursor()

    def close(self) -> None:
        """Commits everything submitted, then checkpoints and closes the file."""
        if self._closed:
            return
        self._closed = True
        self._writer.stop(None)
        try:
            self.con.execute("CHECKPOINT")
        finally:
            self.con.close()


class _Writer(QueueWorker[Pending]):
    """The one writer: takes what is waiting (up to a group's bounds), commits it, acknowledges each batch."""

    max_group_samples = 4_000_000
    # A group's statements (a transaction, one per table, the nodes upsert, COMMIT) cost the same for 256
    # batches as for 1,024: with a backlog (a fleet sending as fast as it is acknowledged, or catching
    # up after an outage) the larger group stored 1,040 -> 1,300 batches/s, at 0.87 -> 0.74 s CPU per M
    # values. At agents' real pace a group is what arrived while the last one committed, far fewer.
    max_group_batches = 1024
    # Agents at 1 s trickle in, each at its own point of the second: a commit per batch or two costs
    # more than the batches (a transaction, a statement per table, a forward). While many nodes send,
    # a group that is not full waits this long for more; acknowledgements come that much later. A few
    # nodes (a test, a replay) are committed at once: lingering would only slow them.
    linger_s = 0.1
    linger_nodes = 8  # nodes that sent in the last second

    def __init__(self, ingester: Ingest) -> None:
        super().__init__("store-writer", max_queued=MAX_QUEUED)
        self.ingester = ingester
        self._sent: dict[str, float] = {}  # node -> when its last batch was taken (monotonic)

    def run(self) -> None:
        while group := self.take(self.max_group_batches, lambda p: p.samples, self.max_group_samples):
            if (
                len(group) < self.max_group_batches
                and self._many_send(group)
                and not self.sleep(self.linger_s)
            ):
                # What came while lingering, up to the group's bounds.
                more = self.max_group_batches - len(group)
                group += self.take(more, lambda p: p.samples, self.max_group_samples, block=False)
            try:
                self._commit(group)
            finally:
                self.done()

    def _many_send(self, group: list[Pending]) -> bool:
        now = time.monotonic()
        for p in group:
            self._sent[p.batch.batch.node_id] = now
        if len(self._sent) > 4 * self.linger_nodes:  # forget nodes gone quiet
            self._sent = {n: t for n, t in self._sent.items() if now - t < 1.0}
        return sum(1 for t in self._sent.values() if now - t < 1.0) >= self.linger_nodes

    def _commit(self, group: list[Pending]) -> None:
        try:
            outcomes = self.ingester.ingest([p.batch for p in group])
        except Exception as exc:  # disk full, corrupt file...: fail these batches, keep serving
            self.ingester.stats.failures += 1
            msg = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            if msg != self.ingester.stats.last_error:
                log.error("store failed, batches not acknowledged: %s", msg)
            self.ingester.stats.last_error = msg
            for p in group:
                p.done(None, exc)
            return
        if self.ingester.stats.last_error:
            log.info("store recovered")
            self.ingester.stats.last_error = ""
        for p, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, InvalidBatch):
                p.done(None, outcome)
            else:
                p.done(outcome, None)
