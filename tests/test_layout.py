"""The package layout holds: one installed namespace, and imports that follow the layers.

docs/architecture.md states the rule this file enforces: the core and the wire
stubs import neither daemon; the agent and the collector import only the core
(never each other); the CLI and the offline tools sit on top and may import
everything. And every first-party import goes through the ironsight namespace,
so nothing works from a checkout that would break once installed.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from support.paths import ROOT

PACKAGE_DIRS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]

# Which layers each layer may import (its own always). The root package holds the wire stubs.
CORE = {"ironsight", "ironsight.v1", "ironsight.prompb", "ironsight.core"}
ALLOWED = {
    "ironsight.core": CORE,
    "ironsight.agent": CORE | {"ironsight.kubelet"},  # the agent is a client of the kubelet's API
    "ironsight.collector": CORE,
    "ironsight.cli": None,  # anything
    "ironsight.offline": None,
}
TOP_LEVEL_FOLDERS = {Path(folder).parts[0] for folder in PACKAGE_DIRS.values()}


def modules() -> list[tuple[str, Path]]:
    """(installed module name, file) for every module of the package, from the package-dir table."""
    out = []
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "_pb2" in path.name:
                continue
            rel = path.relative_to(ROOT / folder).with_suffix("")
            out.append((".".join([package, *[p for p in rel.parts if p != "__init__"]]), path))
    return out


def imported(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            found.append((node.lineno, "." * node.level + (node.module or "")))
    return found


def layer(module: str) -> str:
    for name in sorted(ALLOWED, key=len, reverse=True):
        if module == name or module.startswith(name + "."):
            return name
    # ironsight, ironsight.v1.*, ironsight.prompb.*: the contract's generated side, part of the core.
    return "ironsight.core"


def test_every_import_respects_the_layers() -> None:
    broken = []
    for module, path in modules():
        own = layer(module)
        allowed = ALLOWED[own]
        for line, name in imported(path):
            where = f"{path.relative_to(ROOT)}:{line} imports {name}"
            if name.startswith("."):
                broken.append(f"{where}: relative imports hide the layer; spell the ironsight.* name")
                continue
            if not name.startswith("ironsight"):
                continue
            target = layer(name)
            if allowed is not None and target != own and target not in allowed:
                broken.append(f"{where}: {own} may import only {sorted(allowed)}")
    assert broken == []


def test_the_rule_catches_a_daemon_importing_the_other(tmp_path: Path) -> None:
    """The check above would pass vacuously if layer() put everything in one bucket."""
    assert layer("ironsight.collector.store") == "ironsight.collector"
    assert layer("ironsight.agent.samplers.gpu") == "ironsight.agent"
    assert layer("ironsight.v1.telemetry_pb2") == "ironsight.core"
    assert layer("ironsight.cli.main") == "ironsight.cli"
    bad = tmp_path / "bad.py"
    bad.write_text("from ironsight.agent.exposition import render\nimport ironsight.collector.store\n")
    names = [n for _, n in imported(bad)]
    assert names == ["ironsight.agent.exposition.render", "ironsight.collector.store"]
    assert "ironsight.agent" not in (ALLOWED["ironsight.collector"] or set())


@pytest.mark.parametrize("folder", ["tests", "bench", "tools", *sorted(TOP_LEVEL_FOLDERS)])
def test_first_party_code_is_imported_by_its_installed_name(folder: str) -> None:
    """`import agent.x` works from the repo root by accident (the cwd is on sys.path) but not installed."""
    bare = {Path(f).parts[0] for f in PACKAGE_DIRS.values()} - {"ironsight"}
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        if ".venv" in path.parts:
            continue
        for line, name in imported(path):
            if name.split(".")[0] in bare:
                found.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert found == []


@pytest.mark.slow
def test_the_wheel_installs_one_namespace(tmp_path: Path) -> None:
    """A built wheel holds ironsight/ and its dist-info, every source module at its mapped path, and the data files."""
    # From a copy of the checkout's files: setuptools builds in ./build, whose leftovers would leak into the wheel.
    src = tmp_path / "src"
    shutil.copytree(
        ROOT, src, ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__", "data")
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=240,
    )
    (wheel,) = tmp_path.glob("ironsight-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"ironsight"}
    expected = set()
    for package, folder in PACKAGE_DIRS.items():
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in {".py", ".pyi", ".sql", ".typed"} and "__pycache__" not in path.parts:
                expected.add("/".join([*package.split("."), *path.relative_to(ROOT / folder).parts]))
    assert expected - set(names) == set()
    assert "ironsight/collector/migrations/0001_initial.sql" in names
    assert "ironsight/v1/telemetry_pb2.pyi" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "ironsight-agent = ironsight.agent.main:main" in text
    assert "ironsight-collector = ironsight.collector.main:main" in text
    assert "ironsight = ironsight.cli.main:main" in text


def test_the_installed_package_is_this_checkout() -> None:
    """dev.py's editable install maps each subpackage onto its folder here, so an edit needs no reinstall."""
    import importlib

    for package, folder in PACKAGE_DIRS.items():
        module = importlib.import_module(package)
        assert Path(str(module.__file__)).parent == ROOT / folder, package


def test_no_function_in_the_package_runs_over_80_lines() -> None:
    """A function that long does several jobs; split it by concern (the simulator's tick, the store)."""
    long = []
    for module, path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > 80:
                    long.append(f"{module}.{node.name}: {length} lines")
    assert long == []


@pytest.mark.slow
def test_every_module_imports_on_its_own() -> None:
    """An import cycle shows only when a module is imported first (ironsight.agent.nvml before the samplers
    did): each module in a fresh interpreter, as `python -m` or a tool importing just it would."""
    names = [module for module, _ in modules() if not module.endswith("__main__")]  # that one runs the CLI
    code = (  # four at a time: each is a fresh interpreter waiting mostly on imports from disk
        "import subprocess, sys\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "run = lambda m: subprocess.run([sys.executable, '-c', f'import {m}'], capture_output=True).returncode\n"
        "codes = list(ThreadPoolExecutor(4).map(run, sys.argv[1:]))\n"
        "print('\\n'.join(m for m, c in zip(sys.argv[1:], codes) if c))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=600)
    assert out.stdout.split() == []
