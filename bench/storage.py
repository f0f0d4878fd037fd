"""Bytes a stored value: ironsight's DuckDB file, the same after its cold tier took every day, and
VictoriaMetrics holding the very same values, side by side.

The corpus is issue 17's: `ironsight simulate --scenario mixed --nodes 8 --gpus 8 --duration 2h --seed
31337`, replayed into a DuckDB file (`ironsight replay --db`). Its values are counted as stored (NULLs
are not values). ironsight's figure after the move is the cold tier's files plus the blocks the
database still uses (CHECKPOINT first), and every value is checked to read back the same (a hash of
each table's rows before and after). VictoriaMetrics 1.79 (Debian's) gets every stored value as its
own series (table, column, node, device), imported as JSON lines (/api/v1/import), then flushed and
force-merged; its figure is its data folder's size once that stops shrinking, and a sample of its
series is exported back to say whether it kept every value exactly.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from harness import BIN, free_port, wait_port

NAME = "storage"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage-duration", default="2h", help="simulated time of the corpus (issue 17: 2h)")
    p.add_argument("--storage-nodes", type=int, default=8, help="nodes of 8 GPUs (issue 17: 8)")


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _checksums(con: Any) -> dict[str, tuple[int, int]]:
    from ironsight.core.schema import TABLES

    out = {}
    for t in TABLES:
        # hash() of a row: the doubles' bits, so any change in any value shows.
        out[t] = con.execute(f"SELECT count(*), coalesce(bit_xor(hash(COLUMNS(*))), 0) FROM {t}").fetchall()[
            0
        ]
    return out


def _values(con: Any) -> int:
    from ironsight.core.schema import TABLES

    total = 0
    for name, t in TABLES.items():
        counts = ", ".join(f"count({f.name})" for f in t.fields)
        total += sum(con.execute(f"SELECT {counts} FROM {name}").fetchall()[0])
    return total


def _series(con: Any) -> Iterator[bytes]:
    """Every stored value as VictoriaMetrics JSON lines, a series per (table, column, node, device)."""
    from ironsight.core.schema import TABLES

    for name, t in TABLES.items():
        for node, device in con.execute(f"SELECT DISTINCT node, device FROM {name} ORDER BY ALL").fetchall():
            rows = con.execute(f"SELECT epoch_ms(time) AS ms, * EXCLUDE (node, device, time) FROM {name} "
                               "WHERE node = ? AND device = ? ORDER BY time", [node, device]).fetchnumpy()  # fmt: skip
            for f in t.fields:
                col = rows[f.name]
                keep = ~np.ma.getmaskarray(col)
                values, times = np.ma.getdata(col)[keep], rows["ms"][keep]
                if not len(values):
                    continue
                metric = {"__name__": f"{name}_{f.name}", "node": node, "device": device}
                yield json.dumps({"metric": metric, "values": [float(v) for v in values],
                                  "timestamps": [int(x) for x in times]}).encode() + b"\n"  # fmt: skip


def _post_chunks(url: str, lines: Iterator[bytes], per_request: int = 2000) -> None:
    batch: list[bytes] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= per_request:
            urllib.request.urlopen(urllib.request.Request(url, data=b"".join(batch)), timeout=600).read()
            batch = []
    if batch:
        urllib.request.urlopen(urllib.request.Request(url, data=b"".join(batch)), timeout=600).read()


def _victoria(con: Any, tmp: str) -> dict[str, object]:
    exe = shutil.which("victoria-metrics")
    if exe is None:
        raise SystemExit("storage needs Debian's victoria-metrics package")
    port, data = free_port(), Path(tmp, "vm")
    proc = subprocess.Popen([exe, f"-storageDataPath={data}", f"-httpListenAddr=127.0.0.1:{port}",
                             "-loggerLevel=ERROR", "-retentionPeriod=100y"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_port(port, proc)
        began = time.perf_counter()
        _post_chunks(f"{base}/api/v1/import", _series(con))
        imported_s = time.perf_counter() - began
        urllib.request.urlopen(f"{base}/internal/force_flush", timeout=600).read()
        urllib.request.urlopen(f"{base}/internal/force_merge", timeout=600).read()
        sizes = [_folder_bytes(data)]
        while True:  # merges run in the background: until the folder stops changing
            time.sleep(5)
            sizes.append(_folder_bytes(data))
            if sizes[-1] == sizes[-2]:
                break
        exact = _vm_exact(con, base)
    finally:
        proc.terminate()
        proc.wait()
    return {"bytes": sizes[-1], "import_seconds": round(imported_s, 1), "exact": exact}


def _vm_exact(con: Any, base: str) -> str:
    """Exports a few series back and compares each value with the stored one."""
    checked = differ = 0
    for name, column in (("cpu", "user_seconds"), ("gpu", "energy_joules"), ("gpu", "power_watts")):
        node, device = con.execute(f"SELECT node, device FROM {name} ORDER BY ALL LIMIT 1").fetchall()[0]
        stored = [v for (v,) in con.execute(f"SELECT {column} FROM {name} WHERE node = ? AND device = ? "
                                            f"AND {column} IS NOT NULL ORDER BY time", [node, device]).fetchall()]  # fmt: skip
        match = f'{{__name__="{name}_{column}",node="{node}",device="{device}"}}'
        url = f"{base}/api/v1/export?match[]={urllib.parse.quote(match)}"
        got = json.loads(urllib.request.urlopen(url, timeout=60).read().splitlines()[0])["values"]
        checked += len(stored)
        differ += sum(1 for a, b in zip(stored, got, strict=True) if a != b)
    return f"{checked - differ} of {checked} sampled values exact"


def run(args: argparse.Namespace) -> dict[str, object]:
    """Bytes a stored value: DuckDB, ironsight's cold tier, VictoriaMetrics, the same values."""
    import duckdb

    from ironsight.collector import cold
    from ironsight.collector.migrations import migrate

    with tempfile.TemporaryDirectory() as tmp:
        trace, db = Path(tmp, "corpus.trace"), Path(tmp, "c.duckdb")
        subprocess.run([str(BIN / "ironsight"), "simulate", "--scenario", "mixed", "--nodes", str(args.storage_nodes),
                        "--gpus", "8", "--duration", args.storage_duration, "--seed", "31337", "--out", str(trace)],
                       check=True, capture_output=True)  # fmt: skip
        subprocess.run(
            [str(BIN / "ironsight"), "replay", str(trace), "--db", str(db)], check=True, capture_output=True
        )
        con = duckdb.connect(str(db))
        migrate(con)
        con.execute("CHECKPOINT")
        values = _values(con)
        duck_file = db.stat().st_size
        before = _checksums(con)
        began = time.perf_counter()
        moved = cold.move_before(con, db, datetime(2100, 1, 1))
        move_s = time.perf_counter() - began
        con.execute("CHECKPOINT")
        used = con.execute("SELECT used_blocks * block_size FROM pragma_database_size()").fetchall()[0][0]
        files = _folder_bytes(cold.cold_dir(db))
        if _checksums(con) != before:
            raise SystemExit("storage: the cold tier did not read back every value")
        vm = _victoria(con, tmp)
        con.close()
    ours = files + used
    return {
        "values": values,
        "duckdb_file_bytes": duck_file,
        "duckdb_bytes_per_value": round(duck_file / values, 3),
        "cold_files_bytes": files,
        "cold_duckdb_used_bytes": used,
        "cold_bytes_per_value": round(ours / values, 3),
        "cold_move_seconds": round(move_s, 1),
        "cold_rows_moved": moved.rows,
        "victoria_metrics_bytes": vm["bytes"],
        "victoria_metrics_bytes_per_value": round(int(str(vm["bytes"])) / values, 3),
        "victoria_metrics_exact": vm["exact"],
        "ironsight_cold_vs_victoria_metrics": round(ours / int(str(vm["bytes"])), 2),
        "cold_files_vs_victoria_metrics": round(files / int(str(vm["bytes"])), 2),
        "ironsight_duckdb_vs_victoria_metrics": round(duck_file / int(str(vm["bytes"])), 2),
    }
