"""Fixtures the collector's tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ironsight.collector.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """An empty store on a real DuckDB file, closed after the test (a module may define its own)."""
    s = Store(tmp_path / "s.duckdb")
    yield s
    s.close()
