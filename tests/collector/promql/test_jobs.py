"""`ironsight_job_gpus` on the store: each node's last look at its GPUs' jobs, while its GPUs report."""

from __future__ import annotations

from pathlib import Path

from ironsight.collector.promql.engine import Engine
from ironsight.collector.promql.source import Source
from ironsight.collector.promql.values import Vector
from ironsight.collector.store import Store

T = 1793491200_000  # 2026-11-01 00:00:00 UTC


def test_gpus_held_follow_the_looks_and_end_when_the_node_goes_quiet(tmp_path: Path) -> None:
    s = Store(tmp_path / "s.duckdb")
    con = s.reader()
    con.execute("INSERT INTO nodes (node, hostname, first_seen, last_seen) VALUES "
                "('n1', 'n1', TIMESTAMP '2026-11-01', TIMESTAMP '2026-11-01')")  # fmt: skip
    # Looks: at 0:00 job A on GPUs 0 and 1, at 2:00 A on GPU 0 and B on GPU 1; GPUs report until 5:00.
    con.execute("INSERT INTO gpu_jobs (node, time, gpu, job, source) VALUES "
                "('n1', '2026-11-01 00:00:00', '0', 'A', 'slurm'), ('n1', '2026-11-01 00:00:00', '1', 'A', 'slurm'), "
                "('n1', '2026-11-01 00:02:00', '0', 'A', 'slurm'), ('n1', '2026-11-01 00:02:00', '1', 'B', 'slurm')")  # fmt: skip
    con.execute("INSERT INTO gpu_hot (node, device, time, util_gpu_percent) SELECT 'n1', '0', "
                "TIMESTAMP '2026-11-01' + to_seconds(i), 50 FROM range(300) t(i)")  # fmt: skip
    got = Engine(Source(s.reader())).run("ironsight_job_gpus", T, T + 1_200_000, 60_000)
    assert isinstance(got, Vector)
    by = {ls["ironsight_job"]: [float(x) if ok else None for x, ok in zip(v, k, strict=True)]
          for ls, v, k in zip(got.labels, got.v, got.ok, strict=True)}  # fmt: skip
    assert got.labels[0]["node"] == "n1" and got.labels[0]["job"] == "ironsight"
    # 0:00-1:00: A holds 2; from 2:00 A 1 and B 1; the last GPU sample at 4:59, so nothing from 15:00 on.
    assert by["A"][:3] == [2.0, 2.0, 1.0] and by["A"][14] == 1.0 and by["A"][15:] == [None] * 6
    assert by["B"][:2] == [None, None] and by["B"][2] == 1.0 and by["B"][15] is None
    s.close()
