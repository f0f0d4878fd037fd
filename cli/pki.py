"""A small CA for one ironsight deployment, and the certificates its collector, nodes and users need.

    ironsight certs init                       # pki/ca.pem, pki/ca.key
    ironsight certs collector monitor.example --ip 10.0.0.5
    ironsight certs issue gpu-01               # pki/gpu-01.pem, pki/gpu-01.key: that node's identity

A node's certificate names its node id (a DNS subject alternative name): the
collector stores batches only for the node ids the sender's certificate
names. Every certificate can also be used as a client of the query service
and as a server for the agent's /metrics. Keys are ECDSA P-256, written 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ironsight.core.transport import READER_URI

NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$")


class CertError(Exception):
    pass


def _write(path: Path, data: bytes, secret: bool) -> None:
    if path.exists():
        raise CertError(f"{path} exists; remove it first to issue a new one")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if secret else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def init(directory: Path, days: int = 3650) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ironsight CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )  # key_cert_sign, crl_sign
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(directory / "ca.key", _key_pem(key), secret=True)
    _write(directory / "ca.pem", cert.public_bytes(serialization.Encoding.PEM), secret=False)
    return directory / "ca.pem"


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
        key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), password=None)
    except FileNotFoundError:
        raise CertError(f"no CA in {directory}: run `ironsight certs init --dir {directory}` first") from None
    except ValueError as exc:  # never print the key: only that it did not load
        raise CertError(f"the CA in {directory} does not load: {type(exc).__name__}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError(f"{directory / 'ca.key'} is not an ECDSA key")
    return cert, key


def issue(
    directory: Path,
    name: str,
    dns: list[str],
    ips: list[str],
    days: int,
    file_stem: str,
    reader: bool = False,
) -> Path:
    """A certificate naming name (and dns, ips); reader: for a person or service that queries, not a node."""
    for n in [name, *dns]:
        if not NAME.match(n):
            raise CertError(f"{n!r} is not a usable name (letters, digits, '.', '-', '_'; no spaces)")
    addresses = []
    for ip in ips:
        try:
            addresses.append(ipaddress.ip_address(ip))
        except ValueError:
            raise CertError(f"{ip!r} is not an IP address") from None
    ca_cert, ca_key = _load_ca(directory)
    for suffix in (".key", ".pem"):
        if (directory / f"{file_stem}{suffix}").exists():
            raise CertError(f"{directory / (file_stem + suffix)} exists; remove it first to issue a new one")
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dict.fromkeys([name, *dns])]
    sans += [x509.IPAddress(a) for a in addresses]
    if reader:
        sans.append(x509.UniformResourceIdentifier(READER_URI))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - dt.timedelta(minutes=5))
        .not_valid_after(_now() + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(directory / f"{file_stem}.key", _key_pem(key), secret=True)
    _write(directory / f"{file_stem}.pem", cert.public_bytes(serialization.Encoding.PEM), secret=False)
    return directory / f"{file_stem}.pem"
