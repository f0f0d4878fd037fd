"""POST /api/v1/write: Prometheus remote write 1.0 into the store, answered as Prometheus expects.

- 204 once every sample of the request is committed (to `received`, see staging.py).
- 400 for a request that cannot be read, or one with series that cannot be stored (no node label,
  a value that is not finite, an instance this sender may not write for): the rest of it is
  stored first, the refused series' samples are kept in received_refused (senders do not retry a
  4xx), the body names them, and the log says so (a line per sender a minute at most).
- 401 without credentials a sender in --remote-write-senders has; 415 for remote write 2.0 or a
  body that is not snappy-compressed protobuf; 405 for another method.
- 503 (with Retry-After) while the store fails or too much waits to settle: the sender retries.
Series ironsight has no column for are counted by family (/metrics) and answered 204.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ironsight.collector.receive.decode import BadRequest, Decoder
from ironsight.collector.receive.senders import ANONYMOUS, Sender, identify
from ironsight.collector.receive.staging import MAX_BACKLOG, Staging
from ironsight.core.http import PEER_NAMES

log = logging.getLogger("ironsight.collector")

PATH = "/api/v1/write"
MAX_COMPRESSED = 32 << 20
SHOWN_REFUSED = 10  # refused series named in a 400's body; the count says how many more
SAY_EVERY_S = 60.0  # a sender's refusals are logged at most this often


@dataclass
class SenderStats:
    requests: Counter[int] = field(default_factory=Counter)  # by HTTP status
    samples: int = 0  # received, stored or not
    stored: int = 0  # committed to be settled
    series: int = 0  # mapped to a column (counted per request)
    refused: int = 0  # series refused
    dropped: Counter[str] = field(default_factory=Counter)  # samples without a column, by family


class Receiver:
    """The WSGI app. senders None: anyone may write for any node (the collector runs --insecure)."""

    def __init__(self, staging: Staging, decoder: Decoder, senders: list[Sender] | None) -> None:
        self.staging, self.decoder, self.senders = staging, decoder, senders
        self.stats: dict[str, SenderStats] = {}
        self._lock = threading.Lock()
        # One request decodes at a time: decoding is Python and numpy under the GIL, and 32 threads doing
        # it at once spend two to three times the CPU handing the GIL around.
        self._decoding = threading.Lock()
        self._said: dict[str, float] = {}  # when each sender's refusals were last logged
        self._unsaid: Counter[str] = Counter()  # series refused since

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        status, body, headers = self._handle(environ)
        start_response(status, [("Content-Type", "text/plain; charset=utf-8"), *headers])
        return [body.encode()]

    def _handle(self, environ: dict[str, Any]) -> tuple[str, str, list[tuple[str, str]]]:
        if environ.get("PATH_INFO") != PATH:
            return "404 Not Found", f"only {PATH} is served here\n", []
        if environ.get("REQUEST_METHOD") != "POST":
            return "405 Method Not Allowed", f"{PATH} takes POST\n", [("Allow", "POST")]
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        headers["authorization"] = environ.get("HTTP_AUTHORIZATION", "")
        sender = self._sender(headers, environ.get(PEER_NAMES))
        if sender is None:
            self._count("unknown", 401)
            return "401 Unauthorized", "no credentials of a sender in --remote-write-senders\n", [
                ("WWW-Authenticate", 'Bearer realm="ironsight"')]  # fmt: skip
        status, body, extra = self._receive(environ, sender)
        self._count(sender.name, int(status.split()[0]))
        return status, body, extra

    def _sender(self, headers: dict[str, str], peer_names: set[str] | None) -> Sender | None:
        if self.senders is None:
            return Sender(ANONYMOUS)
        return identify(self.senders, headers, peer_names)

    def _receive(self, environ: dict[str, Any], sender: Sender) -> tuple[str, str, list[tuple[str, str]]]:
        kind = environ.get("CONTENT_TYPE", "")
        if "io.prometheus.write.v2" in kind:
            return (
                "415 Unsupported Media Type",
                "remote write 2.0 is not accepted: send 1.0 (prometheus.WriteRequest)\n",
                [],
            )
        if kind and not kind.startswith("application/x-protobuf"):
            return "415 Unsupported Media Type", f"Content-Type {kind!r}: want application/x-protobuf\n", []
        encoding = environ.get("HTTP_CONTENT_ENCODING", "snappy")
        if encoding != "snappy":
            return "415 Unsupported Media Type", f"Content-Encoding {encoding!r}: want snappy\n", []
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length <= 0 or length > MAX_COMPRESSED:
            return (
                "400 Bad Request",
                f"want a body of 1 to {MAX_COMPRESSED} bytes with its Content-Length\n",
                [],
            )
        body = environ["wsgi.input"].read(length)
        if self.staging.backlog > MAX_BACKLOG:
            return "503 Service Unavailable", "the collector is behind settling received samples\n", [
                ("Retry-After", "5")]  # fmt: skip
        try:
            with self._decoding:
                got = self.decoder.decode(body, sender.may_write)  # new series' places are stored here
            self.staging.store(got, sender.name)
            self.staging.keep(got.kept, sender.name)
        except BadRequest as exc:
            return "400 Bad Request", f"{exc}\n", []
        except Exception as exc:  # disk full, a broken file: the sender keeps it and retries
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.error("remote write from %s not stored: %s", sender.name, msg)
            return "503 Service Unavailable", f"not stored: {msg}\n", [("Retry-After", "5")]
        with self._lock:
            s = self.stats.setdefault(sender.name, SenderStats())
            s.samples += got.samples
            s.stored += got.stored
            s.series += got.series
            s.refused += len(got.refused)
            s.dropped.update(got.dropped)
        if got.refused:
            self._say_refused(sender.name, got.refused)
            shown = "\n".join(got.refused[:SHOWN_REFUSED])
            more = len(got.refused) - SHOWN_REFUSED
            tail = f"\n... and {more} more" if more > 0 else ""
            return "400 Bad Request", (f"stored {got.stored} samples; refused {len(got.refused)} "
                                       f"series (their samples kept in received_refused):\n{shown}{tail}\n"), []  # fmt: skip
        return "204 No Content", "", []

    def figures(self) -> dict[str, SenderStats]:
        """A copy of each sender's counts, for /metrics."""
        with self._lock:
            return {name: SenderStats(Counter(s.requests), s.samples, s.stored, s.series, s.refused,
                                      Counter(s.dropped)) for name, s in self.stats.items()}  # fmt: skip

    def _say_refused(self, sender: str, refused: list[str]) -> None:
        """One log line per sender at most every SAY_EVERY_S, with how many series it covers: a sender
        that keeps sending a bad series is heard without flooding the log."""
        now = time.monotonic()
        with self._lock:
            self._unsaid[sender] += len(refused)
            if now - self._said.get(sender, -SAY_EVERY_S) < SAY_EVERY_S:
                return
            self._said[sender], count = now, self._unsaid.pop(sender)
        log.warning("remote write from %s: refused %d series since the last such line, e.g. %s; their samples "
                    "are kept in received_refused", sender, count, refused[0])  # fmt: skip

    def _count(self, sender: str, status: int) -> None:
        with self._lock:
            self.stats.setdefault(sender, SenderStats()).requests[status] += 1
