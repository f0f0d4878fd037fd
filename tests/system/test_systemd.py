"""The systemd units: they verify, their exposure is 2.0 or lower, every path they name exists in an
installed virtual environment, their example options parse, and both programs speak sd_notify."""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from ironsight.agent.main import parser as agent_parser
from ironsight.collector.flags import parser as collector_parser
from ironsight.core import config

from support.paths import ROOT
from support.processes import BIN, free_port

UNITS = ROOT / "systemd"
NAMES = ["ironsight-agent.service", "ironsight-collector.service"]


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.fail("systemd-analyze not found: .ci/run installs systemd")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60)


def installed(tmp_path: Path) -> list[Path]:
    """The units as they would be with /opt/ironsight being this test run's virtual environment."""
    out = []
    for name in NAMES:
        text = (UNITS / name).read_text()
        assert "ExecStart=/opt/ironsight/bin/" in text
        path = tmp_path / name
        path.write_text(text.replace("/opt/ironsight/bin/", f"{BIN}/"))
        out.append(path)
    return out


def test_units_verify_and_every_path_exists(tmp_path: Path) -> None:
    units = installed(tmp_path)
    result = analyze("verify", *map(str, units))
    assert result.returncode == 0, result.stderr
    for unit in units:
        text = unit.read_text()
        exe = Path(re.search(r"^ExecStart=(\S+)", text, re.M).group(1))
        assert exe.is_file() and exe.stat().st_mode & 0o111, exe
        user = re.search(r"^User=(\S+)", text, re.M).group(1)
        assert f"u {user} " in (UNITS / "ironsight.sysusers.conf").read_text()
        env = re.search(r"^EnvironmentFile=-(\S+)", text, re.M).group(1)
        config_dir = re.search(r"^ConfigurationDirectory=(\S+)", text, re.M).group(1)
        assert env.startswith(f"/etc/{config_dir}/")
        state = re.search(r"^StateDirectory=(\S+)", text, re.M).group(1)
        for path in re.findall(r"/var/lib/[\w./-]+", text):  # inside its own state directory
            assert f"{path}/".startswith(f"/var/lib/{state}/"), path
        for exe in re.findall(r"^ExecStart(?:Pre)?=(\S+)", text, re.M):
            assert Path(exe).is_file(), exe
    assert "d /etc/ironsight 0750 root ironsight" in (UNITS / "ironsight.tmpfiles.conf").read_text()


@pytest.mark.parametrize("name", NAMES)
def test_exposure_is_2_or_lower(name: str) -> None:
    result = analyze("security", "--offline=true", str(UNITS / name))
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert found, result.stdout[-500:] + result.stderr
    assert float(found.group(1)) <= 2.0


@pytest.mark.parametrize(("example", "make"), [("agent.toml.example", agent_parser),
                                               ("collector.toml.example", collector_parser)])  # fmt: skip
def test_example_configuration_parses(example: str, make: object) -> None:
    tokens = config.from_file(make(), UNITS / example)  # raises ConfigError
    assert "--tls-ca" in tokens
    make().parse_args(tokens)


class NotifySocket:
    def __init__(self, tmp: Path) -> None:
        self.path = tmp / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []

    def read_until(self, field: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(field in m.split("\n") for m in self.messages):
            assert time.monotonic() < deadline, f"no {field} in {self.messages}"
            with contextlib.suppress(TimeoutError):
                self.messages.append(self.sock.recv(4096).decode())


@pytest.mark.slow
@pytest.mark.parametrize("program", ["agent", "collector"])
def test_sd_notify_ready_watchdog_status_stopping(tmp_path: Path, program: str) -> None:
    notify = NotifySocket(tmp_path)
    env = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "2000000", "PATH": "/usr/bin:/bin"}
    if program == "agent":
        argv = [str(BIN / "ironsight-agent"), "--metrics-listen", f"127.0.0.1:{free_port()}", "--interval", "0.2",
                "--no-collector.gpu"]  # fmt: skip
    else:
        argv = [str(BIN / "ironsight-collector"), "--db", str(tmp_path / "n.duckdb"), "--insecure",
                "--listen", f"127.0.0.1:{free_port()}"]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        notify.read_until("READY=1")
        ready = next(m for m in notify.messages if "READY=1" in m)
        assert "STATUS=" in ready
        notify.messages.clear()
        notify.read_until("WATCHDOG=1", timeout=5)  # pinged at least every second (half of 2 s)
        proc.send_signal(signal.SIGTERM)
        notify.read_until("STOPPING=1")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.sock.close()
