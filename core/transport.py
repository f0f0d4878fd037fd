"""How ironsight's processes talk: mutual TLS by default, plaintext only where it cannot be overheard.

Servers (collector gRPC and HTTP, agent /metrics) need a certificate and key,
and with a client CA they accept only clients that CA signed. Plaintext
needs --insecure, and a plaintext server listens on loopback only unless also
--allow-remote-insecure. Clients (agent, CLI, replay) use TLS when given
--tls-* files, plaintext to a loopback address, and plaintext elsewhere only
with --insecure. A node's identity is its certificate's DNS subject
alternative names: the collector stores a batch only for a node its sender's
certificate names.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

CERTS_HINT = "see `ironsight certs`"


class TransportError(ValueError):
    """A TLS or plaintext setting that cannot work or is not allowed: one line for the user."""


@dataclass(frozen=True)
class Tls:
    ca: Path  # the CA that signed the peer
    cert: Path  # our certificate (chain)
    key: Path  # its private key

    def read(self) -> tuple[bytes, bytes, bytes]:
        out = []
        for what, path in (("CA", self.ca), ("certificate", self.cert), ("key", self.key)):
            try:
                out.append(path.read_bytes())
            except OSError as exc:  # the message names the file, never its contents
                raise TransportError(f"cannot read TLS {what} {path}: {exc.strerror or exc}") from None
        return out[0], out[1], out[2]


def tls_from(ca: Path | None, cert: Path | None, key: Path | None, flag: str = "--tls") -> Tls | None:
    given = [p for p in (ca, cert, key) if p is not None]
    if not given:
        return None
    if len(given) != 3:
        raise TransportError(f"TLS needs all three of {flag}-ca, {flag}-cert and {flag}-key ({CERTS_HINT})")
    assert ca is not None and cert is not None and key is not None
    tls = Tls(ca, cert, key)
    tls.read()
    return tls


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_of(address: str) -> str:
    return address.rpartition(":")[0].strip("[]")


def check_listen(address: str, tls: Tls | None, insecure: bool, allow_remote: bool, what: str) -> None:
    if tls is not None:
        return
    if not insecure:
        raise TransportError(f"{what} on {address} needs TLS (--tls-ca, --tls-cert, --tls-key; {CERTS_HINT}) "
                             "or --insecure for plaintext")  # fmt: skip
    if not is_loopback(host_of(address)) and not allow_remote:
        raise TransportError(f"{what} on {address} in plaintext would be open to the network: listen on "
                             "127.0.0.1, use TLS, or add --allow-remote-insecure as well")  # fmt: skip


def check_dial(target: str, tls: Tls | None, insecure: bool) -> None:
    if tls is None and not insecure and not is_loopback(host_of(target)):
        raise TransportError(f"{target} is not on this machine: give --tls-ca, --tls-cert and --tls-key "
                             f"({CERTS_HINT}), or --insecure for plaintext")  # fmt: skip


def channel(target: str, tls: Tls | None, options: list[tuple[str, Any]] | None = None) -> grpc.Channel:
    if tls is None:
        return grpc.insecure_channel(target, options=options)
    ca, cert, key = tls.read()
    creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    return grpc.secure_channel(target, creds, options=options)


def server_credentials(tls: Tls) -> grpc.ServerCredentials:
    ca, cert, key = tls.read()
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)


def serve_metrics(listen: str, registry: Any, tls: Tls | None, api: Any = None) -> Any:
    """/metrics on a daemon thread (returns the server; shutdown() stops it). With TLS, clients must
    present a certificate the same CA signed, as Prometheus does with a tls_config. api: a WSGI app
    that answers /api/v1/... and /-/... beside it (the collector's Prometheus API)."""
    from prometheus_client import make_wsgi_app

    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if api is not None and (path.startswith("/api/") or path.startswith("/-/")):
            return api(environ, start_response)
        return metrics(environ, start_response)

    return serve_http(listen, app, tls)


def serve_http(listen: str, app: Any, tls: Tls | None, client_cert_optional: bool = False) -> Any:
    """A WSGI app on a daemon thread, a thread per connection (returns the server; shutdown() stops it).

    With TLS, a client certificate the CA signed is required, or with client_cert_optional checked
    only when presented (senders that authenticate by token); its names reach the app as
    environ[PEER_NAMES]."""
    import ssl
    import threading

    from ironsight.core.http import make

    host, _, port = listen.rpartition(":")
    server = make(host.strip("[]"), int(port), app)
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_verify_locations(cafile=str(tls.ca))
        context.verify_mode = ssl.CERT_OPTIONAL if client_cert_optional else ssl.CERT_REQUIRED
        context.load_cert_chain(certfile=str(tls.cert), keyfile=str(tls.key))
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True, name="http").start()
    return server


# A certificate for a person or a service that reads (`ironsight certs issue NAME --reader`) carries this
# URI among its names; one without it is a node's, which may only send its own data.
READER_URI = "urn:ironsight:role:reader"


def peer_names(context: Any) -> set[str] | None:
    """The client's certificate names (its SANs, READER_URI included); None on a plaintext connection."""
    auth = context.auth_context()
    if auth.get("transport_security_type") != [b"ssl"]:
        return None
    return {v.decode() for v in auth.get("x509_subject_alternative_name", [])}
