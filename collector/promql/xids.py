"""The XID series (dcgm-exporter's last XID, ironsight's XID count) from the head's GPU rows.

Remote write renders both at every GPU row: the last XID at or before the row's
microsecond and how many came so far (remote_write/encode.py, _xid_columns).
Here the same, for every series at once: the rows' times come from the head,
the XIDs before the span (as a last one and a count) and in it from the store's
small gpu_xid table, and one binary search per GPU places each row among them.
"""

from __future__ import annotations

import numpy as np

from ironsight.collector.promql.head import Held
from ironsight.collector.remote_write.encode import Encoder, table_rules
from ironsight.core.series_rules import XID_COUNT, XID_LAST

Key = tuple[str, str]  # (node, gpu)


def xid_samples(
    held: Held,
    enc: Encoder,
    names: set[str],
    asked: set[str],
    found: dict[Key, tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(label id, ms, value) of the asked XID series at each held row (held: the gpu table's ROWS, their
    values the rows' microseconds); enc.xids holds each GPU's last XID and count before the span."""
    rules = table_rules("gpu")
    wanted = [(k, r.name) for k, r in enumerate(rules) if r.name in names and r.name in (XID_LAST, XID_COUNT)]
    ids, ts, vs = [], [], []
    for i, (node, device) in enumerate(held.keys):
        a, b = int(held.starts[i]), int(held.starts[i + 1])
        if node not in asked or a == b:
            continue
        last, count = enc.xids.get((node, device), (0, 0))
        if (node, device) in found:
            times, xids = found[(node, device)]
            seen = np.searchsorted(times, held.v[a:b].astype(np.int64), side="right")
            lasts = np.where(seen > 0, xids[np.maximum(seen - 1, 0)], last).astype(np.float64)
            counts = (seen + count).astype(np.float64)
        else:
            lasts, counts = np.full(b - a, float(last)), np.full(b - a, float(count))
        base = enc.series_id("gpu", node, device)
        for k, name in wanted:
            ids.append(np.full(b - a, base + k, np.int64))
            ts.append(held.t[a:b])
            vs.append(lasts if name == XID_LAST else counts)
    if not ids:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(ids), np.concatenate(ts), np.concatenate(vs)
