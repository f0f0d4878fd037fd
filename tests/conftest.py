"""Shared fixtures: fixture trees from ../shared, each test's agent state folder, a real collector process.

Helpers live in tests/support/ and are imported as support.* (pytest puts tests/ on the path).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.fixturetree import materialize, need_shared
from support.processes import CollectorProcess


@pytest.fixture(autouse=True)
def agent_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's agents spool under its own folder (as systemd's StateDirectory= would set)."""
    state = tmp_path / "agent-state"
    monkeypatch.setenv("STATE_DIRECTORY", str(state))
    return state


@pytest.fixture(scope="session")
def node_exporter_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return materialize(need_shared("node_exporter"), tmp_path_factory.mktemp("fx") / "node_exporter")


@pytest.fixture(scope="session")
def procfs_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return materialize(need_shared("procfs"), tmp_path_factory.mktemp("fx") / "procfs")


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[CollectorProcess]:
    c = CollectorProcess(tmp_path / "db" / "ironsight.duckdb", tmp_path / "collector.log").start()
    yield c
    c.stop()
