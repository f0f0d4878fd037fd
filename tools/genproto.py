"""Regenerate the stubs of proto/ironsight/**/*.proto into the ironsight package (make proto).

proto/ holds only the contract; the generated modules land in ironsight/v1 and
ironsight/prompb, importable as ironsight.v1 and ironsight.prompb.

With --check, regenerate into a temporary folder and exit non-zero when the
committed stubs differ, so a stale stub fails the test suite.
"""

from __future__ import annotations

import filecmp
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE_ROOT = ROOT  # protoc writes ironsight/v1/... below it, by the .proto files' paths
SOURCES = sorted(PROTO_ROOT.glob("ironsight/v1/*.proto"))
# The kubelet's PodResources API (a client of it): its package stays v1, as the kubelet serves it.
KUBELET = sorted(PROTO_ROOT.glob("ironsight/kubelet/podresources/v1/*.proto"))
MESSAGES_ONLY = sorted(PROTO_ROOT.glob("ironsight/prompb/*.proto"))  # no services: no grpc stubs


def generate(out: Path) -> None:
    for sources, grpc_out in (
        (SOURCES, [f"--grpc_python_out={out}"]),
        (MESSAGES_ONLY, []),
        (KUBELET, [f"--grpc_python_out={out}"]),
    ):
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            *grpc_out,
            *[str(s) for s in sources],
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")


def main() -> int:
    if "--check" not in sys.argv:
        generate(PACKAGE_ROOT)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        stale = []
        for fresh in sorted(
            [
                *Path(tmp).glob("ironsight/v1/*"),
                *Path(tmp).glob("ironsight/prompb/*"),
                *Path(tmp).glob("ironsight/kubelet/podresources/v1/*"),
            ]
        ):
            committed = PACKAGE_ROOT / fresh.relative_to(tmp)
            if not committed.exists() or not filecmp.cmp(fresh, committed, shallow=False):
                stale.append(fresh.name)
        if stale:
            print("stale generated stubs: " + ", ".join(stale) + " (run: make proto)")
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
