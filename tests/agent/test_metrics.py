"""The agent's --metrics-listen endpoint: the last tick in node_exporter / dcgm-exporter names, never a fresh sample."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.processes import BIN, CollectorProcess, free_port, scrape_metrics

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
# Figures of the sampling itself, which differ between two runs.
VOLATILE = ("ironsight_sampler_duration_seconds", "ironsight_agent_", "python_", "process_")


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if not s.name.startswith(VOLATILE)
    }


def tree_args(tree: Path) -> list[str]:
    return [f"--path.procfs={tree / 'proc'}", f"--path.sysfs={tree / 'sys'}", "--no-collector.gpu"]


def value(text: str, name: str) -> float | None:
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name:
                return float(s.value)
    return None


@pytest.fixture
def agent(node_exporter_tree: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "ironsight-agent"), "--metrics-listen", f"127.0.0.1:{port}", "--interval", "5",
         *tree_args(node_exporter_tree)],
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "agent.log", "wb"),  # noqa: SIM115 - closed with the process
    )  # fmt: skip
    try:
        yield proc, port
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0


def first_tick(port: int) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = scrape_metrics(port)
        if value(text, "ironsight_agent_ticks_total"):
            return text
        time.sleep(0.1)
    raise AssertionError("no tick served within 20 s")


@pytest.mark.slow
def test_endpoint_serves_what_once_prints(
    node_exporter_tree: Path, agent: tuple[subprocess.Popen[bytes], int]
) -> None:
    _, port = agent
    served = parse(first_tick(port))
    once = subprocess.run(
        [str(BIN / "ironsight-agent"), "--once", *tree_args(node_exporter_tree)],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    expected = parse(once)
    assert len(expected) > 300  # the whole fixture tree: CPUs, disks, memory, InfiniBand, hwmon...
    assert served == expected
    key = ("node_cpu_seconds_total", frozenset({("cpu", "0"), ("mode", "user")}))
    assert served[key] == expected[key] > 0


@pytest.mark.slow
def test_a_scrape_never_samples(agent: tuple[subprocess.Popen[bytes], int]) -> None:
    _, port = agent
    first = first_tick(port)
    again = [scrape_metrics(port) for _ in range(5)]
    # At a 5 s interval these scrapes fall within one tick: the same tick count and
    # the same sampler durations, which a fresh sample would change.
    ticks = {value(t, "ironsight_agent_ticks_total") for t in [first, *again]}
    durations = {value(t, "ironsight_sampler_duration_seconds") for t in [first, *again]}
    assert len(ticks) <= 2 and len(durations) <= 2
    assert value(first, "ironsight_agent_last_sample_timestamp_seconds") == pytest.approx(time.time(), abs=30)


@pytest.mark.slow
def test_streaming_agent_reports_its_batches(node_exporter_tree: Path, tmp_path: Path) -> None:
    collector = CollectorProcess(tmp_path / "db.duckdb", tmp_path / "collector.log", ["--no-detect"]).start()
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "ironsight-agent"), "--collector", collector.target, "--metrics-listen", f"127.0.0.1:{port}",
         "--interval", "0.2", *tree_args(node_exporter_tree)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline, sent = time.monotonic() + 20, 0.0
        while time.monotonic() < deadline and sent < 3:
            sent = value(scrape_metrics(port), "ironsight_agent_batches_sent_total") or 0.0
            time.sleep(0.2)
        text = scrape_metrics(port)
        assert sent >= 3
        assert value(text, "ironsight_agent_backlog_batches") is not None
        assert value(text, "ironsight_agent_reconnects_total") is not None
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        collector.stop()


@pytest.mark.slow
def test_bad_listen_address_and_busy_port_fail_in_one_line(tmp_path: Path) -> None:
    bad = subprocess.run(
        [str(BIN / "ironsight-agent"), "--metrics-listen", "nowhere"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and "--metrics-listen" in bad.stderr.strip().splitlines()[-1]
    import socket

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        busy = subprocess.run(
            [str(BIN / "ironsight-agent"), "--metrics-listen", f"127.0.0.1:{port}", "--no-collector.gpu"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert busy.returncode == 1
    assert (
        busy.stderr.strip()
        .splitlines()[-1]
        .startswith(f"ironsight-agent: cannot serve metrics on 127.0.0.1:{port}")
    )


def test_an_xid_stays_on_the_endpoint_after_its_tick() -> None:
    from ironsight.agent.metrics import Latest
    from ironsight.agent.runner import Tick
    from ironsight.core.reading import DeviceInfo, Reading

    def tick(t: int, xid: int | None) -> Tick:
        r = Reading()
        r.add("gpu", "0", {"util_gpu_percent": 90.0})
        if xid is not None:
            r.add("gpu_xid", "0", {"xid": xid})
        return Tick(t, r)

    latest = Latest("n1")
    inventory = [DeviceInfo("gpu", "0", {"uuid": "GPU-1", "model": "NVIDIA H100 80GB HBM3"})]

    def xid() -> tuple[float, float]:
        got = {s.name: s.value for fam in latest.collect() for s in fam.samples if "xid" in s.name.lower()}
        return got["DCGM_FI_DEV_XID_ERRORS"], got["ironsight_gpu_xid_events_total"]

    latest.update(tick(1, None), inventory)
    assert xid() == (0, 0)  # as dcgm-exporter: 0 while there has been none
    latest.update(tick(2, 79), inventory)
    latest.update(tick(3, None), inventory)
    assert xid() == (79, 1)
    latest.update(tick(4, 48), inventory)
    assert xid() == (48, 2)


def test_gpu_series_carry_dcgm_exporters_hpc_job_label_from_the_last_look() -> None:
    from ironsight.agent.metrics import Latest
    from ironsight.agent.runner import Tick
    from ironsight.core.exposition import render
    from ironsight.core.reading import DeviceInfo, GpuOwner, Owners, Reading

    def tick(t: int, owners: Owners | None) -> Tick:
        r = Reading(owners=owners)
        for gpu in ("0", "1", "2"):
            r.add("gpu", gpu, {"util_gpu_percent": 90.0})
        return Tick(t, r)

    inventory = [DeviceInfo("gpu", g, {"uuid": f"GPU-{g}"}) for g in ("0", "1", "2")]
    assert 'hpc_job="' not in render(tick(1, None).reading, inventory, "n1").decode()  # no jobs: no label

    def jobs() -> dict[str, str]:
        return {
            s.labels["gpu"]: s.labels["hpc_job"]
            for fam in text_string_to_metric_families(render_latest())
            for s in fam.samples
            if s.name == "DCGM_FI_DEV_GPU_UTIL"
        }

    latest = Latest("n1")

    def render_latest() -> str:
        from prometheus_client import CollectorRegistry, generate_latest

        registry = CollectorRegistry(auto_describe=False)
        registry.register(latest)
        return generate_latest(registry).decode()

    look = Owners(("0", "1", "2"), (GpuOwner("0", "4242", "slurm"), GpuOwner("1", "4242", "slurm"),
                                     GpuOwner("1", "77", "mapping")))  # fmt: skip
    latest.update(tick(1, look), inventory)
    latest.update(tick(2, None), inventory)  # a tick without a look keeps the last one
    assert jobs() == {"0": "4242", "1": "4242,77", "2": ""}
    assert 'job="' not in render_latest().replace('hpc_job="', "")  # never Prometheus's own label
    pods = Owners(("0", "1"), (GpuOwner("1", "ml/train-0", "kubernetes", (
        ("container", "trainer"), ("namespace", "ml"), ("pod", "train-0"))),))  # fmt: skip
    text = render(tick(3, pods).reading, inventory, "n1").decode()
    util = {
        s.labels["gpu"]: (s.labels["pod"], s.labels["namespace"], s.labels["container"])
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == "DCGM_FI_DEV_GPU_UTIL"
    }
    assert util == {"0": ("", "", ""), "1": ("train-0", "ml", "trainer"), "2": ("", "", "")}
    assert "hpc_job" not in text
