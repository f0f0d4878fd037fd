"""Append one phase of an nvidia-smi capture, in the layout of ../shared/fixtures/nvidia_smi_captures.

    python3 tools/smi_capture.py idle capture.txt     # before any load
    python3 tools/smi_capture.py load capture.txt     # while the GPU is busy

Each phase is `nvidia-smi -q` and one `--query-gpu` CSV of every field this driver answers
(the fields `--help-query-gpu` lists, less those it refuses), under the same section
headings the shared captures use, so tests/support/nvml_double.py reads ours as it reads
theirs. tools/gpu_session.sh runs it on a lent GPU machine.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

RULE = "#" * 80


def _smi(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nvidia-smi", *args], capture_output=True, text=True, timeout=60)


def fields() -> list[str]:
    """Every --query-gpu field this driver lists, less the ones it refuses to answer."""
    listed = re.findall(r'^"([^"]+)"', _smi("--help-query-gpu").stdout, re.M)
    names = list(dict.fromkeys(listed))
    for _ in range(50):  # the driver names one refused field an attempt
        got = _smi(f"--query-gpu={','.join(names)}", "--format=csv")
        bad = re.search(r'Field "([^"]+)" is not a valid field', got.stdout + got.stderr)
        if got.returncode == 0 or not bad:
            break
        names.remove(bad.group(1))
    return names


def section(title: str, command: str, body: str) -> str:
    return f"{RULE}\n# {title}\n# $ {command}\n{RULE}\n{body.rstrip()}\n\n\n"


def main() -> None:
    phase, out = sys.argv[1], Path(sys.argv[2])
    query = ",".join(fields())
    text = section(f"{phase} :: query (-q)", "nvidia-smi -q", _smi("-q").stdout)
    text += section(
        f"{phase} :: query-gpu (csv, what the exporter parses)",
        f"nvidia-smi --query-gpu={query} --format=csv",
        _smi(f"--query-gpu={query}", "--format=csv").stdout,
    )
    with out.open("a", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main()
