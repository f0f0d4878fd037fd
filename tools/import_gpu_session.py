"""Bring a lent GPU machine's results (tools/gpu_session.sh) into tests/traces/h200/, serials masked.

    .venv/bin/python tools/import_gpu_session.py /work/.device/1        # $OUT of the session's run
    .venv/bin/python tools/import_gpu_session.py /work/.device/1 h200-copy.trace copy.jsonl

Copies the traces, the workloads' logs, the nvidia-smi log and capture, the agent's one-shot
answer and the NVML cost bench's; or, named after OUT, just those files (a run of some of
gpu_session.sh's steps: its capture, made idle only, must not replace one made under load).
GPU serial numbers are replaced by zeros everywhere, as the shared captures mask theirs (a
board's serial identifies the lender's hardware; nothing here reads it); the traces are
rewritten record by record, every other byte of their batches unchanged.
"""

from __future__ import annotations

import re
import sys
import tarfile
from pathlib import Path

from ironsight.core.trace import TraceWriter, read_all

DEST = Path(__file__).resolve().parent.parent / "tests" / "traces" / "h200"
TEXTS = (
    "burn.jsonl", "starved.jsonl", "lockstep.jsonl", "copy.jsonl", "transfer.jsonl", "smi-log.csv",
    "agent-once.prom", "doctor.txt", "nvml-calls.json",
)  # fmt: skip


def _mask(text: str, serials: set[str]) -> str:
    for serial in serials:
        text = text.replace(serial, "0" * len(serial))
    return text


def main() -> None:
    src, only = Path(sys.argv[1]), set(sys.argv[2:])
    DEST.mkdir(parents=True, exist_ok=True)
    with tarfile.open(src / "report.tar.gz") as tar:
        files = {Path(m.name).name: tar.extractfile(m) for m in tar.getmembers() if m.isfile()}
        texts = {name: f.read().decode() for name, f in files.items() if f is not None}
    capture = texts["capture.txt"]
    serials = set(re.findall(r"Serial Number\s+:\s+(\d+)", capture))
    driver = re.search(r"Driver Version\s+:\s+(\S+)", capture)
    for name in TEXTS:
        if name in texts and (not only or name in only):
            (DEST / name).write_text(_mask(texts[name], serials))
    if not only:
        (DEST / f"linux-x86_64__nvidia-h200__{driver.group(1) if driver else 'unknown'}.txt").write_text(
            _mask(capture, serials)
        )
    for trace in sorted(t for t in src.glob("h200-*.trace") if not only or t.name in only):
        header, batches = read_all(trace)
        for node in [*header.nodes, *(b.node for b in batches if b.HasField("node"))]:
            for device in node.devices:
                if device.attrs.get("serial") in serials:
                    device.attrs["serial"] = "0" * len(device.attrs["serial"])
        out = DEST / trace.name
        out.unlink(missing_ok=True)
        with TraceWriter(out, header, level=19) as w:
            for batch in batches:
                w.write(batch)
        left = [s for s in serials if s.encode() in out.read_bytes()]
        print(
            f"{out.relative_to(DEST.parent.parent.parent)}: {len(batches)} batches{' (serial left!)' if left else ''}"
        )


if __name__ == "__main__":
    main()
