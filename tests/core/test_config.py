"""TOML files and environment variables under the flags: every flag a key, flags over environment over
file, and every mistake one line naming the file (or variable), the key and what was expected."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ironsight.agent.main import parser as agent_parser
from ironsight.collector.flags import parser as collector_parser
from ironsight.core import config

from support.processes import BIN


def parse(make: object, tmp_path: Path, toml: str, argv: list[str], env: dict[str, str],
          monkeypatch: pytest.MonkeyPatch) -> object:  # fmt: skip
    (tmp_path / "c.toml").write_text(toml)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return config.parse(
        make(), ["--config", str(tmp_path / "c.toml"), *argv], Path("/nonexistent"), "IRONSIGHT_AGENT_"
    )


def test_file_environment_and_flags_in_that_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = ('collector = "127.0.0.1:7070"\ninterval = 0.5\nnode_id = "from-file"\nspool_max_bytes = 2000000\n'
            '[path]\nprocfs = "TREE"\n[samplers]\ngpu = false\nrdma = true\n').replace("TREE", str(tmp_path))  # fmt: skip
    args = parse(agent_parser, tmp_path, toml, ["--node-id", "from-flag"], {"IRONSIGHT_AGENT_INTERVAL": "2",
                 "IRONSIGHT_AGENT_NODE_ID": "from-env", "IRONSIGHT_AGENT_SAMPLERS_HWMON": "false"}, monkeypatch)  # fmt: skip
    assert args.collector == "127.0.0.1:7070" and args.spool_max_bytes == 2_000_000  # type: ignore[attr-defined]
    assert args.interval == 2.0  # type: ignore[attr-defined]  # the environment over the file
    assert args.node_id == "from-flag"  # type: ignore[attr-defined]  # the flag over both
    assert args.procfs == tmp_path  # type: ignore[attr-defined]
    assert (args.enable_gpu, args.enable_rdma, args.enable_hwmon) == (False, True, False)  # type: ignore[attr-defined]


def test_collector_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = ('insecure = true\nlisten = "127.0.0.1:7071"\n[threshold]\nstep_s = 20\nwindow_s = 60\n'
            '[remote_write_label]\ncluster = "eu1"\n')  # fmt: skip
    args = parse(collector_parser, tmp_path, toml, ["--threshold", "window_s=120"], {}, monkeypatch)
    assert args.insecure and args.listen == "127.0.0.1:7071"  # type: ignore[attr-defined]
    assert args.threshold == ["step_s=20", "window_s=60", "window_s=120"]  # type: ignore[attr-defined]  # last wins
    assert args.remote_write_label == ["cluster=eu1"]  # type: ignore[attr-defined]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("intervall = 1\n", "c.toml: unknown key 'intervall'"),
        ("interval = 100\n", "c.toml: interval: 100 is outside 0.1 to 60 seconds"),
        ('interval = "fast"\n', "c.toml: interval: 'fast' is not a number of seconds"),
        ("interval = \n", "c.toml: not valid TOML: Invalid value (at line 1, column 12)"),
        ("[samplers]\ngpu = 1\n", "c.toml: samplers.gpu: expected true or false, got 1"),
        (
            'log_level = "loud"\n',
            "c.toml: log_level: expected one of debug, info, warning, error, got 'loud'",
        ),
        ("collector = [1]\n", "c.toml: collector: expected a single value"),
    ],
)
def test_mistakes_are_one_line(tmp_path: Path, toml: str, message: str) -> None:
    (tmp_path / "c.toml").write_text(toml)
    proc = subprocess.run([str(BIN / "ironsight-agent"), "--config", str(tmp_path / "c.toml"), "--check-config"],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert proc.returncode == 2
    assert message in proc.stderr.strip().splitlines()[-1], proc.stderr


@pytest.mark.slow
def test_unreadable_file_and_bad_environment(tmp_path: Path) -> None:
    gone = subprocess.run([str(BIN / "ironsight-collector"), "--config", str(tmp_path / "none.toml")],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert gone.returncode == 2 and "none.toml: cannot read: No such file or directory" in gone.stderr
    env = subprocess.run([str(BIN / "ironsight-agent"), "--once"], capture_output=True, text=True, timeout=30,
                         env={"IRONSIGHT_AGENT_SAMPLERS_GPU": "maybe", "PATH": "/usr/bin"})  # fmt: skip
    assert env.returncode == 2 and "$IRONSIGHT_AGENT_SAMPLERS_GPU: expected true or false" in env.stderr


@pytest.mark.slow
def test_check_config_passes_a_good_file(tmp_path: Path) -> None:
    db = tmp_path / "x.duckdb"
    (tmp_path / "collector.toml").write_text(f'insecure = true\ndb = "{db}"\nlog_format = "json"\n')
    proc = subprocess.run([str(BIN / "ironsight-collector"), "--config", str(tmp_path / "collector.toml"),
                           "--check-config"], capture_output=True, text=True, timeout=30)  # fmt: skip
    assert proc.returncode == 0 and "configuration OK" in proc.stdout
    assert not (tmp_path / "x.duckdb").exists()  # checked, nothing opened
