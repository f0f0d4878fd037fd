"""The fixture copies: the archive's link files become links; real symlinks are left alone."""

from __future__ import annotations

import os
from pathlib import Path

from support.fixturetree import materialize


def test_real_symlinks_are_copied_as_links_and_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("not ours")
    outside.chmod(0o600)
    src = tmp_path / "src"
    (src / "sys/devices/platform/coretemp.0/hwmon/hwmon0").mkdir(parents=True)
    (src / "sys/devices/platform/coretemp.0/hwmon/hwmon0/temp1_input").write_text("45000\n")
    (src / "sys/class/hwmon").mkdir(parents=True)
    # As the ttar archive stores a link: a small file holding its target.
    (src / "sys/class/hwmon/hwmon0").write_text("../../devices/platform/coretemp.0/hwmon/hwmon0")
    os.symlink(outside, src / "sys/escape")  # a real link out of the tree
    os.symlink("/nonexistent/target", src / "sys/dangling")
    (src / "sys/readonly").write_text("1\n")
    (src / "sys/readonly").chmod(0o444)
    dst = materialize(src, tmp_path / "dst")
    assert (dst / "sys/class/hwmon/hwmon0").is_symlink()
    assert (dst / "sys/class/hwmon/hwmon0/temp1_input").read_text() == "45000\n"
    assert (
        os.readlink(dst / "sys/escape") == str(outside)
        and os.readlink(dst / "sys/dangling") == "/nonexistent/target"
    )
    assert outside.stat().st_mode & 0o777 == 0o600  # what a link points to is not touched
    assert (dst / "sys/readonly").stat().st_mode & 0o777 == 0o644
