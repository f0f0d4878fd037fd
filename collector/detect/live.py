"""The detector inside the collector: every step, judge the newest window and carry findings forward.

Each step runs the same detectors as `ironsight detect` for one step end and
merges what they flag into the events table in three statements: flagged
keys that have a recent finding continue it, the others open one, and open
findings clear for longer than close_after_s close. The result matches the
offline gaps-and-islands merge, step by step. One log line per opened and
closed finding; the open ones feed the ironsight_bottleneck_active gauge.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ironsight.collector.detect.activity import Cache
from ironsight.collector.detect.findings import (
    DEFAULTS,
    RECENT,
    STRAGGLERS,
    explained_s,
    flagged_sql,
    merge_gap,
    register_stragglers,
    severity_rank,
)
from ironsight.collector.detect.sql import jobs_at, last_looks, ts
from ironsight.collector.detect.thresholds import Thresholds
from ironsight.core.worker import Worker

log = logging.getLogger("ironsight.detect")

MAX_CATCH_UP_STEPS = 30  # after a stall, judge at most this many missed steps, then jump to now


def _same_finding(e: str, f: str, end: datetime, t: Thresholds) -> str:
    # Different hardware faults on one GPU are different findings (as offline); a
    # condition flagged again within the merge gap continues (reopens) its finding.
    return (
        f"{e}.kind = {f}.kind AND {e}.node = {f}.node AND {e}.device = {f}.device "
        f"AND ({f}.kind <> 'hardware_fault' OR {e}.cause = {f}.cause) "
        f"AND ({e}.evidence->>'last_window_end')::TIMESTAMP >= {ts(end)} - to_seconds({merge_gap(t, f'{f}.kind')})"
    )


@dataclass
class StepResult:
    end: datetime
    flagged: int
    opened: list[dict[str, Any]]
    closed: list[dict[str, Any]]
    seconds: float
    reopened: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class OpenFinding:
    kind: str
    node: str
    device: str
    severity: str
    cause: str
    start: datetime
    figures: dict[str, float]  # the numbers of the evidence's peak step, by name
    job: str = ""  # the job(s) it hit, comma-separated; '' where none is known


@dataclass
class Status:
    """What the metrics endpoint shows: open findings and the last step's cost."""

    open: list[OpenFinding] = field(default_factory=list)
    opened: Counter[str] = field(default_factory=Counter)  # findings opened since start, by kind
    last_step_end: datetime | None = None
    last_step_seconds: float = 0.0
    steps: int = 0
    failures: int = 0
    jobs: list[tuple[str, str, int]] = field(default_factory=list)  # (job, node, GPUs) held now


def step(con: Any, end: datetime, t: Thresholds = DEFAULTS, cache: Cache | None = None) -> StepResult:
    """Judges the step ending at `end` and updates the events table; con is the collector's cursor.

    cache: what the straggler detector keeps between consecutive steps (LiveDetector's own).
    """
    began = time.perf_counter()
    start = end - timedelta(seconds=t.step_s)
    # Earlier steps' flags other than stragglers: what explains a straggler looks back further than a step.
    con.execute(f"CREATE TEMP TABLE IF NOT EXISTS {RECENT} (node VARCHAR, step_end TIMESTAMP)")
    con.execute(f"DELETE FROM {RECENT} WHERE step_end < {ts(end - timedelta(seconds=explained_s(t)))}")
    register_stragglers(con, start, end, t, cache)
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE step_flags AS SELECT *, {severity_rank()} AS rank "
            f"FROM ({flagged_sql(start, end, t, recent=True)}) WHERE step_end = {ts(end)}"
        )
    finally:
        con.unregister(STRAGGLERS)
    con.execute(f"INSERT INTO {RECENT} SELECT node, step_end FROM step_flags WHERE kind <> 'straggler'")
    flagged = con.execute("SELECT count(*) FROM step_flags").fetchall()[0][0]
    con.execute("BEGIN TRANSACTION")
    try:
        # A closed finding flagged again within the merge gap reopens: said, so its close is not the last word.
        reopened = con.execute(
            f"""SELECT DISTINCT e.id, e.kind, e.severity, e.node, e.device, e.cause, e.start_time FROM events e, step_flags f
                WHERE {_same_finding("e", "f", end, t)} AND e.end_time IS NOT NULL AND f.onset IS NULL"""
        ).fetchall()
        con.execute(_continue_sql(t, end))
        opened = con.execute(_open_sql(t, end)).fetchall()
        closed = con.execute(_close_sql(t, end)).fetchall()
        con.execute(
            "INSERT INTO detector_state VALUES ('live', ?) ON CONFLICT (name) DO UPDATE SET last_step_end = ?",
            [end, end],
        )
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    cols = ("id", "kind", "severity", "node", "device", "cause", "start_time", "end_time")
    return StepResult(
        end,
        int(flagged),
        [dict(zip(cols, r, strict=False)) for r in opened],
        [dict(zip(cols, r, strict=True)) for r in closed],
        time.perf_counter() - began,
        [dict(zip(cols, r, strict=False)) for r in reopened],
    )


