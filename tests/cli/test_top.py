"""`ironsight top` read as text: a fleet caught mid-incident (one node overheating, one starved by its
storage), drawn at 80, 120 and 200 columns, and driven by keys in a real terminal under tmux."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from rich.cells import cell_len
from rich.console import Console, RenderableType

from ironsight.cli.backend import LocalBackend
from ironsight.cli.top.fleet import View, fleet_view
from ironsight.cli.top.model import Finding, Snapshot
from ironsight.cli.top.node import node_view
from ironsight.cli.top.session import Session

from support.fleet import fleet_store
from support.processes import BIN, run_cli

WIDTHS = (80, 120, 200)
NOW = datetime(2026, 11, 1, 0, 10, 5)


@pytest.fixture(scope="module")
def fleet_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fleet_store(tmp_path_factory.mktemp("fleet"))


@pytest.fixture
def session(fleet_db: Path) -> Iterator[Session]:
    s = Session(LocalBackend(fleet_db))
    yield s
    s.close()


def text(renderable: RenderableType, width: int) -> list[str]:
    console = Console(width=width, record=True, no_color=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(renderable)
    return console.export_text().splitlines()


def rows_of(lines: list[str]) -> list[list[str]]:
    """The table's lines, split on runs of spaces (the first word is the node)."""
    return [line.lstrip("> ").split() for line in lines[2:-1]]


@pytest.mark.parametrize("width", WIDTHS)
def test_fleet_puts_findings_first_and_fits_the_width(session: Session, width: int) -> None:
    lines = text(fleet_view(session.snapshot(), View(width=width), NOW), width)
    assert all(cell_len(line) <= width for line in lines)
    assert lines[0].startswith("ironsight top  6 nodes  12 GPUs")
    assert "3 open findings (3 critical)" in lines[0] or width == 80  # 80 columns cut the title short
    rows = rows_of(lines)
    # io-1 has two critical findings open (starved, GPUs 0 and 1), hot-1 one (thermal); then the
    # healthy nodes by lowest GPU utilization.
    assert [r[0] for r in rows[:2]] == ["io-1", "hot-1"]
    assert sorted(r[0] for r in rows[2:]) == ["hot-0", "hot-2", "io-0", "io-2"]
    assert rows[0][1:4] == ["!!", "starved", "+1"] and rows[1][1:3] == ["!!", "thermal"]
    assert all(r[1].endswith("%") or r[1].isdigit() for r in rows[2:])  # no marker on healthy nodes
    assert "89C" in rows[1]  # the hottest GPU of hot-1
    assert lines[-1] == "nodes 1-6 of 6"
    if width == 200:
        jobs = {r[0]: r[-1] for r in rows}
        assert jobs["io-1"] == "77" and jobs["hot-1"] == "4242"


@pytest.mark.parametrize("width", WIDTHS)
def test_node_view_decodes_reasons_beside_its_finding(session: Session, width: int) -> None:
    snap = session.snapshot("hot-1")
    lines = text(node_view(snap, "hot-1", View(width=width), NOW), width)
    assert all(cell_len(line) <= width for line in lines)
    assert lines[0].startswith("node hot-1  every 1 s  job 4242")
    gpu = {line.split()[0]: line for line in lines[2:4]}
    assert "SW thermal, HW thermal" in gpu["1"] and "0x" not in gpu["1"]
    assert gpu["0"].rstrip().endswith("none")  # GPU 0 runs at its full clock
    assert "89" in gpu["1"] and ("89/87C" in gpu["1"] if width >= 120 else "89C" in gpu["1"])
    finding = next(line for line in lines if "#3" in line)
    assert finding.split()[:5] == ["#3", "!!", "thermal", "(critical)", "on"] and "GPU 1" in finding
    assert any(line.startswith("host CPU") for line in lines)
    assert any(line.startswith("disk nvme0n1") for line in lines)
    procs = [line.split() for line in lines if "python3" in line]
    assert [p[:4] for p in procs] == [["0", "4000", "python3", "4242"], ["1", "4010", "python3", "4242"]]
    # The last minutes of utilization: a sparkline cell per five seconds.
    assert any(ch in gpu["0"] for ch in "▁▂▃▄▅▆▇█")


