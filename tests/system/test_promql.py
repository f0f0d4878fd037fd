"""The collector's Prometheus API against a real Prometheus holding the same series.

A simulated 2-node, 2-GPU store of 20 minutes is forwarded, as remote write
sends it, into Debian's Prometheus; the same store is served by a real
collector. Every expression of our four dashboards, the key ones of the
public node_exporter and DCGM dashboards, a list covering each function and
operator, and expressions drawn by Hypothesis from a grammar over the stored
series must come back the same from both (same series and labels, same
steps, values within 1e-9 relative).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from support.paths import ROOT as REPO
from support.prom import Prometheus
from support.promql import Collector, differences, feed, get
from support.traces import simulated


@dataclass
class Pair:
    prom: Prometheus
    ours: Collector
    lo: float  # first and last sample, seconds
    hi: float


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("promql")
    _, con = simulated(tmp, "mixed", 5, nodes=2, gpus=2, duration_s=1200)
    lo, hi = con.execute("SELECT epoch_ms(min(time)), epoch_ms(max(time)) FROM gpu").fetchall()[0]
    # An evaluation interval of 1m: the step of a subquery that names none, ours too.
    prom = Prometheus(tmp, {}, scrape_s=60)
    try:
        assert feed(con, prom) > 800_000
        con.close()
        ours = Collector(tmp / "mixed.duckdb", tmp)
        try:
            yield Pair(prom, ours, lo / 1000, hi / 1000)
        finally:
            ours.stop()
    finally:
        prom.stop()


def same(pair: Pair, path: str, **params: object) -> dict[str, object]:
    code_p, theirs = get(pair.prom.url, path, **params)
    code_o, ours = get(pair.ours.url, path, **params)
    assert theirs["status"] == "success", theirs
    assert (code_o, ours["status"]) == (code_p, "success"), ours
    problems = differences(theirs["data"], ours["data"])
    assert not problems, f"{params}: {problems[:5]}"
    return dict(ours["data"])


def windows(pair: Pair) -> list[dict[str, object]]:
    """Range queries over the whole store, and its start at an odd step and an odd end (lookback and
    windows reaching before the first sample)."""
    lo, hi = pair.lo, pair.hi
    return [{"start": lo, "end": hi, "step": 15}, {"start": lo - 100, "end": lo + 400.123, "step": 7}]


def dashboard_expressions() -> list[str]:
    """Every expression of our dashboards, variables as Grafana substitutes them for "All"."""
    out = []
    for path in sorted((REPO / "dashboards").glob("*.json")):
        text = path.read_text()
        for expr in _exprs(json.loads(text)):
            for var, value in (("$__rate_interval", "1m"), ("$__range", "20m"), ("$node", ".+"),
                               ("$gpu", ".+"), ("$job", ".*")):  # fmt: skip
                expr = expr.replace(var, value)
            if "label_values" not in expr and expr != "prometheus":
                out.append(expr)
    return sorted(set(out))


def _exprs(o: object) -> Iterator[str]:
    if isinstance(o, dict):
        for k, v in o.items():
            if k == "expr" and isinstance(v, str):
                yield v
            else:
                yield from _exprs(v)
    elif isinstance(o, list):
        for x in o:
            yield from _exprs(x)


# Key panels of Node Exporter Full (grafana.com 1860) and NVIDIA's DCGM dashboard (12239).
PUBLIC = [
    '100 * (1 - avg(rate(node_cpu_seconds_total{mode="idle"}[1m])))',
    "sum by (mode) (rate(node_cpu_seconds_total[1m]))",
    "node_memory_MemTotal_bytes - node_memory_MemAvailable_bytes",
    "rate(node_disk_read_bytes_total[1m])",
    "rate(node_disk_io_time_seconds_total[1m])",
    'rate(node_network_receive_bytes_total{device!="lo"}[1m])',
    "DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE)",
    "avg by (modelName, UUID, hostname) (DCGM_FI_DEV_GPU_TEMP)",
    "sum(DCGM_FI_DEV_POWER_USAGE)",
    "DCGM_FI_DEV_SM_CLOCK * 1000000",
    '(1 - node_memory_MemAvailable_bytes{instance=~".+"} / node_memory_MemTotal_bytes) * 100',
    "count(count(node_cpu_seconds_total) by (cpu))",
]
# Each function and operator at least once.
COVERAGE = (REPO / "tests" / "system" / "promql_expressions.txt").read_text().splitlines()


@pytest.mark.parametrize("expr", dashboard_expressions() + PUBLIC + [e for e in COVERAGE if e.strip()])
def test_same_answers_as_prometheus(pair: Pair, expr: str) -> None:
    for window in windows(pair):
        same(pair, "/api/v1/query_range", query=expr, **window)
    same(pair, "/api/v1/query", query=expr, time=pair.lo + 300.5)


def test_stored_metrics_come_back(pair: Pair) -> None:
    data = same(
        pair, "/api/v1/query_range", query="DCGM_FI_DEV_GPU_UTIL", start=pair.lo, end=pair.hi, step=15
    )
    result = data["result"]
    assert isinstance(result, list) and len(result) == 4  # 2 nodes x 2 GPUs
    assert all(len(r["values"]) == 80 for r in result)


def test_range_vector_instant_query(pair: Pair) -> None:
    data = same(pair, "/api/v1/query", query="node_load1[1m]", time=pair.lo + 600)
    assert data["resultType"] == "matrix"


GAUGES = ["DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_GPU_TEMP", "node_load1",
          "node_memory_MemAvailable_bytes"]  # fmt: skip
COUNTERS = ['node_cpu_seconds_total{mode="user"}', "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
            "node_network_receive_bytes_total", "ironsight_gpu_pcie_rx_bytes_total"]  # fmt: skip
RANGES = ["30s", "1m", "2m", "5m"]


@st.composite
def expressions(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        inner = f"{draw(st.sampled_from(['rate', 'increase', 'irate', 'resets']))}" \
                f"({draw(st.sampled_from(COUNTERS))}[{draw(st.sampled_from(RANGES))}])"  # fmt: skip
    else:
        fn = draw(st.sampled_from(["", "avg_over_time", "max_over_time", "min_over_time", "sum_over_time",
                                   "count_over_time", "stddev_over_time", "delta", "deriv", "changes",
                                   "quantile_over_time"]))  # fmt: skip
        metric = draw(st.sampled_from(GAUGES))
        if draw(st.booleans()):
            metric += draw(st.sampled_from(['{instance=~".*-0"}', '{gpu="1"}', '{instance!~"x"}']))
        if not fn:
            inner = metric + draw(st.sampled_from(["", " offset 1m", " offset 10s"]))
        else:
            arg = "0.3, " if fn == "quantile_over_time" else ""
            inner = f"{fn}({arg}{metric}[{draw(st.sampled_from(RANGES))}])"
    shape = draw(st.sampled_from(["agg", "scalar", "math", "plain", "binary"]))
    if shape == "agg":
        op = draw(st.sampled_from(["sum", "avg", "min", "max", "count", "stddev", "quantile(0.7,"]))
        by = draw(st.sampled_from(["", " by (instance)", " without (gpu)", " by (gpu, mode)"]))
        return f"{op}{by} ({inner})" if not op.endswith(",") else f"quantile{by} (0.7, {inner})"
    if shape == "scalar":
        return f"{inner} {draw(st.sampled_from(['+', '-', '*', '/', '> bool', '<', '>=']))} {draw(st.sampled_from(['2', '0.5', '50']))}"
    if shape == "math":
        fn = draw(st.sampled_from(["abs", "sqrt", "ln", "round", "clamp_min", "ceil"]))
        return f"{fn}({inner}, 10)" if fn == "clamp_min" else f"{fn}({inner})"
    if shape == "binary":
        return f"{inner} / on (instance) group_left sum by (instance) ({inner})"
    return inner


# Found by drawing: Prometheus's running mean came out at 78.00000000000001 where the exact mean is 78.
@example(expr="ceil(avg_over_time(DCGM_FI_DEV_GPU_UTIL[30s]))", start=0, span=117, step=1)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(expr=expressions(), start=st.integers(0, 1100), span=st.integers(0, 600),
       step=st.sampled_from([1, 5, 15, 60]))  # fmt: skip
def test_generated_expressions(pair: Pair, expr: str, start: int, span: int, step: int) -> None:
    same(
        pair, "/api/v1/query_range", query=expr, start=pair.lo + start, end=pair.lo + start + span, step=step
    )


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/series", {"match[]": ["DCGM_FI_DEV_GPU_UTIL", 'node_cpu_seconds_total{mode="idle"}']}),
        ("/api/v1/series", {"match[]": ['{__name__=~"DCGM_FI_DEV_(GPU|MEM)_.*", gpu="1"}']}),
        ("/api/v1/labels", {}),
        ("/api/v1/labels", {"match[]": ["DCGM_FI_DEV_GPU_UTIL"]}),
        ("/api/v1/label/__name__/values", {}),
        ("/api/v1/label/gpu/values", {"match[]": ["DCGM_FI_DEV_GPU_UTIL"]}),
        ("/api/v1/label/instance/values", {"match[]": ["node_cpu_seconds_total"]}),
        ("/api/v1/label/mode/values", {}),
    ],
)
def test_metadata_endpoints_as_prometheus(pair: Pair, path: str, params: dict[str, object]) -> None:
    """What Grafana's query editor, metric browser and label_values() variables ask."""
    window = {"start": pair.lo, "end": pair.hi}
    _, theirs = get(pair.prom.url, path, **params, **window)
    _, ours = get(pair.ours.url, path, **params, **window)
    assert theirs["status"] == ours["status"] == "success", ours
    assert ours["data"] == theirs["data"]
    assert ours["data"]


