"""The `ironsight` group: every command group registered, however the command is started."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow
@pytest.mark.parametrize("module", ["ironsight.cli", "ironsight.cli.main"])
def test_python_dash_m_knows_every_command(module: str) -> None:
    """`python -m ironsight.cli.main certs` once stopped at a __main__ guard above certs and doctor."""
    listing = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=60
    )
    assert listing.returncode == 0, listing.stderr
    commands = listing.stdout.split("Commands:")[1].split()
    for name in ("certs", "detect", "doctor", "eval", "events", "nodes", "replay", "simulate", "top", "up"):
        assert name in commands
    certs = subprocess.run(
        [sys.executable, "-m", module, "certs", "--help"], capture_output=True, text=True, timeout=60
    )
    assert certs.returncode == 0 and "issue" in certs.stdout and "collector" in certs.stdout
