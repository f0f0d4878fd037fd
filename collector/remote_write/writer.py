"""Forward what the collector stores to a Prometheus remote-write endpoint (Prometheus, Mimir, Thanos
Receive, VictoriaMetrics).

The store hands over each committed group (already decoded, duplicates gone);
one sender thread turns groups into series, packs up to max_send samples a
request (protobuf, snappy) and posts them in order, so each series' samples
arrive oldest first. 5xx, 429 and connection errors are retried with
exponential backoff and jitter, never other 4xx (the receiver will not take
those samples however often they come). While it retries, the queue of
groups waiting is bounded in values: past it the oldest are dropped and
counted, so a long outage costs the oldest data, never the collector's memory.
"""

from __future__ import annotations

import base64
import http.client
import logging
import random
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import cramjam
import pyarrow as pa

from ironsight.collector.remote_write.series import Series, SeriesBuilder
from ironsight.core.worker import QueueWorker
from ironsight.prompb import remote_pb2 as prompb
from ironsight.v1 import telemetry_pb2 as pb

log = logging.getLogger("ironsight.remote_write")

USER_AGENT = "ironsight-collector"


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Config:
    url: str
    labels: dict[str, str] = field(default_factory=dict)  # added to every series, e.g. cluster=a
    job: str = "ironsight"
    bearer_token_file: Path | None = None
    username: str = ""
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None  # client certificate, for receivers that want mTLS
    key_file: Path | None = None
    timeout_s: float = 10.0
    max_send: int = 5000  # samples a request
    queue_values: int = 2_000_000  # stored values waiting, about 30 s of 1,000 nodes at 1 s
    min_backoff_s: float = 0.1
    max_backoff_s: float = 30.0

    def check(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"--remote-write-url {self.url!r}: want http(s)://HOST[:PORT]/PATH")
        if self.bearer_token_file and (self.username or self.password_file):
            raise ConfigError("remote write: give a bearer token or basic auth, not both")
        if bool(self.username) != bool(self.password_file):
            raise ConfigError(
                "remote write: basic auth needs both --remote-write-username and a password file"
            )
        if bool(self.cert_file) != bool(self.key_file):
            raise ConfigError("remote write: a client certificate needs both its cert and key files")
        if parts.scheme == "http" and (self.ca_file or self.cert_file):
            raise ConfigError("remote write: TLS files given for an http:// URL")
        for path in (self.bearer_token_file, self.password_file, self.ca_file, self.cert_file, self.key_file):
            if path is not None and not path.is_file():
                raise ConfigError(f"remote write: {path} is not a readable file")

    def authorization(self) -> str | None:
        # Read at each connection, so a rotated token or password is picked up.
        if self.bearer_token_file:
            return "Bearer " + self.bearer_token_file.read_text().strip()
        if self.password_file:
            secret = f"{self.username}:{self.password_file.read_text().strip()}".encode()
            return "Basic " + base64.b64encode(secret).decode()
        return None


@dataclass
class Stats:
    samples_sent: int = 0
    samples_failed: int = 0  # refused by the receiver (4xx other than 429): not retried
    values_dropped: int = 0  # the queue was full
    requests: int = 0
    retries: int = 0
    queued_values: int = 0
    last_send_s: float = 0.0
    last_success_unix: float = 0.0


@dataclass
class _Group:
    tables: list[tuple[str, pa.Table]]
    infos: list[tuple[str, pb.NodeInfo]]
    values: int


class Retriable(Exception):
    def __init__(self, why: str, retry_after_s: float | None = None) -> None:
        super().__init__(why)
        self.retry_after_s = retry_after_s