def _continue_sql(t: Thresholds, end: datetime) -> str:
    """Continue: a flagged key with a finding whose last window is within the merge gap."""
    s = t.step_s
    return f"""
            UPDATE events AS e SET
                severity = CASE WHEN f.rank > {severity_rank("e.severity")} THEN f.severity ELSE e.severity END,
                end_time = CASE WHEN f.onset IS NOT NULL THEN f.onset + INTERVAL {s} SECOND ELSE NULL END,
                cause = CASE WHEN f.score > (e.evidence->>'peak_score')::DOUBLE THEN f.cause ELSE e.cause END,
                evidence = json_object(
                    'window_s', {t.window_s},
                    'steps', (e.evidence->>'steps')::BIGINT + 1,
                    'first_window_end', (e.evidence->>'first_window_end')::TIMESTAMP,
                    'first_active_end', (e.evidence->>'first_active_end')::TIMESTAMP,
                    'last_window_end', f.step_end,
                    'last_active_end', CASE WHEN f.onset IS NOT NULL THEN f.onset + INTERVAL {s} SECOND
                                            WHEN f.active THEN f.step_end
                                            ELSE (e.evidence->>'last_active_end')::TIMESTAMP END,
                    'peak_window_end', CASE WHEN f.score > (e.evidence->>'peak_score')::DOUBLE THEN f.step_end
                                            ELSE (e.evidence->>'peak_window_end')::TIMESTAMP END,
                    'peak', CASE WHEN f.score > (e.evidence->>'peak_score')::DOUBLE THEN f.evidence
                                 ELSE e.evidence->'peak' END,
                    'peak_score', greatest(f.score, (e.evidence->>'peak_score')::DOUBLE))
            FROM step_flags f
            WHERE {_same_finding("e", "f", end, t)}
            """


def _open_sql(t: Thresholds, end: datetime) -> str:
    """Open: a step where the rule held on its own (or an XID), with no finding to continue."""
    s = t.step_s
    return f"""
            INSERT INTO events (kind, severity, node, device, start_time, end_time, cause, evidence, detected_at, job)
            SELECT f.kind, f.severity, f.node, f.device,
                coalesce(f.onset, f.step_end - INTERVAL {s} SECOND),
                f.onset + INTERVAL {s} SECOND, f.cause,
                json_object('window_s', {t.window_s}, 'steps', 1, 'first_window_end', f.step_end,
                    'last_window_end', f.step_end, 'first_active_end', f.step_end,
                    'last_active_end', coalesce(f.onset + INTERVAL {s} SECOND, f.step_end),
                    'peak_window_end', f.step_end, 'peak', f.evidence, 'peak_score', f.score),
                now()::TIMESTAMP, {jobs_at("f.node", "f.device", "f.step_end", ts(end))}
            FROM step_flags f
            WHERE (f.active OR f.onset IS NOT NULL)
                AND NOT EXISTS (SELECT 1 FROM events e WHERE {_same_finding("e", "f", end, t)})
            RETURNING id, kind, severity, node, device, cause, start_time
            """


def _close_sql(t: Thresholds, end: datetime) -> str:
    """Close: clear for longer than close_after_s; it ends where its rule last held."""
    return f"""
            UPDATE events SET end_time = (evidence->>'last_active_end')::TIMESTAMP
            WHERE end_time IS NULL
                AND (evidence->>'last_window_end')::TIMESTAMP < {ts(end - timedelta(seconds=t.close_after_s))}
            RETURNING id, kind, severity, node, device, cause, start_time, end_time
            """


def peak_figures(evidence: str | None) -> dict[str, float]:
    """The peak step's numeric evidence (lists such as XID codes give their last element)."""
    peak = json.loads(evidence or "{}").get("peak") or {}
    out: dict[str, float] = {}
    for name, value in peak.items():
        if isinstance(value, list):
            value = value[-1] if value else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def open_findings(con: Any) -> list[OpenFinding]:
    rows = con.execute(
        "SELECT kind, node, device, severity, coalesce(cause, ''), start_time, evidence::VARCHAR, "
        "coalesce(job, '') FROM events WHERE end_time IS NULL ORDER BY kind, node, device"
    ).fetchall()
    return [
        OpenFinding(str(k), str(n), str(d), str(s), str(c), st, peak_figures(e), str(j))
        for k, n, d, s, c, st, e, j in rows
    ]


JOBS_FRESH_S = 600  # a node with no GPU sample for this long (its agent gone) holds no job here


def jobs_now(con: Any, at: datetime) -> list[tuple[str, str, int]]:
    """Per job and node, the GPUs the node's last look at or before `at` put in that job, for
    nodes whose GPUs reported within JOBS_FRESH_S (looks are stored on change only)."""
    rows = con.execute(
        f"""SELECT job, node, count(DISTINCT gpu)::INT FROM {last_looks(ts(at))}
            WHERE node IN (
                SELECT DISTINCT node FROM gpu
                WHERE time > {ts(at - timedelta(seconds=JOBS_FRESH_S))} AND time <= {ts(at)})
            GROUP BY ALL ORDER BY ALL"""
    ).fetchall()
    return [(str(j), str(n), int(g)) for j, n, g in rows]


