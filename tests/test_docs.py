"""The docs keep up with the code: every threshold with its default."""

from __future__ import annotations

from ironsight.collector.detect.thresholds import Thresholds

from support.paths import ROOT


def test_readme_lists_every_threshold_with_its_default() -> None:
    import re
    from dataclasses import fields

    readme = (ROOT / "README.md").read_text()
    listed = dict(re.findall(r"`([a-z_0-9]+)=([0-9.]+)`", readme))
    t = Thresholds()
    assert {f.name: float(getattr(t, f.name)) for f in fields(t)} == {
        f.name: float(listed[f.name]) for f in fields(t) if f.name in listed
    }
