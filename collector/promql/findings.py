"""The detector's findings as the series the collector's /metrics shows while they are open.

`ironsight_bottleneck_active`, `_since_timestamp_seconds` and `_evidence`,
labelled as in collector/metrics.py, from the events table: a sample at a
finding's start and every STEP_MS after while it is open, and a staleness
marker where it closed (as a scraping Prometheus records when the series
leaves /metrics), so a dashboard over the store needs no Prometheus for them.
A finding shows from when the detector dates its start, not from when it was
detected a few seconds later; its evidence is its peak step's.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from ironsight.collector.detect.live import peak_figures
from ironsight.collector.promql.values import Matcher, Raw, matches

ACTIVE = "ironsight_bottleneck_active"
SINCE = "ironsight_bottleneck_since_timestamp_seconds"
EVIDENCE = "ironsight_bottleneck_evidence"
NAMES = {ACTIVE: "gauge", SINCE: "gauge", EVIDENCE: "gauge"}
STEP_MS = 10_000  # the detector's default step
JOB = "ironsight_job"
STALE = float("nan")  # a staleness marker; stored values are never NaN

_SQL = """
SELECT kind, node, device, severity, coalesce(cause, ''), coalesce(job, ''), epoch_ms(start_time),
       epoch_ms(end_time), evidence::VARCHAR
FROM events WHERE start_time <= make_timestamp(? * 1000) AND (end_time IS NULL OR end_time >= make_timestamp(? * 1000))
"""


def _series(row: tuple[Any, ...], extra: dict[str, str]) -> list[tuple[dict[str, str], float]]:
    kind, node, device, severity, cause, job, start, _, evidence = row
    common = {**extra, "kind": kind, "node": node, "device": device, JOB: job}
    out = [({**common, "__name__": ACTIVE, "severity": severity}, 1.0),
           ({**common, "__name__": SINCE, "cause": cause}, start / 1000)]  # fmt: skip
    out += [({**common, "__name__": EVIDENCE, "figure": k}, v) for k, v in peak_figures(evidence).items()]
    return [({k: v for k, v in labels.items() if v}, value) for labels, value in out]


def findings(con: Any, matchers: Sequence[Matcher], mint_ms: int, maxt_ms: int, extra: dict[str, str]) -> Raw:
    names = [n for n in NAMES if matches({"__name__": n}, [m for m in matchers if m.name == "__name__"])]
    if not names or mint_ms > maxt_ms:
        return Raw.empty()
    now = int(time.time() * 1000)
    parts: dict[tuple[tuple[str, str], ...], list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    labels_of: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
    for row in con.execute(_SQL, [maxt_ms, mint_ms]).fetchall():
        start, end = int(row[6]), row[7]
        last = min(maxt_ms, now if end is None else int(end) - 1)
        t = np.arange(start, last + 1, STEP_MS, dtype=np.int64)
        t = t[t >= mint_ms - STEP_MS]  # one before the range: an instant at mint still sees it
        stale = end is not None and mint_ms <= int(end) <= maxt_ms
        for labels, value in _series(row, extra):
            if labels["__name__"] not in names or not matches(labels, matchers):
                continue
            key = tuple(sorted(labels.items()))
            labels_of[key] = labels
            v = np.full(len(t), value)
            if stale:
                t_, v = np.r_[t, int(end)], np.r_[v, STALE]
                parts[key].append((t_, v))
            else:
                parts[key].append((t, v))
    return _raw(parts, labels_of)


def _raw(
    parts: dict[tuple[tuple[str, str], ...], list[tuple[np.ndarray, np.ndarray]]],
    labels_of: dict[tuple[tuple[str, str], ...], dict[str, str]],
) -> Raw:
    labels, ts, vs = [], [], []
    for key in sorted(parts):
        t = np.concatenate([p[0] for p in parts[key]])
        v = np.concatenate([p[1] for p in parts[key]])
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[order]
        keep = np.r_[True, t[1:] != t[:-1]]
        if keep.any():
            labels.append(labels_of[key])
            ts.append(t[keep])
            vs.append(v[keep])
    return Raw.of(labels, ts, vs, stale=True)
