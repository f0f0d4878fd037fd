"""The docs keep up with the code: every command and flag documented, every threshold with its default.

As sqlite-utils does for its CLI: a command or flag added without a line in
docs/ fails here, so the reference never lags the code.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from dataclasses import fields

import click
import pytest

from ironsight.agent.main import parser as agent_parser
from ironsight.agent.record import parser as record_parser
from ironsight.cli.main import cli
from ironsight.collector.detect.thresholds import Thresholds
from ironsight.collector.flags import parser as collector_parser

from support.paths import ROOT

DOCS = ROOT / "docs"


def docs_text() -> str:
    return "\n".join(p.read_text() for p in sorted(DOCS.glob("*.md")))


def commands(group: click.Group, prefix: str = "ironsight") -> Iterator[tuple[str, click.Command]]:
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        yield path, command
        if isinstance(command, click.Group):
            yield from commands(command, path)


def flags(command: click.Command) -> list[str]:
    return [o for p in command.params if isinstance(p, click.Option) for o in p.opts if o.startswith("--")]


def argparse_flags(p: argparse.ArgumentParser) -> list[str]:
    return [o for a in p._actions for o in a.option_strings if o.startswith("--") and o != "--help"]


CLI = list(commands(cli))


def test_the_walk_finds_every_command_group() -> None:
    """The checks below would pass on an empty walk."""
    names = {path for path, _ in CLI}
    assert {"ironsight top", "ironsight certs", "ironsight certs issue", "ironsight doctor"} <= names
    assert len(names) >= 17
    assert "--collector" in flags(cli) and "--rw-nodes" not in flags(cli)


@pytest.mark.parametrize(("path", "command"), CLI, ids=[path for path, _ in CLI])
def test_every_cli_command_and_its_flags_are_documented(path: str, command: click.Command) -> None:
    text = docs_text()
    assert f"`{path}`" in text or f"{path} " in text, f"{path} is not in docs/"
    missing = [f for f in flags(command) if f not in text]
    assert missing == [], f"{path}: {missing} not in docs/"


def test_the_cli_group_options_are_documented() -> None:
    text = (DOCS / "cli.md").read_text()
    assert [f for f in flags(cli) if f not in text] == []


@pytest.mark.parametrize(
    ("program", "make"),
    [
        ("ironsight-agent", agent_parser),
        ("ironsight-collector", collector_parser),
        ("ironsight record", record_parser),
    ],
)
def test_every_daemon_flag_is_in_the_command_reference(program: str, make: object) -> None:
    text = (DOCS / "cli.md").read_text()
    options = argparse_flags(make())
    assert len(options) > 5
    # --collector.NAME / --no-collector.NAME stand for one pair per sampler.
    missing = [o for o in options if o not in text and not re.match(r"--(no-)?collector\.\w+$", o)]
    assert missing == [], f"{program}: {missing} not in docs/cli.md"


def test_every_threshold_is_listed_with_its_default() -> None:
    text = (DOCS / "detector.md").read_text()
    listed = dict(re.findall(r"`([a-z_0-9]+)=([0-9.]+)`", text))
    t = Thresholds()
    assert {f.name: float(getattr(t, f.name)) for f in fields(t)} == {
        f.name: float(listed[f.name]) for f in fields(t) if f.name in listed
    }


def test_the_readme_links_every_page_of_docs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert [p.name for p in sorted(DOCS.glob("*.md")) if f"docs/{p.name}" not in readme] == []
