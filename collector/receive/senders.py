"""Who may remote-write to the collector, and for which nodes: the --remote-write-senders file.

    [[sender]]
    name = "prometheus-eu1"
    token_file = "/etc/ironsight/senders/eu1.token"   # Authorization: Bearer <the file's text>
    instances = "gpu-eu1-.*"                          # the nodes it may write for (full match)

    [[sender]]
    name = "vmagent-lab"
    username = "lab"                                  # basic auth ...
    password_file = "/etc/ironsight/senders/lab.pw"
    instances = ".*"

    [[sender]]
    name = "prometheus-tls"
    certificate = "prometheus-tls"                    # ... or a name on its client certificate (mTLS)
    instances = "gpu-.*"

A sender is bound to its instances as an agent is bound to its node id: a
series for any other node is refused, and the rest of the request stored.
"""

from __future__ import annotations

import base64
import hmac
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ANONYMOUS = "anonymous"  # every sender, when the collector runs --insecure without a senders file


class SendersError(ValueError):
    pass


@dataclass(frozen=True)
class Sender:
    name: str
    instances: re.Pattern[str] = field(default_factory=lambda: re.compile(".*"))
    token: str = ""
    username: str = ""
    password: str = ""
    certificate: str = ""

    def may_write(self, node: str) -> bool:
        return self.instances.fullmatch(node) is not None


def load(path: Path) -> list[Sender]:
    """The file's senders; SendersError with one line saying what is wrong."""
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise SendersError(f"--remote-write-senders {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SendersError(f"--remote-write-senders {path}: not TOML: {exc}") from None
    entries = data.get("sender")
    if not isinstance(entries, list) or not entries or set(data) != {"sender"}:
        raise SendersError(
            f"--remote-write-senders {path}: want one or more [[sender]] tables and nothing else"
        )
    senders = [_sender(path, i, e) for i, e in enumerate(entries, 1)]
    names = [s.name for s in senders]
    if len(set(names)) != len(names):
        raise SendersError(f"--remote-write-senders {path}: two senders share a name")
    return senders


def _sender(path: Path, i: int, e: Any) -> Sender:
    where = f"--remote-write-senders {path}: sender {i}"
    known = {"name", "instances", "token_file", "username", "password_file", "certificate"}
    if not isinstance(e, dict) or set(e) - known:
        raise SendersError(f"{where}: unknown keys {sorted(set(e) - known) if isinstance(e, dict) else e}")
    name, instances = e.get("name"), e.get("instances")
    if not isinstance(name, str) or not name or not isinstance(instances, str):
        raise SendersError(f"{where}: needs name and instances (a regular expression of node names)")
    try:
        pattern = re.compile(instances)
    except re.error as exc:
        raise SendersError(f"{where} ({name}): instances is not a regular expression: {exc}") from None
    ways = [k for k in ("token_file", "password_file", "certificate") if k in e]
    if len(ways) != 1 or ("password_file" in e) != ("username" in e):
        raise SendersError(f"{where} ({name}): give exactly one of token_file, username with "
                           "password_file, or certificate")  # fmt: skip
    token = _secret(where, e["token_file"]) if "token_file" in e else ""
    password = _secret(where, e["password_file"]) if "password_file" in e else ""
    return Sender(name, pattern, token, str(e.get("username", "")), password, str(e.get("certificate", "")))


def _secret(where: str, file: Any) -> str:
    try:
        text = Path(str(file)).read_text().strip()
    except OSError as exc:
        raise SendersError(f"{where}: {file}: {exc.strerror}") from None
    if not text:
        raise SendersError(f"{where}: {file} is empty")
    return text


def identify(senders: list[Sender], headers: Mapping[str, str], peer_names: set[str] | None) -> Sender | None:
    """The sender a request comes from: its bearer token, basic auth, or client certificate names."""
    auth = headers.get("authorization", "")
    scheme, _, credential = auth.partition(" ")
    for s in senders:
        if s.token and scheme.lower() == "bearer" and hmac.compare_digest(credential.strip(), s.token):
            return s
        if s.username and scheme.lower() == "basic" and hmac.compare_digest(credential.strip(), _basic(s)):
            return s
        if s.certificate and not auth and peer_names and s.certificate in peer_names:
            return s
    return None


def _basic(s: Sender) -> str:
    return base64.b64encode(f"{s.username}:{s.password}".encode()).decode()