def queries_of(session: Session) -> list[str]:
    """Every SQL statement the session sends from now on, in order."""
    calls: list[str] = []
    inner = session.backend.sql

    def counted(query: str, max_rows: int = 100_000) -> pa.Table:
        calls.append(query)
        return inner(query, max_rows)

    session.backend.sql = counted  # type: ignore[method-assign]
    return calls


def test_sparklines_read_whole_once_then_only_their_newest_bucket(session: Session, fleet_db: Path) -> None:
    calls = queries_of(session)
    first = session.snapshot("hot-1").detail
    again = session.snapshot("hot-1").detail
    assert first is not None and again is not None
    assert [g["history"] for g in first["gpus"]] == [g["history"] for g in again["gpus"]]
    # The newest sample is 00:09:59: its 5 s bucket began at 00:09:55, which is all the second asks.
    assert "time >= TIMESTAMP '2026-11-01 00:09:55'" in calls[-1]
    # Each cell the mean utilization of its 5 s, oldest first, the newest ending at 00:09:59.
    con = duckdb.connect(str(fleet_db), read_only=True)
    want = con.execute(
        """SELECT avg(util_gpu_percent) FROM gpu WHERE node = 'hot-1' AND device = '1'
           AND time >= TIMESTAMP '2026-11-01 00:05:00' GROUP BY floor(epoch(time) / 5) ORDER BY floor(epoch(time) / 5)"""
    ).fetchall()
    con.close()
    got = first["gpus"][1]["history"]
    assert len(got) == 60 and got == pytest.approx([w for (w,) in want])


def test_starved_node_shows_its_storage(session: Session) -> None:
    lines = text(node_view(session.snapshot("io-1"), "io-1", View(width=120), NOW), 120)
    assert [line.split()[2] for line in lines if line.lstrip().startswith("#")] == ["data_starvation"] * 2
    psi = next(line for line in lines if line.startswith("host"))
    io = float(psi.split(" io ")[1].split("%")[0])
    assert io >= 30  # io pressure up while the loader waits for its reads
    disk = next(line for line in lines if line.startswith("disk"))
    assert float(disk.split("busy ")[1].rstrip("%")) >= 90


@pytest.mark.parametrize("width", WIDTHS)
def test_a_line_per_job(session: Session, width: int) -> None:
    lines = text(fleet_view(session.snapshot(), View(width=width, by_job=True), NOW), width)
    assert all(cell_len(line) <= width for line in lines)
    assert lines[1].split() == ["job", "findings", "nodes", "gpus", "GPU", "util", "power", "hot"]
    # Job 77 holds the starved node (two critical findings), 4242 the hot one (one).
    assert [line.split()[:6] for line in lines[2:4]] == [
        ["77", "!!", "starved", "+1", "3", "6"],
        ["4242", "!!", "thermal", "3", "6", "100%"],
    ]
    assert lines[3].split()[-1] == "89C" and lines[-1] == "jobs 1-2 of 2"
    # Its nodes, chosen from those lines: the fleet view of that job only.
    nodes = text(fleet_view(session.snapshot(), View(width=width, within="77"), NOW), width)
    assert [r[0] for r in rows_of(nodes)] == ["io-1", "io-2", "io-0"] and "job 77" in nodes[0]


def test_one_query_per_refresh_whatever_the_view(session: Session) -> None:
    calls = queries_of(session)
    session.snapshot()
    session.snapshot("hot-1")
    session.snapshot()
    # The first refresh guesses that the newest sample is within the hour; this store's are a month
    # old, so it asks once more without that bound. From then on: one query per refresh.
    assert len(calls) == 4 == session.queries
    assert "TIMESTAMP '2026-1" in calls[0] and "WHERE time >= TIMESTAMP" not in calls[1].split("jobs AS")[0]
    calls = calls[1:]
    # After the first, only the newest rows: since ten minutes before the newest sample (00:09:59), and
    # the last two samples of a 1 s node lie within 5 s.
    assert (
        "WHERE time >= TIMESTAMP '2026-10-31 23:59:59'" in calls[1]
        and "time >= TIMESTAMP '2026-11-01 00:09:54'" in calls[1]
    )


