"""The store: one DuckDB file, migrated on open, its batches committed in groups by one thread.

All writes of batches go through the writer: one thread takes whatever batches
are waiting and reads them (collector.ingest's prepare), a second commits each
read group in one transaction, in order, then acknowledges each batch. Readers
get their own cursors beside it (DuckDB's MVCC).
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
from ironsight.collector.ingest import Ingest, IngestStats, Prepared
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
    """The one writer: takes what is waiting (up to a group's bounds) and reads it (Ingest.prepare) while
    the group before commits on a thread of its own (_Committer), which acknowledges each batch.

    Reading a group (its tables' fields, checks, decoding to Arrow) was two fifths of the writer's time,
    all of it under the interpreter lock, while the transaction's inserts and COMMIT run in DuckDB
    without it: side by side, a group's reading hides behind the last one's commit."""

    max_group_samples = 4_000_000
    # A group's statements (a transaction, one per table, the nodes upsert, COMMIT) cost the same for 256
    # batches as for 1,024: with a backlog (a fleet sending as fast as it is acknowledged, or catching
    # up after an outage) the larger group stored 1,040 -> 1,300 batches/s, at 0.87 -> 0.74 s CPU per M
    # values. At 2,048, a fleet of 64-core nodes puts a whole row group (122,880 rows) of cpu in each
    # commit, which DuckDB writes compressed to the file at once instead of to the WAL and again at the
    # next checkpoint (a fifth less written): fleet-ingest 2,600-3,100 -> 3,400-3,600 batches/s
    # (interleaved runs). At agents' real pace a group is what arrived while the last one committed,
    # far fewer.
    max_group_batches = 2048
    # Agents at 1 s trickle in, each at its own point of the second: a commit per batch or two costs
    # more than the batches (a transaction, a statement per table, a forward). While many nodes send,
    # a group that is not full waits this long for more; acknowledgements come that much later. A few
    # nodes (a test, a replay) are committed at once: lingering would only slow them.
    linger_s = 0.1
    linger_nodes = 8  # nodes that sent in the last second

    def __init__(self, ingester: Ingest) -> None:
        super().__init__("store-writer", max_queued=MAX_QUEUED)
        self.ingester = ingester
        self.committer = _Committer(ingester)
        self._sent: dict[str, float] = {}  # node -> when its last batch was taken (monotonic)

    def start(self) -> None:
        self.committer.start()
        super().start()

    def alive(self) -> bool:
        return super().alive() and self.committer.alive()

    def stop(self, timeout_s: float | None, join_s: float | None = None) -> bool:
        """Reads what is queued, then commits what is read (each within timeout_s)."""
        read = super().stop(timeout_s, join_s)
        return self.committer.stop(timeout_s, join_s) and read

    def run(self) -> None:
        con = self.ingester.con.cursor()  # this thread's own: the committer's is in its transaction
        try:
            # One group read ahead of the one committing, not two: each is some 70 MB of Arrow.
            while self.committer.wait_taken() and (
                group := self.take(self.max_group_batches, lambda p: p.samples, self.max_group_samples)
            ):
                if (
                    len(group) < self.max_group_batches
                    and self._many_send(group)
                    and not self.sleep(self.linger_s)
                ):
                    # What came while lingering, up to the group's bounds.
                    more = self.max_group_batches - len(group)
                    group += self.take(more, lambda p: p.samples, self.max_group_samples, block=False)
                try:
                    self._prepare(group, con)
                finally:
                    self.done()
        finally:
            con.close()

    def _prepare(self, group: list[Pending], con: Any) -> None:
        try:
            prepared = self.ingester.prepare([p.batch for p in group], con)
        except Exception as exc:  # the database could not say what is stored: fail these, keep serving
            self.committer.failed(group, exc)
            return
        self.committer.put((group, prepared))  # its queue is empty: run() waited for that (wait_taken)

    def _many_send(self, group: list[Pending]) -> bool:
        now = time.monotonic()
        for p in group:
            self._sent[p.batch.batch.node_id] = now
        if len(self._sent) > 4 * self.linger_nodes:  # forget nodes gone quiet
            self._sent = {n: t for n, t in self._sent.items() if now - t < 1.0}
        return sum(1 for t in self._sent.values() if now - t < 1.0) >= self.linger_nodes


class _Committer(QueueWorker[tuple[list[Pending], Prepared]]):
    """Commits read groups one at a time, in order, and acknowledges each batch after its COMMIT."""

    def __init__(self, ingester: Ingest) -> None:
        super().__init__("store-commit", max_queued=1)
        self.ingester = ingester

    def wait_taken(self) -> bool:
        """Waits until the group handed over last is being committed; False once stopping."""
        with self.cond:
            while self.queue and not self.stopping:
                self.cond.wait()
            return not self.stopping

    def run(self) -> None:
        while taken := self.take(1):
            try:
                group, prepared = taken[0]
                self._commit(group, prepared)
            finally:
                self.done()

    def _commit(self, group: list[Pending], prepared: Prepared) -> None:
        try:
            outcomes = self.ingester.commit(prepared)
        except Exception as exc:  # disk full, corrupt file...: fail these batches, keep serving
            self.failed(group, exc)
            return
        if self.ingester.stats.last_error:
            log.info("store recovered")
            self.ingester.stats.last_error = ""
        for p, outcome in zip(group, outcomes, strict=True):
            if isinstance(outcome, InvalidBatch):
                p.done(None, outcome)
            else:
                p.done(outcome, None)

    def failed(self, group: list[Pending], exc: Exception) -> None:
        """None of the group is stored: each batch fails (its sender resends), and the error is logged once."""
        stats = self.ingester.stats
        stats.failures += 1
        msg = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if msg != stats.last_error:
            log.error("store failed, batches not acknowledged: %s", msg)
        stats.last_error = msg
        for p in group:
            p.done(None, exc)
