"""Flagged steps -> findings: contiguous steps merge into one incident, which closes once clear for a while.

All in SQL (gaps and islands), over every node and device at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pyarrow as pa

from ironsight.collector.detect import gpu, network, starvation, straggler
from ironsight.collector.detect.activity import Cache
from ironsight.collector.detect.resolution import judged_sql
from ironsight.collector.detect.sql import jobs_at, ts
from ironsight.collector.detect.thresholds import Thresholds

KINDS = ("thermal", "power_cap", "xid", "hardware_fault", "data_starvation", "network_jitter", "straggler")
STRAGGLERS = "straggler_flagged"  # the straggler detector's rows (numpy), registered beside the SQL ones


RECENT = "recent_flags"  # the live detector's earlier steps' flags (node, kind, step_end), for the lookback


def explained_s(t: Thresholds) -> int:
    """How far back another finding explains a straggler (its window and a hold)."""
    return t.straggler_window_s + 120


def flagged_sql(start: datetime, end: datetime, t: Thresholds, recent: bool = False) -> str:
    """Every detector's flagged steps in (start, end]; needs STRAGGLERS registered (register_stragglers()).

    recent: also consult RECENT (earlier steps' flags) for what explains a straggler, as a range
    judged at once sees its own earlier steps.
    """
    union = " UNION ALL ".join(
        f"({sql})"
        for sql in (
            gpu.flagged_sql(start, end, t),
            starvation.flagged_sql(start, end, t),
            network.flagged_sql(start, end, t),
            "SELECT node, device, step_end, kind, severity, cause, score, active, onset, evidence::JSON "
            f"FROM {STRAGGLERS}",
        )
    )
    # A node slowed by its own network, power cap, heat or input is that, not a straggler. In
    # lock-step with too few peers for a z-score, a peer slowed so (everyone waits for it) is
    # the baseline itself: the comparison says nothing then.
    return f"""
    WITH raw AS MATERIALIZED ({union}),
    others AS (
        SELECT node, step_end FROM raw WHERE kind <> 'straggler'
        {f"UNION ALL SELECT node, step_end FROM {RECENT}" if recent else ""}
    )
    SELECT * FROM raw r
    WHERE {judged_sql()} AND (r.kind <> 'straggler' OR NOT EXISTS (
        SELECT 1 FROM others n
        WHERE (n.node = r.node OR (r.evidence->>'method' = 'lockstep_busy_time'
                                     AND r.evidence->>'robust_z' IS NULL))
            AND n.step_end BETWEEN r.step_end - INTERVAL {explained_s(t)} SECOND AND r.step_end))
    """


def register_stragglers(
    con: Any, start: datetime, end: datetime, t: Thresholds, cache: Cache | None = None
) -> None:
    con.register(STRAGGLERS, straggler.flagged(con, start, end, t, cache))


def severity_rank(col: str = "severity") -> str:
    return f"CASE {col} WHEN 'critical' THEN 3 WHEN 'warning' THEN 2 ELSE 1 END"


POINT_KINDS = ("xid", "hardware_fault")  # events at a moment: never bridged into one another


def merge_gap(t: Thresholds, kind: str = "kind") -> str:
    """How far apart two flagged steps of one key may be and still be one incident, in seconds.

    A condition (starvation, a cap, a bad port, a straggler) bridges gaps of up
    to bridge_s: a checkpoint save or an evaluation pass inside a long fault,
    or loss that comes in bursts, is one incident with one start and one end.
    """
    points = ", ".join(f"'{k}'" for k in POINT_KINDS)
    return (
        f"(CASE WHEN {kind} IN ({points}) THEN {t.close_after_s + t.step_s} "
        f"ELSE {max(t.bridge_s, t.close_after_s) + t.step_s} END)"
    )


def findings_sql(start: datetime, end: datetime, data_end: datetime, t: Thresholds) -> str:
    """Findings over the range, each with the job it hit."""
    return f"""
    SELECT f.*, {jobs_at("f.node", "f.device", "f.start_time", ts(end))} AS job
    FROM ({_incidents_sql(start, end, data_end, t)}) f
    ORDER BY f.start_time, f.node, f.device, f.kind"""


def _incidents_sql(start: datetime, end: datetime, data_end: datetime, t: Thresholds) -> str:
    return f"""
    WITH flagged AS ({flagged_sql(start, end, t)}),
    keyed AS (
        -- Different hardware faults on one GPU are different incidents; a starving GPU
        -- whose cause shifts (storage, then CPU) is one.
        SELECT *, CASE WHEN kind = 'hardware_fault' THEN cause ELSE '' END AS part FROM flagged
    ),
    marked AS (
        SELECT *, {severity_rank()} AS rank,
            CASE WHEN step_end - lag(step_end) OVER p <= to_seconds({merge_gap(t)}) THEN 0 ELSE 1 END AS new_island
        FROM keyed
        WINDOW p AS (PARTITION BY node, device, kind, part ORDER BY step_end)
    ),
    islands AS (
        SELECT *, sum(new_island) OVER (PARTITION BY node, device, kind, part ORDER BY step_end) AS island
        FROM marked
    ),
    -- An incident opens at its first step whose rule held, as the live detector opens it:
    -- flagged steps before that (a verdict waiting for its second step) are not part of it.
    opened AS (
        SELECT * FROM (
            SELECT *, min(step_end) FILTER (active OR onset IS NOT NULL)
                OVER (PARTITION BY node, device, kind, part, island) AS opened_at
            FROM islands)
        WHERE step_end >= opened_at
    )
    SELECT kind,
        CASE max(rank) WHEN 3 THEN 'critical' WHEN 2 THEN 'warning' ELSE 'pre-warning' END AS severity,
        node, device,
        -- The incident spans the steps where its rule held on their own; the
        -- trailing windows that still saw it only keep it open.
        -- Point events (XIDs) carry their own time.
        coalesce(min(onset), coalesce(min(step_end) FILTER (active), min(step_end)) - INTERVAL {t.step_s} SECOND)
            AS start_time,
        CASE WHEN min(onset) IS NOT NULL THEN max(onset) + INTERVAL {t.step_s} SECOND
             WHEN max(step_end) + INTERVAL {t.close_after_s} SECOND > {ts(data_end)} THEN NULL
             ELSE coalesce(max(step_end) FILTER (active), max(step_end)) END AS end_time,
        arg_max(cause, score) AS cause,  -- the cause at the peak, as the live detector keeps it
        json_object(
            'window_s', {t.window_s}, 'steps', count(*),
            'first_window_end', min(step_end), 'last_window_end', max(step_end),
            'first_active_end', coalesce(min(onset) + INTERVAL {t.step_s} SECOND, min(step_end) FILTER (active)),
            'last_active_end', coalesce(max(onset) + INTERVAL {t.step_s} SECOND,
                                        max(step_end) FILTER (active), max(step_end)),
            'peak_window_end', arg_max(step_end, score), 'peak', arg_max(evidence, score),
            'peak_score', max(score)
        ) AS evidence
    FROM opened
    GROUP BY kind, node, device, part, island
    -- An incident needs a step where its rule held on its own.
    HAVING bool_or(active) OR min(onset) IS NOT NULL
    """


DEFAULTS = Thresholds()


def detect(con: Any, start: datetime, end: datetime, t: Thresholds = DEFAULTS) -> pa.Table:
    """Findings over [start, end] as Arrow: kind, severity, node, device, start_time, end_time, cause, evidence."""
    row = con.execute(f"SELECT max(time) FROM gpu WHERE time <= {ts(end)}").fetchall()
    data_end = min(end, row[0][0]) if row and row[0][0] is not None else end
    register_stragglers(con, start, end, t)
    try:
        return con.sql(findings_sql(start, end, data_end, t)).to_arrow_table()
    finally:
        con.unregister(STRAGGLERS)


def store(con: Any, findings: pa.Table, start: datetime, end: datetime) -> int:
    """Replaces the findings of these kinds that started in [start, end] with these; returns how many."""
    kinds = ", ".join(f"'{k}'" for k in KINDS)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            f"DELETE FROM events WHERE kind IN ({kinds}) AND start_time >= {ts(start)} AND start_time <= {ts(end)}"
        )
        con.register("found", findings)
        try:
            con.execute(
                """INSERT INTO events (kind, severity, node, device, start_time, end_time, cause, evidence, detected_at,
                       job)
                   SELECT kind, severity, node, device, start_time, end_time, cause, evidence, now()::TIMESTAMP, job
                   FROM found"""
            )
        finally:
            con.unregister("found")
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return int(findings.num_rows)
