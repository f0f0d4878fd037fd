"""Which findings a node's sampling interval can support.

A node remote-written by a Prometheus that scrapes every 15 s has a sample
every 15 s: thermal and power-cap time, XIDs and hardware faults come from
counters and events and hold at any interval, but a 20 s mean utilization
(data starvation), rates compared step by step (network jitter) and an
iteration period (stragglers) need several samples a window. Such findings
are not judged on a node sampled more coarsely than they need (nodes.interval_s),
and `ironsight detect` and `events` say so for each such node rather than guess.
"""

from __future__ import annotations

from collections.abc import Iterable

NEEDS_S = {"data_starvation": 5.0, "network_jitter": 5.0, "straggler": 2.0}

COARSE_SQL = f"SELECT node, interval_s FROM nodes WHERE interval_s > {min(NEEDS_S.values())} ORDER BY node"


def judged_sql(kind: str = "r.kind", node: str = "r.node") -> str:
    """True where the node samples finely enough for the kind (or its interval is not known)."""
    cases = " ".join(f"WHEN '{k}' THEN {s}" for k, s in NEEDS_S.items())
    interval = f"coalesce((SELECT max(n.interval_s) FROM nodes n WHERE n.node = {node}), 0)"
    return f"{interval} <= CASE {kind} {cases} ELSE 'Infinity'::DOUBLE END"


def notes(coarse: Iterable[tuple[str, float]]) -> list[str]:
    """One line per coarsely sampled node: what is not judged there."""
    out = []
    for node, interval in coarse:
        kinds = [f"{k} (needs {s:g} s)" for k, s in NEEDS_S.items() if interval > s]
        out.append(
            f"{node} samples every {interval:g} s: {', '.join(kinds)} not judged there (docs/receive.md)"
        )
    return out
