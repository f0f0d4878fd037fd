"""The Prometheus HTTP API (/api/v1/...) over the store, as a WSGI app beside /metrics.

What Grafana's Prometheus data source calls, on connect, health check, query
editor and variables, is here (docs/promql.md lists it); answers are in
Prometheus's JSON, errors with its errorType and HTTP status. Each request
reads through a cursor of its own, which a timer interrupts at the timeout.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

import duckdb

from ironsight.collector.promql.engine import Engine, matchers_of, parse
from ironsight.collector.promql.head import Head
from ironsight.collector.promql.render import render_json
from ironsight.collector.promql.source import KINDS, Inventory, Source, merge_labels
from ironsight.collector.promql.values import QueryError
from ironsight.collector.promql.watchdog import Watchdog
from ironsight.core.http import encoded

log = logging.getLogger(__name__)

STATUS = {"bad_data": 400, "execution": 422, "timeout": 503, "canceled": 503, "internal": 500,
          "not_found": 404, "unavailable": 503}  # fmt: skip
MAX_POINTS = 11_000  # per series in a range query, as Prometheus
DEFAULT_TIMEOUT_S = 120.0
INVENTORY_S = 5.0
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000,
            "y": 31_536_000_000}  # fmt: skip
MIN_MS, MAX_MS = 0, 253_402_300_799_000  # no start or end given: 1970 to the year 9999
Start = Callable[..., Any]
Params = dict[str, list[str]]


def parse_time(text: str, name: str) -> int:
    """Milliseconds from a Unix time in seconds or an RFC 3339 time."""
    try:
        return round(float(text) * 1000)
    except ValueError:
        pass
    try:
        return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        raise QueryError(
            "bad_data", f'invalid parameter "{name}": cannot parse "{text}" to a valid timestamp'
        ) from None


def parse_duration(text: str, name: str) -> int:
    """Milliseconds from seconds (float) or a Prometheus duration (1m30s)."""
    try:
        return round(float(text) * 1000)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise QueryError("bad_data", f'invalid parameter "{name}": cannot parse "{text}" to a valid duration')
    return round(sum(float(n) * _UNIT_MS[u] for n, u in parts))


class Api:
    """connect() gives a fresh DuckDB cursor on the store for each request."""

    def __init__(
        self,
        connect: Callable[[], Any],
        job: str = "ironsight",
        labels: dict[str, str] | None = None,
        version: str = "",
        head: Head | None = None,
    ) -> None:
        """job and labels: what remote write adds to every series (job "ironsight", --remote-write-label).
        head: recent samples kept in memory for the queries (told of every write through Changes)."""
        self.connect = connect
        self.head = head
        self.job = job
        self.labels = labels or {}
        self.version = version
        self._inventory: tuple[float, Inventory] | None = None
        self._lock = threading.Lock()
        self._watchdog = Watchdog()

    def inventory(self, con: Any) -> Inventory:
        """Nodes and devices, read again when older than INVENTORY_S: a dashboard's dozens of queries
        share one read, and a new node shows within seconds."""
        with self._lock:
            if self._inventory is None or time.monotonic() - self._inventory[0] > INVENTORY_S:
                self._inventory = (time.monotonic(), Inventory.load(con))
            return self._inventory[1]

    def __call__(self, environ: dict[str, Any], start_response: Start) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        try:
            params = _params(environ)
            got = self.route(path, params)
            # A query's answer comes as JSON text already (render_json): it is spliced in, not dumped again.
            text = got.text if isinstance(got, Rendered) else json.dumps(got, separators=(",", ":"))
            status, data = 200, f'{{"status":"success","data":{text}}}'.encode()
        except QueryError as exc:
            status, data = STATUS.get(exc.kind, 400), _error(exc.kind, str(exc))
        except Exception as exc:  # a bug must not take the server down: say so, in Prometheus's form
            log.exception("%s failed", path)
            status, data = 500, _error("internal", str(exc))
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 422: "Unprocessable Entity",
                  500: "Internal Server Error", 503: "Service Unavailable"}[status]  # fmt: skip
        data, encoding = encoded(environ, data)
        start_response(f"{status} {reason}", [("Content-Type", "application/json"),
                                              ("Content-Length", str(len(data))), *encoding])  # fmt: skip
        return [data]

    def route(self, path: str, p: Params) -> Any:
        if path in ("/api/v1/query", "/api/v1/query_range"):
            return self._query(p, ranged=path.endswith("_range"))
        if path == "/api/v1/series":
            if not p.get("match[]"):
                raise QueryError("bad_data", "no match[] parameter provided")
            return self._with_source(lambda s: self._series(s, p))
        if path == "/api/v1/labels":
            return self._with_source(lambda s: sorted({k for ls in self._series(s, p) for k in ls}))
        if path.startswith("/api/v1/label/") and path.endswith("/values"):
            name = path[len("/api/v1/label/") : -len("/values")]
            return self._with_source(lambda s: self._values(s, name, p))
        if path == "/api/v1/metadata":
            return _metadata(p)
        if path == "/api/v1/status/buildinfo":
            # The Prometheus API level answered; Grafana reads features from this version.
            return {"version": "2.42.0", "revision": f"ironsight {self.version}", "branch": "",
                    "buildUser": "ironsight", "buildDate": "", "goVersion": ""}  # fmt: skip
        if path == "/api/v1/query_exemplars":
            return []
        if path == "/api/v1/rules":
            return {"groups": []}
        if path == "/api/v1/alerts":
            return {"alerts": []}
        if path == "/api/v1/status/flags":
            return {"query.lookback-delta": "5m", "query.max-samples": "50000000"}
        raise QueryError("not_found", f"{path}: not found")

    # -- endpoints

    def _query(self, p: Params, ranged: bool) -> Any:
        expr = _one(p, "query")
        if expr is None:
            raise QueryError("bad_data", 'invalid parameter "query": query is empty')
        node = parse(expr)
        timeout = parse_duration(_one(p, "timeout") or "", "timeout") / 1000 if _one(p, "timeout") else (
            DEFAULT_TIMEOUT_S)  # fmt: skip
        if ranged:
            start, end = (parse_time(_required(p, n), n) for n in ("start", "end"))
            step = parse_duration(_required(p, "step"), "step")
            if end < start:
                raise QueryError(
                    "bad_data", 'invalid parameter "end": end timestamp must not be before start time'
                )
            if step <= 0:
                raise QueryError("bad_data", 'invalid parameter "step": zero or negative query resolution step '
                                 "widths are not accepted. Try a positive integer")  # fmt: skip
            if (end - start) // step + 1 > MAX_POINTS:
                raise QueryError("bad_data", "exceeded maximum resolution of 11,000 points per timeseries. "
                                 "Try decreasing the query resolution (?step=XX)")  # fmt: skip
        else:
            at = _one(p, "time")
            start = end = parse_time(at, "time") if at else round(time.time() * 1000)
            step = 1000
        return self._with_source(lambda s: Rendered(render_json(
            Engine(s).run(node, start, end, step, timeout), start, step, ranged)), timeout)  # fmt: skip

    def _with_source(self, work: Callable[[Source], Any], timeout: float = DEFAULT_TIMEOUT_S) -> Any:
        con = self.connect()
        alarm = self._watchdog.arm(timeout, con.interrupt)
        try:
            return work(Source(con, self.job, self.labels, self.inventory(con), self.head))
        except duckdb.InterruptException as exc:
            raise QueryError("timeout", "query timed out in query execution") from exc
        finally:
            self._watchdog.disarm(alarm)
            con.close()

    def _series(self, source: Source, p: Params) -> list[dict[str, str]]:
        start_text, end_text = _one(p, "start"), _one(p, "end")
        start = parse_time(start_text, "start") if start_text else MIN_MS
        end = parse_time(end_text, "end") if end_text else MAX_MS
        selectors = p.get("match[]") or ['{__name__=~".+"}']
        found: list[dict[str, str]] = []
        for text in selectors:
            node = parse(text)
            if type(node).__name__ != "VectorSelector":
                raise QueryError("bad_data", f'invalid parameter "match[]": {text} is not a series selector')
            found += source.series(matchers_of(node), start, end)
        return merge_labels(found)

    def _values(self, source: Source, name: str, p: Params) -> list[str]:
        return sorted({ls[name] for ls in self._series(source, p) if name in ls})


@dataclass(frozen=True)
class Rendered:
    text: str  # JSON


def _error(kind: str, message: str) -> bytes:
    return json.dumps(
        {"status": "error", "errorType": kind, "error": message}, separators=(",", ":")
    ).encode()


def _metadata(p: Params) -> dict[str, list[dict[str, str]]]:
    only = _one(p, "metric")
    return {name: [{"type": kind, "help": "", "unit": ""}] for name, kind in sorted(KINDS.items())
            if only in (None, name)}  # fmt: skip


def _params(environ: dict[str, Any]) -> Params:
    params = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    if environ.get("REQUEST_METHOD") == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length).decode() if length else ""
        for k, v in parse_qs(body, keep_blank_values=True).items():
            params.setdefault(k, []).extend(v)
    return params


def _one(p: Params, name: str) -> str | None:
    values = p.get(name)
    return values[0] if values else None


def _required(p: Params, name: str) -> str:
    value = _one(p, name)
    if value is None:
        raise QueryError("bad_data", f'invalid parameter "{name}": missing')
    return value
