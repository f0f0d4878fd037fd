"""Real processes for tests and benchmarks: free loopback ports, a collector, the CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port} after {timeout}s")


def scrape_metrics(port: int) -> str:
    """A /metrics body from loopback; empty while nothing listens there (yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return str(r.read().decode())
    except OSError:
        return ""


class CollectorProcess:
    def __init__(self, db: Path, log: Path, extra: list[str] | None = None, http: bool = False) -> None:
        """http: also serve /metrics on a free loopback port (http_port)."""
        self.db = db
        self.log = log
        self.http_port = free_port() if http else 0
        self.extra = [*(extra or []), *(["--http-listen", f"127.0.0.1:{self.http_port}"] if http else [])]
        # Plaintext on loopback unless the test brings its own TLS flags.
        self.security = [] if any(a.startswith("--tls") for a in self.extra) else ["--insecure"]
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> CollectorProcess:
        out = open(self.log, "ab")  # noqa: SIM115 - closed with the process
        argv = [str(BIN / "ironsight-collector"), "--db", str(self.db), "--listen", self.target]
        self.proc = subprocess.Popen(
            [*argv, *self.security, *self.extra],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        wait_port(self.port, self.proc)
        return self

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        return self.proc.returncode

    def metrics(self, marker: str, timeout: float = 20.0) -> str:
        """/metrics once it contains marker (the HTTP server starts after the gRPC port); else the last body."""
        deadline = time.monotonic() + timeout
        while True:
            text = scrape_metrics(self.http_port)
            if marker in text or time.monotonic() > deadline:
                return text
            time.sleep(0.2)

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.target)


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}  # wide enough that rich does not wrap cells
    proc = subprocess.run(
        [str(BIN / "ironsight"), *args], capture_output=True, text=True, timeout=60, env=env
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"ironsight {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def wait_for(fn: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():
            return
        time.sleep(0.1)
    raise TimeoutError("condition not met")
