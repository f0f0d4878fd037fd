"""Copies of ../shared/fixtures trees with their symlinks restored, for samplers to read.

The shared trees were unpacked from ttar archives that store a symlink as a
plain file holding its target ("../../devices/platform/coretemp.0/hwmon/hwmon0").
Sysfs is made of such links, so tests copy a tree to a temporary folder and
turn those files back into links. Nothing is copied into the project.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[3] / "shared"  # ../shared beside the checkout
FIXTURES = SHARED / "fixtures"


def _looks_like_link(path: Path, root: Path) -> str | None:
    try:
        if path.stat().st_size > 512:
            return None
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return None
    if "\n" in text or not text.startswith("../"):
        return None
    target = (path.parent / text).resolve()
    if not target.exists() or root.resolve() not in target.parents:
        return None
    return text


def materialize(src: Path, dst: Path) -> Path:
    """A copy of src at dst with the archive's link files turned back into links. Real symlinks (a checkout
    of the fixtures may hold some, pointing anywhere) are copied as they are and never followed."""
    shutil.copytree(src, dst, symlinks=True)
    for dirpath, _dirnames, filenames in os.walk(dst):
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                continue
            os.chmod(path, 0o644)  # read-only in a checkout without write bits; readable in any case
            target = _looks_like_link(path, dst)
            if target is not None:
                path.unlink()
                path.symlink_to(target.rstrip("/"))
    return dst


def need_shared(name: str) -> Path:
    path = FIXTURES / name
    if not path.is_dir():
        pytest.skip(f"../shared/fixtures/{name} is not beside the project (see tests/support/fixturetree.py)")
    return path


def write(root: Path, rel: str, text: str) -> None:
    """A file at root/rel with its folders, for a tree made by hand."""
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