@pytest.mark.parametrize(
    ("params", "kind", "code"),
    [
        ({"query": "sum(", "time": 0}, "bad_data", 400),
        ({"query": "rate(node_load1)", "time": 0}, "bad_data", 400),
        ({"query": "node_load1", "start": 10, "end": 5, "step": 1}, "bad_data", 400),
        ({"query": "node_load1", "start": 0, "end": 100000, "step": 1}, "bad_data", 400),
        ({"query": "node_load1", "start": 0, "end": 10, "step": 0}, "bad_data", 400),
        ({"query": "node_load1", "start": "yesterday", "end": 10, "step": 1}, "bad_data", 400),
        ({"query": "node_load1[1m]", "start": 0, "end": 10, "step": 1}, "bad_data", 400),
    ],
)
def test_errors_as_prometheus(pair: Pair, params: dict[str, object], kind: str, code: int) -> None:
    path = "/api/v1/query_range" if "step" in params else "/api/v1/query"
    code_p, theirs = get(pair.prom.url, path, **params)
    code_o, ours = get(pair.ours.url, path, **params)
    assert (code_p, theirs["errorType"]) == (code, kind), theirs
    assert (code_o, ours["status"], ours["errorType"]) == (code, "error", kind), ours
    assert ours["error"]


def test_grafana_connect_and_health_check(pair: Pair) -> None:
    """Grafana's data source test: buildinfo, then `1+1` as an instant query."""
    code, info = get(pair.ours.url, "/api/v1/status/buildinfo")
    assert code == 200 and info["data"]["version"].startswith("2.")
    code, body = get(pair.ours.url, "/api/v1/query", query="1+1", time=pair.hi)
    assert code == 200 and body["data"] == {"resultType": "scalar", "result": [pair.hi, "2"]}
    code, meta = get(pair.ours.url, "/api/v1/metadata", metric="DCGM_FI_DEV_GPU_UTIL")
    assert meta["data"] == {"DCGM_FI_DEV_GPU_UTIL": [{"type": "gauge", "help": "", "unit": ""}]}
    code, body = get(pair.ours.url, "/api/v1/nothing")
    assert code == 404 and body["errorType"] == "not_found"


