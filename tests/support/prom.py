"""A real Prometheus (Debian's package) on a loopback port, scraping what a test gives it, gone with the test."""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.processes import free_port, wait_port

Target = str | tuple[str, dict[str, str]]  # an address, or one with target labels (instance=...)


def _static(target: Target) -> str:
    address, labels = (target, {}) if isinstance(target, str) else target
    extra = f"\n        labels: {json.dumps(labels)}" if labels else ""  # JSON is YAML
    return f"      - targets: ['{address}']{extra}"


class Prometheus:
    def __init__(
        self,
        tmp: Path,
        targets: dict[str, Target | list[Target]],
        scrape_s: int = 1,
        web_config: str = "",
        ca: Path | None = None,
        auth: tuple[str, str] | None = None,
        remote_write: str = "",
    ) -> None:
        """web_config: Prometheus' --web.config.file text (TLS, basic auth); ca and auth to query it then.
        remote_write: the configuration's remote_write list (YAML), e.g. to a receiving collector."""
        exe = shutil.which("prometheus")
        if exe is None:
            pytest.fail("prometheus not found: .ci/run installs Debian's prometheus package")
        self.port = free_port()
        jobs = "\n".join(
            f"  - job_name: {job}\n    static_configs:\n"
            + "\n".join(_static(t) for t in (target if isinstance(target, list) else [target]))
            for job, target in targets.items()
        )
        config = tmp / "prometheus.yml"
        config.write_text(
            f"global:\n  scrape_interval: {scrape_s}s\n  evaluation_interval: {scrape_s}s\nscrape_configs:\n{jobs}\n"
            + (f"remote_write:\n{remote_write}\n" if remote_write else "")
        )
        flags = []
        if web_config:
            (tmp / "web.yml").write_text(web_config)
            flags.append(f"--web.config.file={tmp / 'web.yml'}")
        self.scheme = "https" if "tls_server_config" in web_config else "http"
        self.context = ssl.create_default_context(cafile=str(ca)) if ca else None
        self.auth = auth
        self.log = open(tmp / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [exe, f"--config.file={config}", f"--storage.tsdb.path={tmp / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-remote-write-receiver", *flags],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_port(self.port, self.proc, timeout=30)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        """The port opens before the TSDB is loaded; until /-/ready says so, queries get 503."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                request = urllib.request.Request(f"{self.url}/-/ready")
                self._authorize(request)
                with urllib.request.urlopen(request, timeout=5, context=self.context) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"prometheus not ready after {timeout}s (see {self.log.name})")
            time.sleep(0.2)

    def _authorize(self, request: urllib.request.Request) -> None:
        if self.auth:
            secret = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {secret}")

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr, **({"time": str(at)} if at is not None else {})}
        request = urllib.request.Request(f"{self.url}/api/v1/query?" + urllib.parse.urlencode(params))
        if self.auth:
            secret = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {secret}")
        with urllib.request.urlopen(request, timeout=30, context=self.context) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def wait_for(self, expr: str, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if result or time.monotonic() > deadline:
                return result
            time.sleep(0.5)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def promtool(text: str) -> list[str]:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool not found: .ci/run installs Debian's prometheus package")
    proc = subprocess.run([exe, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    problems = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode in (0, 3), problems  # 3: lint problems only, which are checked below
    return problems
