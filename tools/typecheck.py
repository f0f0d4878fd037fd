"""mypy --strict over every module under its installed name (make typecheck).

The source folders are mapped onto one namespace by pyproject.toml's
[tool.setuptools.package-dir] (agent/ installs as ironsight.agent). mypy finds
modules by their folders and cannot follow that mapping, nor setuptools'
editable import hook, so this script hands mypy each file together with its
module name, read off the same table. tests/, bench/ and tools/ are checked
too, as the top-level modules pytest and python3 see them as.

    python tools/typecheck.py            # the whole tree
    python tools/typecheck.py agent/nvml.py core/trace.py   # only these (their imports still resolve)
"""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

from mypy import build
from mypy.errors import CompileError
from mypy.main import process_options
from mypy.modulefinder import BuildSource

ROOT = Path(__file__).resolve().parent.parent
# Checked as plain folders of scripts and test modules, each file a top-level module
# (pytest puts tests/ on the path for its helpers; bench/ and tools/ run as scripts).
SCRIPT_DIRS = ("tests", "bench", "tools")


def package_dirs() -> dict[str, Path]:
    table = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    return {package: ROOT / folder for package, folder in table.items()}


def _module_files(folder: Path) -> Iterator[Path]:
    """Each module once: a generated stub's .pyi stands in for its .py, whose code is not typed."""
    for path in sorted(folder.rglob("*.py")):
        stub = path.with_suffix(".pyi")
        yield stub if stub.exists() else path


def package_sources() -> Iterator[BuildSource]:
    mapping = package_dirs()
    mapped = set(mapping.values())
    for package, folder in mapping.items():
        for path in _module_files(folder):
            rel = path.relative_to(folder).with_suffix("")
            # A folder mapped on its own (ironsight/ holds no agent/, but check) is walked once, as itself.
            if any(parent in mapped and parent != folder for parent in path.parents):
                continue
            parts = [p for p in rel.parts if p != "__init__"]
            yield BuildSource(str(path), ".".join([package, *parts]))


def script_sources() -> Iterator[BuildSource]:
    """Test modules as tests.<folders>.<name> (a folder like tests/agent must not read as the agent
    package), their helpers as support.* (pytest puts tests/ on the path), bench/ and tools/ scripts
    as the top-level modules python3 runs them as."""
    for name in SCRIPT_DIRS:
        folder = ROOT / name
        for path in sorted(folder.rglob("*.py")):
            helper = name == "tests" and path.relative_to(folder).parts[0] == "support"
            base = ROOT if name == "tests" and not helper else folder
            rel = path.relative_to(base).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            yield BuildSource(str(path), ".".join(parts), base_dir=str(base))


def main(argv: list[str]) -> int:
    sources = [*package_sources(), *script_sources()]
    if argv:
        wanted = {str((Path.cwd() / a).resolve()) for a in argv}
        missing = wanted - {str(Path(s.path or "").resolve()) for s in sources}
        if missing:
            print(f"typecheck: not a module of the project: {', '.join(sorted(missing))}", file=sys.stderr)
            return 2
    _, options = process_options(["--config-file", str(ROOT / "pyproject.toml")], require_targets=False)
    try:
        result = build.build(sources, options)
    except CompileError as exc:
        print("\n".join(exc.messages), file=sys.stderr)
        return 1
    messages = result.errors
    if argv:
        keep = tuple(str(Path(a)) for a in argv)
        messages = [m for m in messages if m.startswith(keep)]
    for line in messages:
        print(line)
    files = len({s.path for s in sources})
    if any(": error:" in m for m in messages):
        print(f"typecheck: {sum(': error:' in m for m in messages)} errors in {files} files", file=sys.stderr)
        return 1
    print(f"Success: no issues found in {files} source files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
