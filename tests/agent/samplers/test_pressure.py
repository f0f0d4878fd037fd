"""pressure: a kernel without PSI is an empty reading, not an error."""

from __future__ import annotations

from pathlib import Path

from ironsight.agent.samplers.base import Paths, SamplerContext
from ironsight.agent.samplers.pressure import PressureSampler


def test_pressure_missing_is_empty_not_error(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    s = PressureSampler(SamplerContext(paths=Paths(tmp_path / "proc", tmp_path / "sys")))
    assert s.sample().tables == {}