def _log(result: StepResult) -> None:
    for f in result.opened:
        log.warning(
            "finding opened id=%s kind=%s severity=%s node=%s device=%s cause=%s start=%s",
            f["id"], f["kind"], f["severity"], f["node"], f["device"] or "-", f["cause"] or "-",
            f["start_time"].isoformat(sep=" "),
        )  # fmt: skip
    for f in result.reopened:
        log.warning(
            "finding reopened id=%s kind=%s node=%s device=%s (flagged again within the merge gap)",
            f["id"], f["kind"], f["node"], f["device"] or "-",
        )  # fmt: skip
    for f in result.closed:
        lasted = (f["end_time"] - f["start_time"]).total_seconds()
        log.info(
            "finding closed id=%s kind=%s severity=%s node=%s device=%s lasted=%.0fs",
            f["id"], f["kind"], f["severity"], f["node"], f["device"] or "-", lasted,
        )  # fmt: skip


# What the detectors read: a store with none of these since a step's window began has nothing to judge.
JUDGED_TABLES = ("gpu", "rdma", "gpu_xid")


def _samples_after(con: Any, since: datetime) -> bool:
    """Whether any judged table holds a sample after since (each a bounded scan: its time zone maps)."""
    return any(
        con.execute(f"SELECT 1 FROM {table} WHERE time > ? LIMIT 1", [since]).fetchall()
        for table in JUDGED_TABLES
    )


def _longest_window_s(t: Thresholds) -> int:
    return max(int(v) for k, v in vars(t).items() if k.endswith("window_s"))


class LiveDetector(Worker):
    """A thread that runs step() on the step grid, delay_s behind the wall clock (data in flight)."""

    def __init__(self, con: Any, t: Thresholds = DEFAULTS, delay_s: float = 5.0) -> None:
        super().__init__("detector")
        self.con, self.t, self.delay_s = con, t, delay_s
        self.status = Status()
        self._next: datetime | None = None
        self.cache = Cache()

    def start(self) -> None:
        """Resumes after the last step judged before a restart (within the catch-up bound)."""
        row = self.con.execute("SELECT last_step_end FROM detector_state WHERE name = 'live'").fetchall()
        if row:
            self._next = row[0][0] + timedelta(seconds=self.t.step_s)
        else:
            self._next = self.first_step(datetime.now(UTC).replace(tzinfo=None))
        self.status.open = open_findings(self.con)
        super().start()

    def first_step(self, now: datetime) -> datetime:
        """Where a new store, or one loaded offline, starts: the last few minutes too where they hold
        samples, else now. Judging a new store's 30 empty steps cost 3.9 s of CPU at each first start."""
        latest = self.due(now)[-1]
        first = latest - timedelta(seconds=self.t.step_s * (MAX_CATCH_UP_STEPS - 1))
        since = first - timedelta(seconds=_longest_window_s(self.t))
        return first if _samples_after(self.con, since) else latest

    def due(self, now: datetime) -> list[datetime]:
        """Step ends not yet judged up to now - delay (all of them after a short stall)."""
        s = self.t.step_s
        latest_epoch = int((now - datetime(1970, 1, 1)).total_seconds() - self.delay_s) // s * s
        latest = datetime(1970, 1, 1) + timedelta(seconds=latest_epoch)
        first = self._next or latest
        if (latest - first).total_seconds() / s >= MAX_CATCH_UP_STEPS:
            log.warning(
                "detector %s behind; judging the last %d steps only", latest - first, MAX_CATCH_UP_STEPS
            )
            first = latest - timedelta(seconds=s * (MAX_CATCH_UP_STEPS - 1))
        out = []
        while first <= latest:
            out.append(first)
            first += timedelta(seconds=s)
        return out

    def run_due(self, now: datetime) -> None:
        for end in self.due(now):
            try:
                result = step(self.con, end, self.t, self.cache)
            except Exception as exc:  # a bad step must not end detection; the next one retries
                self.status.failures += 1
                log.error(
                    "detector step at %s failed: %s", end, str(exc).splitlines()[0] if str(exc) else exc
                )
                self._next = end + timedelta(seconds=self.t.step_s)
                continue
            self._next = end + timedelta(seconds=self.t.step_s)
            _log(result)
            self.status.opened.update(f["kind"] for f in result.opened)
            self.status.last_step_end = end
            self.status.last_step_seconds = result.seconds
            self.status.steps += 1
            self.status.open = open_findings(self.con)  # severities can rise without an open or close
            self.status.jobs = jobs_now(self.con, end)

    def run(self) -> None:
        while not self.stopping:
            self.run_due(datetime.now(UTC).replace(tzinfo=None))
            s = self.t.step_s
            self.sleep(s - (time.time() - self.delay_s) % s + 0.05)
