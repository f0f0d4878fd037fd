"""The code stays ruff- and mypy --strict-clean (STYLE.md): CI fails otherwise."""

from __future__ import annotations

import subprocess
import sys

import pytest

from support.paths import ROOT

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "cmd",
    [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["tools/typecheck.py"]],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_clean(cmd: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, *(cmd if cmd[0].endswith(".py") else ["-m", *cmd])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
