"""Network jitter per RDMA port: loss on a lossless fabric, and congestion far above baseline and peers
(the ports of the nodes in the same job)."""

from __future__ import annotations

from datetime import datetime

from ironsight.collector.detect.sql import bucket_increments, node_jobs, rolling, ts
from ironsight.collector.detect.thresholds import Thresholds

LOSS = ("out_of_sequence", "packet_seq_err", "local_ack_timeout_err")
CONGESTION = ("np_cnp_sent", "rp_cnp_handled", "np_ecn_marked_roce_packets")


def flagged_sql(start: datetime, end: datetime, t: Thresholds) -> str:
    w, s = t.window_s, t.step_s
    since = f"{ts(start)} - INTERVAL {w + t.congestion_baseline_s} SECOND"
    cols = (*LOSS, *CONGESTION)
    rolls = ", ".join(f"{rolling(c, w, s)} AS {c}_w" for c in cols)
    loss = " + ".join(f"{c}_w" for c in LOSS)
    held = t.congestion_held_steps
    first_judged = f"{ts(start)} - INTERVAL {(held - 1) * s} SECOND"
    return f"""
    -- Increments per bucket, not per sample: the baseline looks back 10 minutes.
    WITH buckets AS {bucket_increments("rdma", cols, s, f"time > {since} AND time <= {ts(end)}", "count(*) AS n")},
    windows AS (
        SELECT node, device, bucket + INTERVAL {s} SECOND AS step_end, {rolling("n", w, s)} AS samples, {rolls}
        FROM buckets
    ),
    rates AS (
        -- Congestion is judged per step, not per window: overlapping windows would
        -- let one short burst count as held for as many windows as it spans.
        SELECT w.*, {loss} AS loss, ({" + ".join(f"b.{c}" for c in CONGESTION)}) / {s} AS congestion_per_s,
            {" + ".join(f"b.{c}" for c in LOSS)} > 0 AS loss_step
        FROM windows w JOIN buckets b ON w.node = b.node AND w.device = b.device
            AND b.bucket = w.step_end - INTERVAL {s} SECOND
    ),
    -- Peers are the ports of the nodes in the same job: another job's traffic congests on its own terms.
    peers AS (
        SELECT *, median(congestion_per_s) OVER (PARTITION BY step_end, job) AS peer_baseline
        FROM {node_jobs("rates", ts(end))}
    ),
    -- The port's own baseline leaves out the steps it stood far above its peers: a baseline that
    -- learned the fault would let a long congestion go after a few minutes while it still went on.
    -- Only for the steps judged (and those `held` looks back on): a windowed median over every
    -- step of the ten-minute lookback was a third of this detector's live cost.
    baselines AS (
        SELECT p.*, o.own_baseline FROM peers p LEFT JOIN (
            SELECT p.node, p.device, p.step_end, median(q.congestion_per_s) AS own_baseline
            FROM peers p JOIN peers q ON q.node = p.node AND q.device = p.device
                AND q.step_end >= p.step_end - INTERVAL {t.congestion_baseline_s} SECOND
                AND q.step_end <= p.step_end - INTERVAL {w} SECOND
            WHERE p.step_end > {first_judged}
                AND (q.congestion_per_s < {t.congestion_floor_per_s}
                     OR q.congestion_per_s < {t.congestion_factor} * q.peer_baseline)
            GROUP BY ALL
        ) o USING (node, device, step_end)
        WHERE p.step_end > {first_judged}
    ),
    judged AS (
        SELECT *,
            congestion_per_s >= {t.congestion_floor_per_s}
                AND congestion_per_s >= {t.congestion_factor} * coalesce(own_baseline, 0)
                AND congestion_per_s >= {t.congestion_factor} * peer_baseline AS congested
        FROM baselines WHERE samples >= {t.min_samples}
    ),
    held AS (
        SELECT *, sum(congested::INT) OVER (PARTITION BY node, device ORDER BY step_end
            ROWS BETWEEN {held - 1} PRECEDING AND CURRENT ROW) = {held} AS held_congested
        FROM judged
    )
    SELECT node, device, step_end, 'network_jitter' AS kind,
        CASE WHEN loss > 0 THEN 'critical' ELSE 'warning' END AS severity,
        CASE WHEN loss > 0 THEN 'loss' ELSE 'congestion' END AS cause,
        1000 * loss + congestion_per_s AS score, loss_step OR congested AS active, NULL::TIMESTAMP AS onset,
        json_object('loss_in_window', loss, 'out_of_sequence', out_of_sequence_w, 'packet_seq_err', packet_seq_err_w,
            'local_ack_timeout_err', local_ack_timeout_err_w, 'congestion_per_s', congestion_per_s,
            'own_baseline_per_s', own_baseline, 'peer_baseline_per_s', peer_baseline,
            'np_cnp_sent', np_cnp_sent_w, 'np_ecn_marked_roce_packets', np_ecn_marked_roce_packets_w) AS evidence
    FROM held WHERE step_end > {ts(start)} AND (loss > 0 OR held_congested)
    """
