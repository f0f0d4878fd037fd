"""Scores the detector on labelled traces: range-based precision and recall, and detection latency.

Precision and recall follow Tatbul et al., "Precision and Recall for Time
Series" (NeurIPS 2018), with flat positional bias, cardinality factor 1/x
and no existence reward (alpha = 0), never point-adjusted F1. A label and a
finding are compared only when kind, node and device agree. Latency is from a
label's start to the end of the first step whose rule held: where the
live detector opens the finding.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from ironsight.collector.detect.findings import DEFAULTS, detect
from ironsight.collector.detect.sql import jobs_at
from ironsight.collector.detect.thresholds import Thresholds
from ironsight.core.trace import read_header
from ironsight.offline.replay import to_db

Range = tuple[float, float]  # seconds since the epoch, [start, end)


def _overlap(a: Range, b: Range) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def _score(one: Range, others: list[Range]) -> float:
    """Flat-bias overlap of one range with a set, times the cardinality factor 1/x."""
    hits = [o for o in others if _overlap(one, o) > 0]
    if not hits:
        return 0.0
    covered = sum(_overlap(one, o) for o in hits) / (one[1] - one[0])
    return min(1.0, covered) / len(hits)


@dataclass
class KindScore:
    labels: int = 0
    findings: int = 0
    recall_sum: float = 0.0
    precision_sum: float = 0.0
    latencies_s: list[float] = field(default_factory=list)

    @property
    def recall(self) -> float | None:
        return self.recall_sum / self.labels if self.labels else None

    @property
    def precision(self) -> float | None:
        return self.precision_sum / self.findings if self.findings else None


def _utc(value: datetime) -> float:
    return value.replace(tzinfo=UTC).timestamp()


# A label's job: its node's last look at or before its start (on its GPU, or any of the node's).
LABEL_JOB_SQL = f"SELECT coalesce({jobs_at('$node', '$device', '$at', '$at')}, '')"


def evaluate(traces: list[Path], t: Thresholds = DEFAULTS, by_job: bool = False) -> dict[str, KindScore]:
    """Scores per kind; by_job: per job and kind ("JOB KIND", the job '' where none is known):
    a label counts in the job its node's GPUs were in when it started, a finding in the job it names."""
    scores: dict[str, KindScore] = defaultdict(KindScore)
    for trace in traces:
        header, _ = read_header(trace)
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "eval.duckdb"
            to_db([trace], db)
            con = duckdb.connect(str(db))
            try:
                bounds = con.execute("SELECT min(time), max(time) FROM gpu").fetchall()[0]
                if bounds[0] is None:
                    continue
                found = detect(con, bounds[0] - timedelta(seconds=1), bounds[1], t).to_pylist()
                label_jobs = [_label_job(con, lb) if by_job else "" for lb in header.labels]
            finally:
                con.close()
        labels: dict[tuple[str, str, str], list[Range]] = defaultdict(list)
        groups: dict[tuple[tuple[str, str, str], Range], str] = {}
        for lb, job in zip(header.labels, label_jobs, strict=True):
            r = (lb.start_ns / 1e9, lb.end_ns / 1e9)
            labels[(lb.kind, lb.node, lb.device)].append(r)
            groups[((lb.kind, lb.node, lb.device), r)] = f"{job} {lb.kind}" if by_job else lb.kind
        preds: dict[tuple[str, str, str], list[tuple[Range, float]]] = defaultdict(list)
        named: dict[tuple[str, str, str, float], str] = {}
        for f in found:
            evidence = json.loads(f["evidence"])
            # An open finding has lasted, so far, until its last active step.
            end = _utc(f["end_time"] or datetime.fromisoformat(evidence["last_active_end"]))
            # The alert is the first step whose rule held (the finding opens there live).
            first_alert = _utc(
                datetime.fromisoformat(evidence.get("first_active_end") or evidence["first_window_end"])
            )
            preds[(f["kind"], f["node"], f["device"])].append(((_utc(f["start_time"]), end), first_alert))
            named[(f["kind"], f["node"], f["device"], _utc(f["start_time"]))] = f.get("job") or ""
        for key, real in labels.items():
            predicted = [p for p, _ in preds.get(key, [])]
            for r in real:
                s = scores[groups[(key, r)]]
                s.labels += 1
                s.recall_sum += _score(r, predicted)
                alerts = [a for p, a in preds.get(key, []) if _overlap(r, p) > 0]
                if alerts:
                    s.latencies_s.append(max(0.0, min(alerts) - r[0]))
        for key, predicted_alerts in preds.items():
            real = labels.get(key, [])
            for p, _ in predicted_alerts:
                s = scores[f"{named[(*key, p[0])]} {key[0]}" if by_job else key[0]]
                s.findings += 1
                s.precision_sum += _score(p, real)
    return dict(scores)


def _label_job(con: duckdb.DuckDBPyConnection, lb: Any) -> str:
    at = datetime.fromtimestamp(lb.start_ns / 1e9, UTC).replace(tzinfo=None)
    row = con.execute(LABEL_JOB_SQL, {"node": lb.node, "device": lb.device, "at": at}).fetchall()
    return str(row[0][0]) if row else ""


def table(scores: dict[str, KindScore], step_s: int, by_job: bool = False) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for key in sorted(scores):
        s = scores[key]
        latency = statistics.median(s.latencies_s) if s.latencies_s else None
        job, _, kind = key.rpartition(" ")
        rows.append(
            {
                **({"job": job} if by_job else {}),
                "kind": kind,
                "labels": s.labels,
                "findings": s.findings,
                "precision": None if s.precision is None else round(s.precision, 3),
                "recall": None if s.recall is None else round(s.recall, 3),
                "median_latency_s": latency,
                "median_latency_steps": None if latency is None else round(latency / step_s, 2),
            }
        )
    return rows
