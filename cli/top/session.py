"""One `ironsight top` session's conversation with the store: a query per refresh, explain on demand."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from rich.console import Group, RenderableType
from rich.text import Text

from ironsight.cli.backend import Backend
from ironsight.cli.top.model import Snapshot
from ironsight.cli.top.query import HISTORY_POINTS, HISTORY_STEP_S, Ask, snapshot_sql

MIN_WINDOW_S, MAX_WINDOW_S = 5.0, 300.0
# The newest sample is looked for this far before the last one found, so the store reads only its
# newest row groups; data that stops arriving still shows its last values.
SINCE_MARGIN = timedelta(minutes=10)
FIRST_GUESS = timedelta(hours=1)


class Session:
    """Asks the backend (a collector or a file) one query per refresh. Thread-safe: the UI asks
    from a worker thread while explain may be asked from another."""

    def __init__(self, backend: Backend, job: str | None = None) -> None:
        self.backend = backend
        self.job = job
        self.queries = 0  # sent so far: one per refresh, however many nodes
        self._lock = threading.Lock()
        self._window_s = MAX_WINDOW_S
        # A live store's newest sample is within the hour: a first guess that spares a scan of all
        # history; a store of older data (a replayed trace) costs one more query, once.
        self._since: datetime | None = datetime.now(UTC).replace(tzinfo=None) - FIRST_GUESS
        self._guessed = True
        self._floor: datetime | None = None
        # The node in view's GPU utilization by bucket: the first refresh reads the sparklines whole,
        # the next ones only their newest buckets.
        self._history_node: str | None = None
        self._history: dict[str, dict[int, float]] = {}

    def snapshot(self, node: str | None = None) -> Snapshot:
        with self._lock:  # two refreshes at once (the view just changed) would tangle what is held
            return self._snapshot(node)

    def _snapshot(self, node: str | None) -> Snapshot:
        snap = self._ask(node)
        if snap.ref is None and self._guessed:
            self._since = None
            snap = self._ask(node)
        self._guessed = False
        # Next time look back as far as the slowest node's last two samples need: 2.5 intervals.
        intervals = [n["interval_s"] for n in snap.nodes if n.get("interval_s")]
        slowest = max(intervals, default=MAX_WINDOW_S / 2.5)
        self._window_s = min(MAX_WINDOW_S, max(MIN_WINDOW_S, 2.5 * slowest))
        if snap.ref is not None:
            self._since = snap.ref - SINCE_MARGIN
            self._floor = snap.ref - timedelta(seconds=self._window_s)
        return snap

    def _ask(self, node: str | None) -> Snapshot:
        if node != self._history_node:
            self._history_node, self._history = node, {}
        known = [max(b) for b in self._history.values() if b]
        # From the start of the newest bucket held: it may have been partial.
        history_from = (
            datetime(1970, 1, 1) + timedelta(seconds=min(known) * HISTORY_STEP_S) if known else None
        )
        ask = Ask(node, self.job, self._window_s, self._since, self._floor, history_from)
        self.queries += 1
        snap = Snapshot.from_arrow(self.backend.sql(snapshot_sql(ask), max_rows=1), node)
        if node and snap.detail and snap.ref:
            self._sparklines(snap)
        return snap

    def _sparklines(self, snap: Snapshot) -> None:
        """Adds this refresh's buckets to those held and gives each GPU its last HISTORY_POINTS, oldest first."""
        assert snap.detail is not None and snap.ref is not None
        newest = int((snap.ref - datetime(1970, 1, 1)).total_seconds()) // HISTORY_STEP_S
        for g in snap.detail.get("gpus") or []:
            held = self._history.setdefault(str(g["gpu"]), {})
            held.update(zip(g.pop("history_buckets", None) or [], g.get("history") or [], strict=False))
            for b in [b for b in held if b <= newest - HISTORY_POINTS]:
                del held[b]
            g["history"] = [held.get(b) for b in range(newest - HISTORY_POINTS + 1, newest + 1)]

    def explain(self, finding_id: int, now: datetime | None) -> RenderableType:
        """What `ironsight explain ID` prints, plots included, to show in place."""
        from ironsight.cli.findings import explanation
        from ironsight.offline import explain as ex

        now = now or datetime.now(UTC).replace(tzinfo=None)
        with self._lock:
            f = ex.finding(self.backend, finding_id)
            if f is None:
                return Text(f"finding {finding_id} is gone (removed by retention?)", style="yellow")
            plots = ex.plots(self.backend, f, now)
        lines, evidence = explanation(f, now)
        return Group(*(Text(line) for line in lines), evidence, *(Text(p, no_wrap=True) for p in plots))

    def close(self) -> None:
        with self._lock:
            self.backend.close()