def test_a_go_client_takes_the_answers_gzipped_as_from_prometheus(pair: Pair) -> None:
    """promtool is a Go client like Grafana's data source: it asks for gzip on its own (Accept-Encoding:
    gzip) and undoes it. The same range of a dashboard's metric through it from both servers, as JSON."""
    import shutil
    import subprocess

    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool not found: .ci/run installs Debian's prometheus package")
    answers = []
    for url in (pair.prom.url, pair.ours.url):
        ran = subprocess.run(
            [exe, "query", "range", "-o", "json", f"--start={pair.lo}", f"--end={pair.hi}", "--step=15s",
             url, 'rate(ironsight_gpu_pcie_rx_bytes_total{gpu=~".+"}[1m])'],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        answers.append(json.loads(ran.stdout))
    theirs, ours = answers
    assert len(ours) == 4 and all(len(s["values"]) > 70 for s in ours)  # 2 nodes x 2 GPUs, 20 minutes
    # What it asked for, as it asks (promtool's header: Accept-Encoding: gzip), came compressed.
    import urllib.parse
    import urllib.request

    query = urllib.parse.urlencode({"query": "ironsight_gpu_pcie_rx_bytes_total", "start": pair.lo,
                                    "end": pair.hi, "step": 15})  # fmt: skip
    request = urllib.request.Request(
        f"{pair.ours.url}/api/v1/query_range?{query}", headers={"Accept-Encoding": "gzip"}
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        assert r.headers["Content-Encoding"] == "gzip" and r.read()[:2] == b"\x1f\x8b"
    problems = differences(
        {"resultType": "matrix", "result": theirs}, {"resultType": "matrix", "result": ours}
    )
    assert not problems, problems[:5]