def _node(name: str, util: float | None, seen: datetime = NOW) -> dict[str, object]:
    return {"node": name, "util_pct": util, "gpus": 8, "last_seen": seen, "interval_s": 1.0}


def _finding(i: int, node: str, severity: str) -> Finding:
    return Finding(i, "thermal", severity, node, "0", NOW - timedelta(minutes=i), None, None)


def test_attention_order_severity_then_quiet_then_lowest_utilization() -> None:
    nodes = [
        _node("a", 90.0),
        _node("b", 10.0),
        _node("c", 50.0),
        _node("d", None),
        _node("e", 99.0, NOW - timedelta(minutes=2)),
        _node("f", 40.0),
    ]
    snap = Snapshot(
        NOW,
        nodes,
        [_finding(1, "a", "warning"), _finding(2, "c", "critical"), _finding(3, "f", "pre-warning")],
    )
    assert [n["node"] for n in snap.attention()] == ["c", "a", "f", "e", "b", "d"]
    assert [n["node"] for n in snap.attention("[a-c]")] == ["c", "a", "b"]
    assert [n["node"] for n in snap.attention("d")] == ["d"]
    lines = text(fleet_view(snap, View(width=80), NOW), 80)
    assert "quiet 2m" in next(line for line in lines if line.startswith("e "))


def test_a_node_the_collector_stopped_hearing_from_goes_up_the_list(fleet_db: Path, tmp_path: Path) -> None:
    db = tmp_path / "quiet.duckdb"
    shutil.copy(fleet_db, db)
    con = duckdb.connect(str(db))
    con.execute("UPDATE nodes SET last_seen = last_seen - INTERVAL 2 MINUTE WHERE node = 'hot-2'")
    con.close()
    s = Session(LocalBackend(db))
    try:
        rows = rows_of(text(fleet_view(s.snapshot(), View(width=120), NOW), 120))
    finally:
        s.close()
    assert [r[0] for r in rows[:3]] == ["io-1", "hot-1", "hot-2"] and rows[2][1:3] == ["quiet", "2m"]


def test_a_thousand_nodes_page_around_the_cursor() -> None:
    snap = Snapshot(NOW, [_node(f"gpu-{i:04d}", float(i % 100)) for i in range(1000)], [])
    view = View(width=80, height=24, cursor=500)
    lines = text(fleet_view(snap, view, NOW), 80)
    assert len(lines) == 24 and all(cell_len(line) <= 80 for line in lines)
    marked = [line for line in lines if line.startswith(">")]
    assert len(marked) == 1
    assert lines[-1].startswith("nodes 484-504 of 1000  page 24/48")


def test_text_output_for_scripts(fleet_db: Path) -> None:
    out = run_cli("--db", str(fleet_db), "top", "--count", "1", "--filter", "hot-*").stdout
    assert [line.split()[0] for line in out.splitlines()[2:-1]] == ["hot-1", "hot-0", "hot-2"]
    # Colour where the terminal takes it (forced here: rich colours only a terminal), none with --no-color.
    cmd = [str(BIN / "ironsight"), "--db", str(fleet_db), "top", "--count", "1"]
    env = {**os.environ, "FORCE_COLOR": "1", "COLUMNS": "120"}
    coloured = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    plain = subprocess.run([*cmd, "--no-color"], capture_output=True, text=True, env=env, check=True).stdout
    assert "\x1b[1;31m!! thermal" in coloured  # critical: bold red
    assert not re.search(r"\x1b\[[0-9;]*(3[0-9]|9[0-7])m", plain) and "!! thermal" in plain
    node = run_cli("--db", str(fleet_db), "top", "--count", "1", "--node", "io-1").stdout
    assert "#1 !! data_starvation (critical) on GPU 1" in node
    bad = run_cli("--db", str(fleet_db), "top", "--refresh", "0", check=False)
    assert bad.returncode == 2 and "--refresh" in bad.stderr
    nowhere = run_cli("--collector", "127.0.0.1:1", "--insecure", "top", "--count", "1", check=False)
    assert nowhere.returncode == 1 and nowhere.stderr.strip() == (
        "Error: collector 127.0.0.1:1 is unreachable; is ironsight-collector running?"
    )
    unknown = run_cli("--db", str(fleet_db), "top", "--count", "1", "--node", "gpu-9").stdout
    assert unknown.strip() == "node gpu-9  not in the store (yet)"


