"""Forward what the collector stores to a Prometheus remote-write endpoint (Prometheus, Mimir, Thanos
Receive, VictoriaMetrics).

The store hands over each committed group (already decoded, duplicates gone);
one sender thread takes every group waiting, encodes them a column at a time
into requests of up to max_send samples (encode.py; protobuf, snappy) and
posts them in order, so each series' samples arrive oldest first. 5xx, 429
and connection errors are retried with exponential backoff and jitter, never other 4xx (the receiver will not take
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

from ironsight.collector.remote_write.encode import Encoder
from ironsight.core.worker import QueueWorker
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
    # Samples a request. Requests go one at a time, in order; under a busy collector each round trip
    # waits for the interpreter, so fewer, larger ones (at 256 nodes, 5,000 a request fell behind and
    # dropped 3.6 M values in 2 minutes; 20,000 kept up). A request is then about 3 MB before snappy,
    # far under receivers' limits (Mimir 100 MiB, VictoriaMetrics 32 MB); vmagent sends up to 10,000.
    max_send: int = 20_000
    queue_values: int = 2_000_000  # stored values waiting, about 30 s of 1,000 nodes at 1 s
    encode_values: int = 250_000  # stored values encoded at once: bounds the requests held in memory
    # Under a trickle (agents at 1 s commit small groups), wait this long for more before encoding: each
    # encoding has a fixed cost, so fewer, larger ones (Prometheus's own remote write waits up to 5 s).
    batch_wait_s: float = 1.0
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
    queued_values: int = 0  # waiting in the queue (what a full queue drops from)
    sending_values: int = 0  # taken from the queue, not yet sent
    cpu_seconds: float = 0.0  # the sender thread's: encoding, compressing, posting
    last_send_s: float = 0.0
    last_success_unix: float = 0.0

    @property
    def unsent_values(self) -> int:
        return self.queued_values + self.sending_values


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
        self.encoder = Encoder(config.labels, config.job)
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
            taken = self._sending(groups)
            if taken < self.config.encode_values and not self.sleep(self.config.batch_wait_s):
                with self.cond:  # re-entrant: _sending counts them before submit() can look
                    more = self.take(block=False)
                    taken += self._sending(more)
                groups += more
            try:
                self._forward(groups)
            except Exception:  # a bug here must not end forwarding for good
                log.exception("remote write: could not forward a group")
            finally:
                with self.cond:
                    self.stats.sending_values -= taken
                self.done()

    def _sending(self, groups: list[_Group]) -> int:
        """Counts groups taken from the queue as being sent (a full queue drops from the rest only)."""
        values = sum(g.values for g in groups)
        with self.cond:
            self.stats.queued_values -= values
            self.stats.sending_values += values
        return values

    def _forward(self, groups: list[_Group]) -> None:
        for part in _slices(groups, self.config.encode_values):
            began = time.thread_time()
            for g in part:
                for node_id, info in g.infos:
                    self.encoder.learn(node_id, info)
            requests = self.encoder.encode([t for g in part for t in g.tables], self.config.max_send)
            for request, count in requests:
                self._send(request, count)
            self.stats.cpu_seconds += time.thread_time() - began

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


def _slices(groups: list[_Group], values: int) -> list[list[_Group]]:
    """Consecutive runs of groups of about `values` stored values each (a larger group alone)."""
    out: list[list[_Group]] = [[]]
    held = 0
    for g in groups:
        if out[-1] and held + g.values > values:
            out.append([])
            held = 0
        out[-1].append(g)
        held += g.values
    return out
