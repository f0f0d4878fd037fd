"""Regenerate the simulated part of the committed trace corpus in tests/traces/.

    .venv/bin/python tools/make_traces.py

tests/test_traces.py checks the committed files decode to exactly what this
produces, so a change to the simulator fails until the corpus is regenerated.
"""

from __future__ import annotations

from pathlib import Path

from ironsight.core.trace import TraceWriter
from ironsight.offline.simulate import simulate

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "traces"

# name -> simulate() arguments. Small on purpose: kilobytes, not megabytes.
SIMULATED = {
    "healthy-2n2g.trace": {
        "scenario": "healthy",
        "nodes": 2,
        "gpus": 2,
        "duration_s": 600,
        "interval_s": 2.0,
        "seed": 11,
    },
    "mixed-2n2g.trace": {
        "scenario": "mixed",
        "nodes": 2,
        "gpus": 2,
        "duration_s": 600,
        "interval_s": 2.0,
        "seed": 12,
    },
    "xid-1n2g.trace": {
        "scenario": "xid",
        "nodes": 1,
        "gpus": 2,
        "duration_s": 300,
        "interval_s": 2.0,
        "seed": 13,
    },
}


def write(path: Path, args: dict[str, object]) -> None:
    header, batches = simulate(**args)  # type: ignore[arg-type]
    path.unlink(missing_ok=True)
    with TraceWriter(path, header) as writer:
        for batch in batches:
            writer.write(batch)


def main() -> None:
    CORPUS.mkdir(parents=True, exist_ok=True)
    for name, args in SIMULATED.items():
        write(CORPUS / name, args)
        print(f"{name}: {(CORPUS / name).stat().st_size} bytes")


if __name__ == "__main__":
    main()
