#!/usr/bin/env python3
"""Set up and run ironsight from a fresh checkout with nothing but Python 3.11+.

    python3 dev.py up     # venv + install, then collector and agent here, live view (Ctrl-C stops)
    python3 dev.py test   # venv + install with test extras, then the whole test suite

Everything lands in .venv beside this file; re-runs reuse it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PY = VENV / "bin" / "python"


def ensure_venv(extras: str) -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - this script must say so on old Pythons
        sys.exit(f"ironsight needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not PY.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    # Reinstall only when pyproject.toml (or the extras asked for) changed.
    stamp = VENV / f".installed-{extras or 'base'}"
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    target = f".[{extras}]" if extras else "."
    print(f"installing ironsight{'[' + extras + ']' if extras else ''} into {VENV}", flush=True)
    subprocess.run([str(PY), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True, cwd=ROOT)
    subprocess.run([str(PY), "-m", "pip", "install", "-q", "-e", target], check=True, cwd=ROOT)
    stamp.write_text(digest)


def main() -> int:
    cmd, rest = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if cmd == "up":
        ensure_venv("")
        os.execv(str(VENV / "bin" / "ironsight"), ["ironsight", "up", *rest])
    if cmd == "test":
        ensure_venv("test")
        # Two test processes (pytest-xdist): most of the suite's time is spent waiting on real processes,
        # clocks and networks, so even 2 cores run two at once in about half the time. The slowest tests
        # are listed at the end: the suite must stay well under CI's 15 minutes.
        workers = ["-n", "2", "--dist", "worksteal"] if not any(a.startswith("-n") for a in rest) else []
        return subprocess.run(
            [str(PY), "-m", "pytest", *workers, "--durations=15", *rest], cwd=ROOT
        ).returncode
    print(__doc__.strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
