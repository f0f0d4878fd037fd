"""Two answers to one PromQL query, compared: a real Prometheus holding the same series (fed by our
remote-write encoder) and a real collector's /api/v1 on the store."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import cramjam
import duckdb

from ironsight.collector.promql.source import Source
from ironsight.collector.remote_write.encode import Encoder
from ironsight.core.schema import TABLES

from support.processes import BIN, free_port, wait_port
from support.prom import Prometheus


def feed(con: duckdb.DuckDBPyConnection, prom: Prometheus) -> int:
    """Every stored sample, as the collector forwards it, into Prometheus; how many."""
    encoder = Encoder()
    Source(con).inform(encoder, [r[0] for r in con.execute("SELECT node FROM nodes").fetchall()])
    tables = [(n, con.sql(f"SELECT * FROM {n} ORDER BY time").to_arrow_table()) for n in TABLES]
    sent = 0
    for body, n in encoder.encode(tables, 5000):
        request = urllib.request.Request(
            f"{prom.url}/api/v1/write",
            data=bytes(cramjam.snappy.compress_raw(body)),
            headers={"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
                     "X-Prometheus-Remote-Write-Version": "0.1.0"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as r:
            assert r.status == 204, r.status
        sent += n
    return sent


class Collector:
    """A real collector on a copy of the store, serving the API on a loopback port."""

    def __init__(self, db: Path, tmp: Path, *extra: str) -> None:
        copy = tmp / "collector.duckdb"
        shutil.copy(db, copy)
        self.port = free_port()
        self.log = open(tmp / "collector.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(BIN / "ironsight-collector"), "--db", str(copy), "--listen", f"127.0.0.1:{free_port()}",
             "--http-listen", f"127.0.0.1:{self.port}", "--no-detect", "--retention-raw", "36500d", "--retention-rollups", "36500d", "--insecure", *extra],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_port(self.port, self.proc, timeout=30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


def get(url: str, path: str, **params: Any) -> tuple[int, dict[str, Any]]:
    query = urllib.parse.urlencode(params, doseq=True)
    try:
        with urllib.request.urlopen(f"{url}{path}?{query}", timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _close(a: str, b: str) -> bool:
    x, y = float(a), float(b)
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    # 1e-9 relative; or both zero up to rounding, where each engine's summation order leaves its own
    # noise (a regression's slope of 2e-16 against 4e-16 over values that do not change).
    return x == y or abs(x - y) <= 1e-9 * max(abs(x), abs(y)) or abs(x - y) < 1e-12


def differences(theirs: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    """What differs between two query results (data of a successful answer); empty if they agree."""
    if theirs["resultType"] != ours["resultType"]:
        return [f"resultType {theirs['resultType']} != {ours['resultType']}"]
    kind = theirs["resultType"]
    if kind in ("scalar", "string"):
        a, b = theirs["result"], ours["result"]
        same = a[0] == b[0] and (a[1] == b[1] if kind == "string" else _close(a[1], b[1]))
        return [] if same else [f"{a} != {b}"]
    field = "value" if kind == "vector" else "values"
    mine = {json.dumps(r["metric"], sort_keys=True): r for r in ours["result"]}
    out = []
    for r in theirs["result"]:
        name = json.dumps(r["metric"], sort_keys=True)
        got = mine.pop(name, None)
        if got is None:
            out.append(f"missing {name}")
            continue
        a = [r[field]] if kind == "vector" else r[field]
        b = [got[field]] if kind == "vector" else got[field]
        if [p[0] for p in a] != [p[0] for p in b]:
            out.append(f"{name}: times differ ({len(a)} and {len(b)} points)")
        else:
            out += [
                f"{name} at {p[0]}: {p[1]} != {q[1]}"
                for p, q in zip(a, b, strict=True)
                if not _close(p[1], q[1])
            ][:3]
    out += [f"extra {name}" for name in mine]
    return out
