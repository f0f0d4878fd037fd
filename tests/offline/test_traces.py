"""Traces: the committed corpus, record, replay into a real collector or a file, damaged files, the simulator."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from ironsight.core.columnar import to_arrow
from ironsight.core.schema import TABLES
from ironsight.core.trace import TraceError, TraceWriter, iter_batches, read_all, read_header, verify
from ironsight.offline.simulate import SCENARIOS, simulate
from ironsight.offline.simulate.hardware import H100
from ironsight.v1 import telemetry_pb2 as pb

from support.fixturetree import need_shared
from support.paths import CORPUS, ROOT
from support.processes import BIN, CollectorProcess, run_cli

sys.path.insert(0, str(ROOT / "tools"))

from make_traces import SIMULATED


def write_sim(path: Path, **args: object) -> pb.TraceHeader:
    header, batches = simulate(**args)  # type: ignore[arg-type]
    with TraceWriter(path, header) as w:
        for b in batches:
            w.write(b)
    return header


def trace_tables(path: Path) -> dict[str, pa.Table]:
    parts: dict[str, list[pa.Table]] = {}
    for b in iter_batches(path):
        for t in b.tables:
            parts.setdefault(t.name, []).append(to_arrow(b.node_id, t))
    return {
        k: pa.concat_tables(v).sort_by(
            [("node", "ascending"), ("device", "ascending"), ("time", "ascending")]
        )
        for k, v in parts.items()
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SIMULATED))
def test_committed_corpus_is_what_the_simulator_makes(name: str, tmp_path: Path) -> None:
    fresh = tmp_path / name
    write_sim(fresh, **SIMULATED[name])
    committed_header, committed = read_all(CORPUS / name)
    fresh_header, batches = read_all(fresh)
    assert committed_header == fresh_header, "regenerate with: .venv/bin/python tools/make_traces.py"
    assert committed == batches


@pytest.mark.slow
def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    args = {"scenario": "mixed", "nodes": 2, "gpus": 1, "duration_s": 120, "interval_s": 1.0}
    write_sim(tmp_path / "a", seed=5, **args)
    write_sim(tmp_path / "b", seed=5, **args)
    write_sim(tmp_path / "c", seed=6, **args)
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()
    assert (tmp_path / "a").read_bytes() != (tmp_path / "c").read_bytes()


def test_header_describes_nodes_hardware_and_labels() -> None:
    header, offset = read_header(CORPUS / "mixed-2n2g.trace")
    assert header.version == 1 and header.interval_s == 2.0 and offset > 16
    assert [n.node_id for n in header.nodes] == ["sim-000", "sim-001"]
    assert {d.attrs["model"] for n in header.nodes for d in n.devices if d.kind == "gpu"} == {H100.model}
    kinds = {label.kind for label in header.labels}
    assert kinds == {"data_starvation", "thermal", "network_jitter", "power_cap"}
    starve = [label for label in header.labels if label.kind == "data_starvation"]
    assert starve and all(label.cause == "storage" and label.end_ns > label.start_ns for label in starve)


def damaged(tmp_path: Path) -> dict[str, Path]:
    data = (CORPUS / "xid-1n2g.trace").read_bytes()
    out = {}
    for name, content in {
        "truncated": data[: len(data) * 2 // 3],
        "cut-end": data[:-3],
        "corrupt": data[:5000] + bytes(b ^ 0x5A for b in data[5000:5100]) + data[5100:],
        "newer": data[:8] + (9).to_bytes(4, "little") + data[12:],
        "not-a-trace": b"hello world" * 10,
    }.items():
        out[name] = tmp_path / f"{name}.trace"
        out[name].write_bytes(content)
    return out


def test_damaged_files_are_refused_clearly(tmp_path: Path) -> None:
    files = damaged(tmp_path)
    messages = {}
    for name, path in files.items():
        with pytest.raises(TraceError) as err:
            verify(path)
        messages[name] = str(err.value)
    assert "truncated" in messages["truncated"] and "truncated" in messages["cut-end"]
    assert "corrupt" in messages["corrupt"] or "checksum" in messages["corrupt"]
    assert "version 9 is newer than this ironsight reads (1)" in messages["newer"]
    assert "not an ironsight trace" in messages["not-a-trace"]


@pytest.mark.slow
def test_a_damaged_trace_loads_nothing_into_a_file(tmp_path: Path) -> None:
    files = damaged(tmp_path)
    db = tmp_path / "off.duckdb"
    # A good file before the bad one: still nothing may land.
    result = run_cli(
        "replay", str(CORPUS / "healthy-2n2g.trace"), str(files["truncated"]), "--db", str(db), check=False
    )
    assert result.returncode == 1
    assert result.stderr.strip().startswith("Error:") and "truncated" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not db.exists()


@pytest.mark.slow
def test_a_damaged_trace_sends_nothing_to_a_collector(collector: CollectorProcess, tmp_path: Path) -> None:
    files = damaged(tmp_path)
    result = run_cli(
        "replay",
        str(CORPUS / "healthy-2n2g.trace"),
        str(files["corrupt"]),
        "--collector",
        collector.target,
        check=False,
    )
    assert (result.returncode == 1 and "corrupt" in result.stderr) or "checksum" in result.stderr
    out = run_cli(
        "--collector", collector.target, "--format", "json", "query", "SELECT count(*) AS n FROM batches"
    )
    assert json.loads(out.stdout) == [{"n": 0}]


def stored_tables(db: Path) -> dict[str, pa.Table]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {
            name: con.sql(f"SELECT * FROM {name} ORDER BY node, device, time").to_arrow_table()
            for name in TABLES
        }
    finally:
        con.close()


def assert_same(stored: dict[str, pa.Table], expected: dict[str, pa.Table]) -> None:
    for name, want in expected.items():
        got = stored[name]
        assert got.num_rows == want.num_rows, name
        assert got.column_names == want.column_names
        for col in want.column_names:
            assert got.column(col).to_pylist() == want.column(col).to_pylist(), f"{name}.{col}"
    for name in set(TABLES) - set(expected):
        assert stored[name].num_rows == 0, name


@pytest.mark.slow
def test_replay_into_a_collector_stores_every_value_once(tmp_path: Path) -> None:
    trace = CORPUS / "mixed-2n2g.trace"
    c = CollectorProcess(tmp_path / "r.duckdb", tmp_path / "collector.log").start()
    try:
        first = run_cli("replay", str(trace), "--collector", c.target, "--max")
        assert "120 stored, 0 already there" in first.stdout
        again = run_cli("replay", str(trace), "--collector", c.target, "--max")
        assert "0 stored, 120 already there" in again.stdout
    finally:
        assert c.stop() == 0
    assert_same(stored_tables(c.db), trace_tables(trace))


@pytest.mark.slow
def test_replay_into_a_file_equals_the_trace_and_twice_is_once(tmp_path: Path) -> None:
    trace = CORPUS / "xid-1n2g.trace"
    db = tmp_path / "off.duckdb"
    assert "30 stored" in run_cli("replay", str(trace), "--db", str(db)).stdout
    assert "0 stored, 30 already there" in run_cli("replay", str(trace), "--db", str(db)).stdout
    assert_same(stored_tables(db), trace_tables(trace))
    # The XID event itself arrived.
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT node, device, xid FROM gpu_xid").fetchall() == [("sim-000", "0", 79)]
    con.close()


@pytest.mark.slow
def test_paced_replay_with_shift_to_now(collector: CollectorProcess, tmp_path: Path) -> None:
    trace = tmp_path / "short.trace"
    write_sim(trace, scenario="healthy", nodes=2, gpus=1, duration_s=40, interval_s=1.0, seed=1, batch_s=2.0)
    start = time.monotonic()
    run_cli("replay", str(trace), "--collector", collector.target, "--speed", "20", "--shift-to-now")
    took = time.monotonic() - start
    # 40 s of trace at 20x: about 2 s (the last batch is due at 38 s of trace time).
    assert 1.5 <= took <= 8, took
    out = run_cli(
        "--collector",
        collector.target,
        "--format",
        "json",
        "query",
        "SELECT count(DISTINCT node) AS nodes, epoch(now()::TIMESTAMP - max(time)) AS age, epoch(max(time) - min(time)) AS span FROM gpu",
    )
    [row] = json.loads(out.stdout)
    # Shifted so the replay happens now: the data spans 39 s of trace time and starts
    # when the replay started, so its newest row is in the future, at most ~37 s ahead.
    assert row["nodes"] == 2 and row["span"] == pytest.approx(39.0) and -40 < row["age"] < 5


@pytest.mark.slow
def test_replay_flags_are_checked(collector: CollectorProcess) -> None:
    trace = str(CORPUS / "xid-1n2g.trace")
    both = run_cli("replay", trace, "--collector", collector.target, "--db", "x.duckdb", check=False)
    assert both.returncode == 2 and "exactly one of --collector" in both.stderr
    excl = run_cli("replay", trace, "--collector", collector.target, "--max", "--speed", "2", check=False)
    assert excl.returncode == 2 and "exclude each other" in excl.stderr
    gone = run_cli("replay", trace, "--collector", "127.0.0.1:1", "--max", check=False)
    assert gone.returncode == 1 and "unreachable" in gone.stderr


@pytest.mark.slow
def test_record_then_replay(tmp_path: Path, collector: CollectorProcess) -> None:
    out = tmp_path / "rec.trace"
    proc = subprocess.run(
        [
            str(BIN / "ironsight"),
            "record",
            "--out",
            str(out),
            "--duration",
            "2",
            "--interval",
            "0.2",
            "--node-id",
            "rec-node",
            "--tee-collector",
            collector.target,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote 2 batches (10 ticks)" in proc.stdout  # a batch a second, as the agent sends
    header, batches = read_all(out)
    assert header.source == "record" and header.interval_s == 0.2
    assert [n.node_id for n in header.nodes] == ["rec-node"]
    assert any(d.kind == "nic" for d in header.nodes[0].devices)
    assert [b.seq for b in batches] == [batches[0].seq, batches[0].seq + 1]
    assert sum(len(t.time_ns) for b in batches for t in b.tables if t.name == "load") == 10
    # The tee got the same batches: replaying the trace into that collector adds nothing.
    again = run_cli("replay", str(out), "--collector", collector.target, "--max")
    assert "0 stored, 2 already there" in again.stdout
    refused = subprocess.run(
        [str(BIN / "ironsight"), "record", "--out", str(out), "--duration", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "exists" in refused.stderr


def test_recorded_vm_trace_in_the_corpus_replays() -> None:
    header, batches, values = verify(CORPUS / "record-vm-idle.trace")
    assert header.source == "record" and batches == 20 and values > 1000
    tables = trace_tables(CORPUS / "record-vm-idle.trace")
    assert {"cpu", "memory", "disk", "nic", "sampler"} <= set(tables)
    assert min(tables["sampler"].column("success").to_pylist()) == 1


@pytest.mark.slow
def test_simulate_cli_lists_and_refuses_bad_input(tmp_path: Path) -> None:
    listing = run_cli("simulate", "--list").stdout
    assert all(name in listing for name in SCENARIOS)
    bad = run_cli("simulate", "--scenario", "nope", "--out", str(tmp_path / "x.trace"), check=False)
    assert bad.returncode == 1 and "unknown scenario 'nope'" in bad.stderr
    small = run_cli(
        "simulate", "--scenario", "straggler", "--nodes", "1", "--out", str(tmp_path / "y.trace"), check=False
    )
    assert small.returncode == 1 and "at least 3 nodes" in small.stderr
    ok = run_cli(
        "simulate",
        "--scenario",
        "thermal",
        "--nodes",
        "1",
        "--gpus",
        "2",
        "--duration",
        "5m",
        "--seed",
        "3",
        "--out",
        str(tmp_path / "t.trace"),
    )
    assert "labels: thermal" in ok.stdout


def test_h100_figures_are_the_captures() -> None:
    from support.nvml_double import number, query_gpu

    cap = need_shared("nvidia_smi_captures") / "linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01.txt"
    idle, load = query_gpu(cap, "idle"), query_gpu(cap, "load")
    assert (H100.idle_power_w, H100.load_power_w) == (number(idle["power.draw"]), number(load["power.draw"]))
    assert (H100.idle_temp_c, H100.load_temp_c) == (
        number(idle["temperature.gpu"]),
        number(load["temperature.gpu"]),
    )
    assert (H100.idle_mem_temp_c, H100.load_mem_temp_c) == (
        number(idle["temperature.memory"]),
        number(load["temperature.memory"]),
    )
    assert H100.power_limit_w == number(load["enforced.power.limit"])
    assert H100.memory_total_mib == number(load["memory.total"])
    assert (H100.sm_clock_max_mhz, H100.mem_clock_mhz) == (
        number(load["clocks.max.sm"]),
        number(load["clocks.max.memory"]),
    )
    assert H100.sm_clock_idle_mhz == number(idle["clocks.current.sm"])
    assert H100.mem_util_at_load == number(load["utilization.memory"])
    assert H100.model == load["name"]


def test_h200_and_a100_figures_are_the_captures() -> None:
    from ironsight.offline.simulate.hardware import A100, H200

    from support.nvml_double import number, query_gpu, query_xml

    cap = need_shared("nvidia_smi_captures") / "linux-x86_64__nvidia-h200__590.48.01.txt"
    idle, load = query_gpu(cap, "idle"), query_gpu(cap, "load")
    assert H200.model == load["name"]
    assert (H200.idle_power_w, H200.load_power_w) == (number(idle["power.draw"]), number(load["power.draw"]))
    assert (H200.idle_temp_c, H200.load_temp_c) == (
        number(idle["temperature.gpu"]),
        number(load["temperature.gpu"]),
    )
    assert (H200.idle_mem_temp_c, H200.load_mem_temp_c) == (
        number(idle["temperature.memory"]),
        number(load["temperature.memory"]),
    )
    assert H200.power_limit_w == number(load["enforced.power.limit"])
    assert H200.memory_total_mib == number(load["memory.total"])
    assert (H200.sm_clock_max_mhz, H200.mem_clock_mhz) == (
        number(load["clocks.max.sm"]),
        number(load["clocks.max.memory"]),
    )
    assert H200.mem_util_at_load == number(load["utilization.memory"])
    # The A100 is captured idle only (nvidia-smi -q XML); its load figures are stated, not captured.
    xml = query_xml(need_shared("nvidia_smi_xml") / "a100-sxm4-v12.xml")
    assert A100.model == xml["name"] and not A100.gpm
    assert (A100.idle_power_w, A100.power_limit_w) == (
        number(xml["power.draw"]),
        number(xml["enforced.power.limit"]),
    )
    assert (A100.idle_temp_c, A100.idle_mem_temp_c) == (
        number(xml["temperature.gpu"]),
        number(xml["temperature.memory"]),
    )
    assert (A100.slowdown_c, A100.shutdown_c) == (
        number(xml["temperature.slowdown"]),
        number(xml["temperature.shutdown"]),
    )
    assert A100.memory_total_mib == number(xml["memory.total"])
    assert (A100.sm_clock_max_mhz, A100.mem_clock_mhz) == (
        number(xml["clocks.max.sm"]),
        number(xml["clocks.max.memory"]),
    )
    assert A100.sm_clock_idle_mhz == number(xml["clocks.current.sm"])