class RemoteWriter(QueueWorker[_Group]):
    """Forwards each committed group; stop(timeout_s) sends what is queued for up to timeout_s, then
    gives up on the rest."""

    def __init__(self, config: Config) -> None:
        super().__init__("remote-write")
        config.check()
        self.config = config
        self.stats = Stats()
        self.builder = SeriesBuilder(config.labels, config.job)
        self._conn: http.client.HTTPConnection | None = None
        self._logged: set[str] = set()
        parts = urlsplit(config.url)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def submit(self, tables: list[tuple[str, pa.Table]], infos: list[tuple[str, pb.NodeInfo]]) -> None:
        """Called by the store's writer after a commit: never blocks on the network."""
        # Values present (NULL: not sampled); the first three columns are node, device, time.
        values = sum(len(c) - c.null_count for _, t in tables for c in t.columns[3:])
        with self.cond:
            # Never blocks: past queue_values the oldest stored values are dropped (and counted).
            self.queue.append(_Group(tables, infos, values))
            self.stats.queued_values += values
            while self.stats.queued_values > self.config.queue_values and len(self.queue) > 1:
                old = self.queue.popleft()
                self.stats.queued_values -= old.values
                self.stats.values_dropped += old.values
                self._once("drop", "remote write queue full: dropping the oldest stored values (counted)")
            self.cond.notify_all()

    def stop(self, timeout_s: float | None = 5.0, join_s: float | None = None) -> bool:
        # A request in flight may take its whole timeout to fail.
        return super().stop(timeout_s, self.config.timeout_s + 1 if join_s is None else join_s)

    def run(self) -> None:
        while groups := self.take():
            with self.cond:
                self.stats.queued_values -= sum(g.values for g in groups)
            try:
                self._forward(groups)
            except Exception:  # a bug here must not end forwarding for good
                log.exception("remote write: could not forward a group")
            finally:
                self.done()

    def _forward(self, groups: list[_Group]) -> None:
        series: Series = {}
        for g in groups:
            for node_id, info in g.infos:
                self.builder.learn(node_id, info)
            self.builder.add(g.tables, series)
        for request, count in self._requests(series):
            self._send(request, count)

    def _requests(self, series: Series) -> list[tuple[bytes, int]]:
        out: list[tuple[bytes, int]] = []
        req, count = prompb.WriteRequest(), 0
        for labels, samples in series.items():
            samples.sort()  # a series' samples oldest first, as receivers require
            for i in range(0, len(samples), self.config.max_send):
                chunk = samples[i : i + self.config.max_send]
                if count and count + len(chunk) > self.config.max_send:
                    out.append((req.SerializeToString(), count))
                    req, count = prompb.WriteRequest(), 0
                ts = req.timeseries.add()
                ts.labels.extend(prompb.Label(name=k, value=v) for k, v in labels)
                ts.samples.extend(prompb.Sample(value=v, timestamp=ms) for ms, v in chunk)
                count += len(chunk)
        if count:
            out.append((req.SerializeToString(), count))
        return out

    def _send(self, request: bytes, count: int) -> None:
        body = bytes(cramjam.snappy.compress_raw(request))
        attempt = 0
        while not self.stopping:
            began = time.perf_counter()
            try:
                status, reason, retry_after = self._post(body)
            except (OSError, http.client.HTTPException) as exc:
                self._drop_connection()
                status, reason, retry_after = 0, f"{type(exc).__name__}: {exc}", None
            self.stats.requests += 1
            self.stats.last_send_s = time.perf_counter() - began
            if 200 <= status < 300:
                self.stats.samples_sent += count
                self.stats.last_success_unix = time.time()
                if "failing" in self._logged:
                    log.info("remote write recovered after %d retries", attempt)
                    self._logged.discard("failing")
                return
            if status and status != 429 and status < 500:
                self.stats.samples_failed += count
                self._once(f"status{status}", f"remote write refused {count} samples: {status} {reason}")
                return
            self.stats.retries += 1
            self._once(
                "failing", f"remote write failing, retrying with backoff: {status or ''} {reason}".strip()
            )
            backoff = min(self.config.max_backoff_s, self.config.min_backoff_s * 2**attempt)
            wait = retry_after if retry_after is not None else backoff * random.uniform(0.5, 1.0)
            attempt += 1
            self.sleep(min(wait, self.config.max_backoff_s))
        log.warning("remote write: %d samples not sent: stopping while the receiver fails", count)

    def _post(self, body: bytes) -> tuple[int, str, float | None]:
        conn = self._connection()
        headers = {
            "Content-Encoding": "snappy",
            "Content-Type": "application/x-protobuf",
            "User-Agent": USER_AGENT,
            "X-Prometheus-Remote-Write-Version": "0.1.0",
        }
        auth = self.config.authorization()
        if auth:
            headers["Authorization"] = auth
        conn.request("POST", self._path, body=body, headers=headers)
        resp = conn.getresponse()
        text = resp.read(512).decode(errors="replace").strip()
        if resp.will_close:
            self._drop_connection()
        retry_after = resp.getheader("Retry-After")
        wait = float(retry_after) if retry_after and retry_after.isdigit() else None
        return resp.status, text.splitlines()[0] if text else resp.reason, wait

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            parts = urlsplit(self.config.url)
            c = self.config
            if parts.scheme == "https":
                ctx = ssl.create_default_context(cafile=str(c.ca_file) if c.ca_file else None)
                if c.cert_file and c.key_file:
                    ctx.load_cert_chain(str(c.cert_file), str(c.key_file))
                self._conn = http.client.HTTPSConnection(
                    parts.hostname or "", parts.port, timeout=c.timeout_s, context=ctx
                )
            else:
                self._conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=c.timeout_s)
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _once(self, key: str, message: str) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.warning("%s", message)
