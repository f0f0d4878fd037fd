"""The HTTP server keeps a client's connection open, as Prometheus, vmagent and Grafana expect, and closes it
when a response cannot be delimited or the client asks."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from ironsight.core.http import accepts_gzip
from ironsight.core.transport import serve_http


def _app(environ: dict[str, Any], start_response: Any) -> Any:
    path, peer = environ["PATH_INFO"], environ["REMOTE_PORT"]
    if path == "/unread":  # answers without reading the body
        start_response("401 Unauthorized", [("Content-Type", "text/plain")])
        return [b"no"]
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    if path == "/204":
        start_response("204 No Content", [])
        return [b""]
    start_response("200 OK", [("Content-Type", "text/plain")])
    text = f"{peer} {len(body)}".encode()
    return iter([text]) if path == "/stream" else [text]  # an iterator: no length to send


@pytest.fixture
def port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    server = serve_http(f"127.0.0.1:{free}", _app, None)
    yield free
    server.shutdown()
    server.server_close()


def _ask(c: http.client.HTTPConnection, path: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    c.request("POST", path, body=body)
    r = c.getresponse()
    return r.status, dict(r.getheaders()), r.read()


def test_one_connection_carries_many_requests(port: int) -> None:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    answers = [_ask(c, "/a", b"x" * n) for n in (0, 10, 70_000)]
    peers = {body.split()[0] for _, _, body in answers}
    assert [body.split()[1] for _, _, body in answers] == [b"0", b"10", b"70000"]
    assert len(peers) == 1  # the same client port: the same connection
    status, headers, body = _ask(c, "/204", b"abc")
    assert (status, body, "Content-Length" in headers) == (204, b"", False)  # RFC 9110: no length on a 204
    assert _ask(c, "/unread", b"y" * 5000)[0] == 401  # a body the app left unread does not spoil the next one
    assert _ask(c, "/a", b"zz")[2].split() == [next(iter(peers)), b"2"]


def test_a_response_without_a_length_closes_the_connection(port: int) -> None:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    first = _ask(c, "/stream")[2].split()[0]
    second = _ask(c, "/a")[2].split()[0]  # http.client reconnects: a new client port
    assert first != second


def test_an_http_1_0_client_gets_one_answer_and_the_close(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /a HTTP/1.0\r\nHost: x\r\n\r\n")
        got = b""
        while chunk := s.recv(65536):  # the server closes: recv ends
            got += chunk
    assert got.startswith(b"HTTP/1.1 200") and got.endswith(b" 0")


@pytest.mark.parametrize(
    ("header", "gzip"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),  # Go's client sends "gzip"; browsers list several
        ("GZIP", True),
        ("deflate, x-gzip", True),
        ("*", True),
        ("deflate, *;q=0.5", True),
        ("gzip;q=0.001", True),
        ("gzip;q=0", False),
        ("gzip; q=0.0, *", False),  # named with q=0: not by way of the wildcard either
        ("*;q=0", False),
        ("identity", False),
        ("deflate, br", False),
        ("", False),
        ("gzip;q=nonsense", False),
    ],
)
def test_gzip_is_sent_only_to_a_client_that_takes_it(header: str, gzip: bool) -> None:
    assert accepts_gzip(header) is gzip