class Tmux:
    """A real terminal: a private tmux server running one command in a window of a given size."""

    def __init__(self, command: list[str], width: int, height: int) -> None:
        self.socket = f"ironsight-test-{uuid.uuid4().hex[:8]}"
        self.tmux(
            "new-session", "-d", "-s", "top", "-x", str(width), "-y", str(height),
            " ".join(command) + "; echo EXITED $?; sleep 60",
        )  # fmt: skip

    def tmux(self, *args: str) -> str:
        out = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10)
        return out.stdout

    def screen(self) -> list[str]:
        return self.tmux("capture-pane", "-p", "-t", "top").splitlines()

    def wait(self, what: str, timeout: float = 20.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.screen()
            if any(what in line for line in lines):
                return lines
            time.sleep(0.2)
        raise AssertionError(f"{what!r} never showed; the screen:\n" + "\n".join(self.screen()))

    def keys(self, *keys: str) -> None:
        for k in keys:
            self.tmux("send-keys", "-t", "top", k)
            time.sleep(0.15)

    def close(self) -> None:
        self.tmux("kill-server")


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (.ci/run installs it)")
def test_in_a_real_terminal_keys_resize_and_quit(fleet_db: Path) -> None:
    term = Tmux([str(BIN / "ironsight"), "--db", str(fleet_db), "top", "--refresh", "0.5"], 100, 30)
    try:
        lines = term.wait("nodes 1-6 of 6")
        assert lines[2].startswith("> io-1") and "!! starved +1" in lines[2]
        term.keys("Down", "Enter")
        lines = term.wait("SW thermal, HW thermal")
        assert lines[0].startswith("node hot-1")
        gpu1 = next(line for line in lines if line.lstrip().startswith("1 "))
        assert "SW thermal, HW thermal" in gpu1
        assert any("> #3 !! thermal (critical) on GPU 1" in line for line in lines)
        term.keys("e")
        lines = term.wait("finding 3: thermal (critical) on hot-1 device 1")
        assert any("temperature_max_c" in line for line in lines)
        term.keys("Escape")
        term.wait("> #3 !! thermal")
        term.keys("Escape")
        term.wait("nodes 1-6 of 6")
        term.keys("g")
        lines = term.wait("jobs 1-2 of 2")
        assert lines[2].startswith("> 77 ") and lines[3].lstrip().startswith("4242")
        term.keys("Enter")
        lines = term.wait("nodes 1-3 of 3")
        assert "job 77" in lines[0] and lines[2].startswith("> io-1")
        term.keys("Escape")
        term.wait("jobs 1-2 of 2")
        term.keys("g")
        term.wait("nodes 1-6 of 6")
        term.keys("/", "i", "o", "-", "*", "Enter")
        lines = term.wait("nodes 1-3 of 3 (filter 'io-*', 6 in all)")
        assert [line.split()[1] for line in lines[2:5]] == ["io-1", "io-2", "io-0"] or [
            line.lstrip("> ").split()[0] for line in lines[2:5]
        ] == ["io-1", "io-2", "io-0"]
        term.tmux("resize-window", "-t", "top", "-x", "80", "-y", "24")
        time.sleep(1.0)
        lines = term.wait("nodes 1-3 of 3")
        assert all(cell_len(line) <= 80 for line in lines)
        term.keys("q")
        term.wait("EXITED 0")
    finally:
        term.close()
