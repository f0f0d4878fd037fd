"""What the agent's /metrics says, received back by remote write, lands as the agent's own rows.

The encoder renders stored rows exactly as the agent's /metrics does (tests/collector/remote_write
proves that), so a Prometheus scraping agents and remote-writing to a receiving collector sends what
it encodes. Decoded and settled, every column that has a series must come back with the value the
agent sent, on the row (node, device, time) it sent it on.
"""

from __future__ import annotations

from pathlib import Path

import cramjam
import numpy as np
import pyarrow as pa

from ironsight.collector.receive.decode import Decoder
from ironsight.collector.receive.mapping import TARGETS
from ironsight.collector.receive.staging import Staging, journal_of
from ironsight.collector.remote_write.encode import Encoder
from ironsight.collector.store import Store
from ironsight.core.columnar import to_arrow
from ironsight.core.schema import TABLES
from ironsight.offline.simulate import simulate

T0 = 1_764_000_000 * 10**9
FAR = np.datetime64("2100-01-01")


def _mapped_columns() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for targets in TARGETS.values():
        for t in targets:
            if not t.column.startswith("_"):
                out.setdefault(t.table, set()).add(t.column)
    return out


def test_every_mapped_column_comes_back_on_its_row(tmp_path: Path) -> None:
    header, stream = simulate("mixed", nodes=2, gpus=2, duration_s=40, seed=11, start_ns=T0, batch_s=1.0)
    batches = list(stream)
    direct = Store(tmp_path / "direct.duckdb")
    direct.ingest(batches)
    enc = Encoder()
    for info in header.nodes:
        enc.learn(info.node_id, info)
    tables = [(t.name, to_arrow(b.node_id, t)) for b in batches for t in b.tables]
    received = Store(tmp_path / "received.duckdb")
    staging = Staging(received.reader, journal_of(received.path), settle_s=10)
    # instance is the node id, as docs/fleet.md scrapes agents
    decoder = Decoder(strip_port=False, parts=staging.parts(), register=staging.register)
    parts = []
    for body, count in enc.encode(tables, 2000):  # Prometheus's max_samples_per_send
        got = decoder.decode(bytes(cramjam.snappy.compress_raw(body)), lambda node: True)
        assert not got.refused and got.samples == count
        staging.store(got, "test")
        parts.append(got.rows)
    assert staging.settle(FAR.astype("datetime64[us]").item()) > 0
    assert staging.backlog == 0

    checked = 0
    for table, columns in _mapped_columns().items():
        if table not in TABLES or not columns:
            continue
        cols = sorted(columns)
        nonnull = " OR ".join(f'"{c}" IS NOT NULL' for c in cols)
        q = (
            f"SELECT node, device, time, {', '.join(chr(34) + c + chr(34) for c in cols)} FROM {table} "
            f"WHERE {nonnull} ORDER BY node, device, time"
        )
        want = direct.con.sql(q).to_arrow_table()
        have = received.con.sql(q).to_arrow_table()
        assert have.num_rows == want.num_rows, table
        for key in ("node", "device", "time"):
            assert have.column(key).equals(want.column(key)), (table, key)
        for c in cols:
            w = np.asarray(pa.compute.cast(want.column(c), pa.float64()).to_numpy(zero_copy_only=False))
            h = np.asarray(have.column(c).to_numpy(zero_copy_only=False), dtype=np.float64)
            assert np.array_equal(np.isnan(w), np.isnan(h)), (table, c)
            ok = ~np.isnan(w)
            np.testing.assert_allclose(h[ok], w[ok], rtol=1e-12, err_msg=f"{table}.{c}")
            checked += int(ok.sum())
    # Each (row, column) once, though DCGM_FI_DEV_GPU_UTIL and ironsight_gpu_util_gpu_percent both carry it.
    column_of = {i: where[3] for where, i in decoder.parts.items()}
    sent = pa.concat_tables(parts)
    sent = sent.filter(pa.array([not column_of[i].startswith("_") for i in sent.column("part").to_pylist()]))
    assert checked == sent.group_by(["part", "time"]).aggregate([]).num_rows > 10_000
    # The inventory came with the series' labels.
    devices = received.con.sql(
        "SELECT node, device, attrs['uuid'] FROM devices WHERE kind = 'gpu' ORDER BY 1, 2"
    )
    assert [r[2] for r in devices.fetchall()] == [
        d.attrs["uuid"]
        for n in sorted(header.nodes, key=lambda n: n.node_id)
        for d in n.devices
        if d.kind == "gpu"
    ]
    xids_direct = direct.con.sql("SELECT node, device, time, xid FROM gpu_xid ORDER BY ALL").fetchall()
    xids_received = received.con.sql("SELECT node, device, time, xid FROM gpu_xid ORDER BY ALL").fetchall()
    assert [(n, d, x) for n, d, _, x in xids_received] == [(n, d, x) for n, d, _, x in xids_direct]
    staging.close()
    direct.close()
    received.close()
