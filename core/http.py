"""A WSGI server with a thread per connection that keeps connections open (HTTP/1.1 keep-alive),
and gzip for the answers of a client that asks for it.

wsgiref answers one request a connection in HTTP/1.0: every remote-write
request, scrape or Grafana query would cost a TCP handshake (a TLS one with
certificates) and a new thread. Prometheus, vmagent and Grafana keep their
connections open and reuse them; so does this server, for as long as each
response says how long it is and each request's body was read whole.
"""

from __future__ import annotations

import io
import socket
import ssl
from typing import Any
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from prometheus_client.exposition import ThreadingWSGIServer

GZIP_MIN_BYTES = 1024  # smaller answers go as they are: the header and the work cost more than they save
# ISA-L's level 2 (its default): a dashboard's answers (26 MB of JSON a load) in 14 ms at 15x smaller,
# outside the interpreter lock; zlib's level 1 took 66 ms for 13x, its level 6 186 ms for 24x.
GZIP_LEVEL = 2
PEER_NAMES = "ironsight.peer_names"  # the WSGI environ key: the client certificate's SANs, or absent
MAX_BODY = 64 << 20  # bodies up to this are read before the app runs, so the connection can be reused
IDLE_S = 300.0  # an idle kept-open connection is closed after this


class _Handler(ServerHandler):
    http_version = "1.1"
    delimited = False  # the response said its length: the connection can carry another
    status: str | None  # wsgiref's, set by start_response (its stubs leave them out)
    headers: Any

    def cleanup_headers(self) -> None:
        if self.status and self.status[:3] in ("204", "304"):  # no body, and no length to say (RFC 9110)
            del self.headers["Content-Length"]
            self.delimited = True
            return
        super().cleanup_headers()  # which sets Content-Length where the app's answer is one piece
        self.delimited = "Content-Length" in self.headers


class Handler(WSGIRequestHandler):
    """Requests on one connection until the client closes it, asks to, or a response cannot be delimited."""

    protocol_version = "HTTP/1.1"
    timeout = IDLE_S

    def handle(self) -> None:
        self.close_connection = True
        try:
            self._one()
            while not self.close_connection:
                self._one()
        except (TimeoutError, ConnectionError, ssl.SSLError):
            self.close_connection = True  # an idle or broken client: nothing to answer

    def _one(self) -> None:
        self.raw_requestline = self.rfile.readline(65537)
        if not self.raw_requestline:
            self.close_connection = True
            return
        if len(self.raw_requestline) > 65536:
            self.requestline = self.request_version = self.command = ""
            self.send_error(414)
            return
        if not self.parse_request():  # it answered, and says whether the connection can stay open
            return
        environ = self.get_environ()
        length = environ.get("CONTENT_LENGTH") or "0"
        body: Any = self.rfile
        if "Transfer-Encoding" in self.headers or not length.isdigit() or int(length) > MAX_BODY:
            self.close_connection = True  # the app reads what it can; the rest goes with the connection
        else:
            body = io.BytesIO(self.rfile.read(int(length)))
        wfile: Any = self.wfile  # a socket writer, where wsgiref's types say IO[bytes]
        handler = _Handler(body, wfile, self.get_stderr(), environ, multithread=True)
        handler.request_handler = self  # type: ignore[attr-defined]  # wsgiref logs through it
        handler.run(self.server.get_app())  # type: ignore[attr-defined]
        if not handler.delimited:
            self.close_connection = True

    def get_environ(self) -> dict[str, Any]:
        environ = dict(super().get_environ())
        environ["REMOTE_PORT"] = str(self.client_address[1])
        cert = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
        if cert:
            environ[PEER_NAMES] = {str(pair[1]) for pair in cert.get("subjectAltName", ())}
        return environ

    def log_message(self, format: str, *args: Any) -> None:
        """Nothing: a request is not worth a log line."""


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header takes gzip (RFC 9110: listed, or `*`, with a q above 0).
    Grafana's Prometheus data source asks for it, as Go's HTTP client does by default."""
    ranked: dict[str, float] = {}
    for item in accept_encoding.lower().split(","):
        coding, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if coding:
            ranked[coding.strip()] = q
    return ranked.get("gzip", ranked.get("x-gzip", ranked.get("*", 0.0))) > 0


def encoded(environ: dict[str, Any], body: bytes) -> tuple[bytes, list[tuple[str, str]]]:
    """The body as the request accepts it (gzip, when asked and worth it), and the headers that say so."""
    if len(body) < GZIP_MIN_BYTES or not accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING", "")):
        return body, [("Vary", "Accept-Encoding")]
    from isal import igzip  # here: the agent's server (this module too) never compresses

    return igzip.compress(body, GZIP_LEVEL), [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")]


def make(host: str, port: int, app: Any) -> WSGIServer:
    """The server, bound; serve_forever() runs it."""

    class Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        request_queue_size = 1024  # socketserver's 5 drops connections a sender's shards open at once

    server = Server((host, port), Handler)
    server.set_app(app)
    return server
