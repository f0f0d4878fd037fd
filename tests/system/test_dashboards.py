"""The Grafana dashboards: valid, consistent, and every panel's PromQL returns data from a real Prometheus.

Prometheus scrapes a real agent on this machine (streaming to the collector),
the agent's endpoint fed by the NVML double, two simulated nodes' agents
replaying a thermal incident as it happens, and a real collector whose live
detector has that incident open.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from ironsight.agent.metrics import Latest, serve
from ironsight.agent.runner import Runner
from ironsight.agent.samplers.base import SamplerContext
from ironsight.agent.samplers.gpu import GpuSampler
from ironsight.offline.replay import to_db
from ironsight.offline.simulate import simulate

from support.nvml_double import H100, CaptureNvml, capture
from support.paths import ROOT
from support.processes import BIN, CollectorProcess, free_port, wait_port
from support.prom import Prometheus
from support.promql import get
from support.trace_exporter import TraceExporter
from support.traces import trace_until_now

DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
BUILTIN = {"__rate_interval", "__range", "__interval", "__all"}
VARIABLE = re.compile(r"\$\{?(\w+)")


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def expressions() -> list[tuple[str, str, str]]:
    return [
        (path.stem, f"{panel['title']} [{target['refId']}]", target["expr"])
        for path in DASHBOARDS
        for panel in load(path)["panels"]
        for target in panel["targets"]
    ]


def test_dashboards_are_what_the_generator_writes() -> None:
    assert [p.stem for p in DASHBOARDS] == [
        "ironsight-bottlenecks", "ironsight-fleet", "ironsight-gpu", "ironsight-node"
    ]  # fmt: skip
    check = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "make_dashboards.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_dashboard_is_valid_grafana_json(path: Path) -> None:
    schema = json.loads((ROOT / "tests" / "grafana-dashboard.schema.json").read_text())
    dashboard = load(path)
    jsonschema.validate(dashboard, schema)
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {path.name}"
    # Panels inside the 24-column grid, none over another.
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"{p['title']} overlaps another panel"
        cells |= mine
        assert p["datasource"]["uid"] == "${datasource}"
        assert all(t["datasource"]["uid"] == "${datasource}" for t in p["targets"])


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_no_dangling_variables(path: Path) -> None:
    dashboard = load(path)
    defined = [v["name"] for v in dashboard["templating"]["list"]]
    assert {"datasource", "node"} <= set(defined)
    text = json.dumps(dashboard["panels"]) + json.dumps(
        [v.get("query", "") for v in dashboard["templating"]["list"]]
    )
    used = set(VARIABLE.findall(text)) - BUILTIN
    assert used <= set(defined), f"undefined: {used - set(defined)}"
    assert set(defined) <= used, f"defined but never used: {set(defined) - used}"
    for v in dashboard["templating"]["list"]:
        if v["type"] == "query":  # a variable's query may only use variables defined before it
            earlier = set(defined[: defined.index(v["name"])])
            assert set(VARIABLE.findall(v["query"]["query"])) - BUILTIN <= earlier


def test_provisioning_points_at_the_folder_and_prometheus() -> None:
    prov = ROOT / "dashboards" / "provisioning"
    datasource = (prov / "datasources" / "ironsight.yml").read_text()
    assert "type: prometheus" in datasource and "apiVersion: 1" in datasource
    dashboards = (prov / "dashboards" / "ironsight.yml").read_text()
    assert "folder: ironsight" in dashboards and "type: file" in dashboards


API: dict[str, str] = {}  # the stack's collector's Prometheus API


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Prometheus, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("dash")
    # A GPU overheating right now (as test_live), 2 nodes x 2 GPUs.
    trace = trace_until_now(tmp, "thermal", 290, 600, job="4242")
    db = tmp / "collector.duckdb"
    to_db([trace], db)
    collector = CollectorProcess(db, tmp / "collector.log", http=True).start()
    API["url"] = f"http://127.0.0.1:{collector.http_port}"
    header, batches = simulate("thermal", nodes=2, gpus=2, duration_s=600, seed=77, start_ns=_start(trace))
    batch_list = list(batches)
    exporters = [
        TraceExporter(header, batch_list, node.node_id, f"127.0.0.1:{free_port()}") for node in header.nodes
    ]
    host_port = free_port()
    agent = subprocess.Popen(
        [str(BIN / "ironsight-agent"), "--metrics-listen", f"127.0.0.1:{host_port}", "--interval", "0.5",
         "--no-collector.gpu", "--collector", collector.target, "--node-id", "this-vm",
         # Its own spool: a module's fixture runs before each test's STATE_DIRECTORY is set (conftest),
         # and a second worker's copy of this stack would find the default one locked.
         "--state-dir", str(tmp / "agent-state")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    runner = Runner([GpuSampler(SamplerContext(nvml=CaptureNvml(capture(H100), "load")))], budget_s=5.0)
    latest = Latest("gpu-node-1")
    latest.update(runner.tick(), runner.inventory())
    gpu_port = free_port()
    gpu_server = serve(f"127.0.0.1:{gpu_port}", latest)
    wait_port(host_port, agent)
    agents: list[Any] = [
        (f"127.0.0.1:{e.server.server_port}", {"instance": e.latest.hostname}) for e in exporters
    ]
    agents += [
        (f"127.0.0.1:{host_port}", {"instance": "this-vm"}),
        (f"127.0.0.1:{gpu_port}", {"instance": "gpu-node-1"}),
    ]
    prom = Prometheus(tmp, {"agent": agents, "collector": f"127.0.0.1:{collector.http_port}"})
    try:
        active = prom.wait_for('ironsight_bottleneck_active{kind="thermal"}', timeout=60)
        assert active, "the collector's detector should have the thermal incident open"
        labels = active[0]["metric"]
        yield prom, {"node": labels["node"], "gpu": labels["device"], "job": labels["ironsight_job"]}
    finally:
        prom.stop()
        for e in exporters:
            e.stop()
        gpu_server.shutdown()
        runner.close()
        agent.terminate()
        agent.wait(timeout=20)
        assert collector.stop() == 0


def _start(trace: Path) -> int:
    from ironsight.core.trace import read_header

    return int(read_header(trace)[0].created_ns)


def substitute(expr: str, chosen: dict[str, str]) -> str:
    out = expr.replace("$__rate_interval", "5s").replace("$__range", "5m")
    for name, value in chosen.items():
        out = out.replace(f"${{{name}}}", value).replace(f"${name}", value)
    assert "$" not in out, out
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("dashboard", "panel", "expr"), expressions())
def test_every_panel_returns_data(
    stack: tuple[Prometheus, dict[str, str]], dashboard: str, panel: str, expr: str
) -> None:
    prom, chosen = stack
    query = substitute(expr, chosen)
    # rate() needs two scrapes inside its window: give a fresh stack a few seconds.
    result = prom.wait_for(query, timeout=20)
    assert result, f"{dashboard} / {panel}: {query} returned nothing"
    values = [float(r["value"][1]) for r in result]
    assert all(v == v for v in values), f"{panel}: NaN in {values}"  # NaN: a division by an empty series


def panel_query(dashboard: str, title: str, chosen: dict[str, str], ref: str = "A") -> str:
    panel = next(p for p in load(ROOT / "dashboards" / f"{dashboard}.json")["panels"] if p["title"] == title)
    return substitute(next(t["expr"] for t in panel["targets"] if t["refId"] == ref), chosen)


@pytest.mark.slow
def test_panels_show_the_incident(stack: tuple[Prometheus, dict[str, str]]) -> None:
    prom, chosen = stack

    def value(dashboard: str, title: str, ref: str = "A") -> float:
        result = prom.wait_for(panel_query(dashboard, title, chosen, ref))
        assert len(result) == 1, result
        return float(result[0]["value"][1])

    assert value("ironsight-fleet", "Nodes up") == 1  # the one node chosen
    everyone = {"node": ".*", "gpu": ".*", "job": ".*"}
    # Two simulated nodes and this VM; the NVML double's endpoint has GPUs only, no node.
    assert float(prom.query(panel_query("ironsight-fleet", "Nodes up", everyone))[0]["value"][1]) == 3
    assert value("ironsight-fleet", "Active bottlenecks") == 1
    assert (
        value("ironsight-fleet", "Nodes reporting to a collector") == 0
    )  # the sim nodes were loaded, not sent
    reporting = prom.wait_for(panel_query("ironsight-fleet", "Nodes reporting to a collector", everyone))
    assert float(reporting[0]["value"][1]) == 1  # this VM's agent streams to it
    assert value("ironsight-gpu", "Temperature against slowdown and shutdown", "C") == 87
    assert value("ironsight-gpu", "Temperature against slowdown and shutdown", "D") == 93
    assert 80 <= value("ironsight-gpu", "Temperature against slowdown and shutdown", "A") <= 93
    figures = prom.query(panel_query("ironsight-bottlenecks", "Evidence at the peak step", chosen))
    assert {"temperature_max_c", "slowdown_c"} <= {r["metric"]["figure"] for r in figures}
    heatmap = prom.query(panel_query("ironsight-fleet", "GPU utilization by node and GPU", everyone))
    assert {(r["metric"]["instance"], r["metric"]["gpu"]) for r in heatmap} >= {
        ("sim-000", "0"), ("sim-000", "1"), ("sim-001", "0"), ("sim-001", "1"), ("gpu-node-1", "0")
    }  # fmt: skip
    # Each finding names the job it hit; the jobs table says which GPUs each holds.
    assert chosen["job"] == "4242"
    jobs = prom.query(panel_query("ironsight-fleet", "Jobs: GPUs held and open findings", everyone))
    assert [(r["metric"]["ironsight_job"], float(r["value"][1])) for r in jobs] == [("4242", 4.0)]
    hurt = prom.query(panel_query("ironsight-fleet", "Open findings by job", everyone))
    assert [(r["metric"]["ironsight_job"], r["metric"]["kind"]) for r in hurt] == [("4242", "thermal")]
    other = prom.query(panel_query("ironsight-bottlenecks", "Active findings", chosen | {"job": "other"}))
    assert other == []


@pytest.mark.slow
def test_the_collector_api_has_the_findings_prometheus_scraped(
    stack: tuple[Prometheus, dict[str, str]],
) -> None:
    """The Bottlenecks and Fleet dashboards on the collector alone: its findings and job series, from
    the store, are what a Prometheus scraping its /metrics holds (but for the scrape's instance and job)."""
    prom, _ = stack

    def scraped(r: dict[str, Any]) -> str:
        return json.dumps(
            {k: v for k, v in r["metric"].items() if k not in ("instance", "job")}, sort_keys=True
        )

    def ours(r: dict[str, Any]) -> str:
        return json.dumps({k: v for k, v in r["metric"].items() if k != "job"}, sort_keys=True)

    for name, exact in (("ironsight_bottleneck_active", True), ("ironsight_bottleneck_since_timestamp_seconds", True),
                        ("ironsight_bottleneck_evidence", False)):  # fmt: skip
        theirs = prom.query(name)
        _, body = get(API["url"], "/api/v1/query", query=name)
        mine = body["data"]["result"]
        assert theirs and sorted(map(scraped, theirs)) == sorted(map(ours, mine)), (theirs, mine)
        if exact:
            assert sorted((scraped(r), r["value"][1]) for r in theirs) == sorted(
                (ours(r), r["value"][1]) for r in mine
            )
    theirs = prom.query("ironsight_job_gpus")
    _, body = get(API["url"], "/api/v1/query", query="ironsight_job_gpus")
    held = sorted((ours(r), r["value"][1]) for r in body["data"]["result"])
    assert held and sorted((scraped(r), r["value"][1]) for r in theirs) == held, (theirs, held)
    _, body = get(
        API["url"], "/api/v1/query", query='max_over_time(ironsight_bottleneck_active{kind="thermal"}[5m])'
    )
    assert [r["value"][1] for r in body["data"]["result"]] == ["1"] * len(body["data"]["result"])
