"""Real senders into the receiver: Debian's Prometheus scraping Debian's node_exporter on this machine,
with remote_write to a collector; the collector then holds what Prometheus holds, at the same times."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from support.processes import CollectorProcess, free_port, run_cli, wait_port
from support.prom import Prometheus

pytestmark = pytest.mark.slow

NODE = "this-machine"
# (ironsight TABLE.COLUMN, the series Prometheus holds, the label that is the device)
COMPARED = [
    ("cpu.idle_seconds", 'node_cpu_seconds_total{mode="idle"}', "cpu"),
    ("cpu.user_seconds", 'node_cpu_seconds_total{mode="user"}', "cpu"),
    ("memory.mem_available_bytes", "node_memory_MemAvailable_bytes", ""),
    ("load.load1", "node_load1", ""),
    ("load.context_switches", "node_context_switches_total", ""),
    ("nic.rx_bytes", "node_network_receive_bytes_total", "device"),
    ("nic.tx_packets", "node_network_transmit_packets_total", "device"),
    ("tcp.curr_estab", "node_netstat_Tcp_CurrEstab", ""),
    ("disk.read_bytes", "node_disk_read_bytes_total", "device"),
    ("disk.io_time_seconds", "node_disk_io_time_seconds_total", "device"),
    ("pressure.cpu_some_seconds", "node_pressure_cpu_waiting_seconds_total", ""),
]


@pytest.fixture
def node_exporter(tmp_path: Path) -> Iterator[str]:
    exe = shutil.which("prometheus-node-exporter")
    if exe is None:
        pytest.fail("prometheus-node-exporter not found: .ci/run installs Debian's prometheus-node-exporter")
    port = free_port()
    with open(tmp_path / "node_exporter.log", "wb") as log:
        proc = subprocess.Popen([exe, f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=log)
        try:
            wait_port(port, proc)
            yield f"127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(timeout=20)


@pytest.fixture
def receiving(tmp_path: Path) -> Iterator[Callable[..., tuple[CollectorProcess, int]]]:
    """Starts a collector receiving remote write (settling after 2 s) on a free port; stopped after the test."""
    started: list[CollectorProcess] = []

    def start(*extra: str, http: bool = False) -> tuple[CollectorProcess, int]:
        rw = free_port()
        flags = ["--remote-write-listen", f"127.0.0.1:{rw}", "--remote-write-settle", "2", *extra]
        started.append(
            CollectorProcess(tmp_path / "db" / "c.duckdb", tmp_path / "collector.log", flags, http=http)
        )
        c = started[-1].start()  # its gRPC port is open: the receiver's opens a moment later
        assert c.proc is not None
        wait_port(rw, c.proc)
        return c, rw

    yield start
    for c in started:
        c.stop()


def _held(prom: Prometheus, selector: str, at: float) -> dict[tuple[str, int], float]:
    """(device, ms) -> value of every raw sample Prometheus holds for this machine in the last 5 minutes."""
    name, _, rest = selector.partition("{")
    inner = f'instance="{NODE}"' + ("," + rest.rstrip("}") if rest else "")
    out = {}
    for r in prom.query(f"{name}{{{inner}}}[5m]", at):
        device = r["metric"].get("device") or r["metric"].get("cpu") or ""
        for t, v in r["values"]:
            out[(device, round(float(t) * 1000))] = float(v)
    return out


def _stored(collector: CollectorProcess, metric: str) -> dict[tuple[str, int], float]:
    proc = run_cli("--collector", collector.target, "--insecure", "--format", "json", "series",
                   "--node", NODE, "--metric", metric, "--since", "5m", "--limit", "1000000")  # fmt: skip
    out = {}
    for row in json.loads(proc.stdout):
        at = datetime.fromisoformat(row["time"]).replace(tzinfo=UTC)
        out[(row["device"], round(at.timestamp() * 1000))] = float(row["value"])
    return out


def test_prometheus_remote_writing_node_exporter_lands_as_it_holds_it(
    tmp_path: Path, node_exporter: str
) -> None:
    rw = free_port()
    collector = CollectorProcess(
        tmp_path / "db" / "c.duckdb", tmp_path / "collector.log",
        ["--remote-write-listen", f"127.0.0.1:{rw}", "--remote-write-settle", "2", "--no-detect"], http=True,
    ).start()  # fmt: skip
    prom = Prometheus(
        tmp_path, {"node": (node_exporter, {"instance": NODE})}, scrape_s=1,
        remote_write=f"  - url: http://127.0.0.1:{rw}/api/v1/write\n    queue_config:\n      batch_send_deadline: 1s",
    )  # fmt: skip
    try:
        assert prom.wait_for(f'node_load1{{instance="{NODE}"}}')
        time.sleep(20)  # twenty scrapes, sent and settled
        at = time.time() - 6  # what has settled by now (sent within 1 s, settled 2 s after its last part)
        compared = 0
        for metric, selector, _ in COMPARED:
            held = {k: v for k, v in _held(prom, selector, at).items() if k[1] <= at * 1000}
            stored = {k: v for k, v in _stored(collector, metric).items() if k[1] <= at * 1000}
            assert len(held) >= 10, (selector, held)
            assert stored == held, metric
            compared += len(held)
        assert compared > 100
        nodes = json.loads(
            run_cli("--collector", collector.target, "--insecure", "--format", "json", "nodes").stdout
        )
        assert [(n["node"], n["agent_version"], n["interval_s"]) for n in nodes] == [
            (NODE, "remote write (anonymous)", 1.0)]  # fmt: skip
        metrics = collector.metrics("ironsight_receive_samples_total")
        assert 'ironsight_receive_requests_total{code="204",sender="anonymous"}' in metrics
        assert (
            'ironsight_receive_samples_dropped_total{family="go_gc_duration_seconds",sender="anonymous"}'
            in metrics
        )
    finally:
        prom.stop()
        collector.stop()


def _vmagent(tmp: Path, scrape: str, urls: list[str]) -> subprocess.Popen[bytes]:
    exe = shutil.which("vmagent")
    if exe is None:
        pytest.fail("vmagent not found: .ci/run installs Debian's victoria-metrics package")
    (tmp / "scrape.yml").write_text(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: node\n    static_configs:\n"
        f"      - targets: ['{scrape}']\n        labels: {{instance: {NODE}}}\n"
    )
    port = free_port()
    log = open(tmp / "vmagent.log", "wb")  # noqa: SIM115 - the process holds it
    proc = subprocess.Popen(
        [exe, f"-promscrape.config={tmp / 'scrape.yml'}", f"-remoteWrite.tmpDataPath={tmp / 'vmagent-data'}",
         f"-httpListenAddr=127.0.0.1:{port}", "-remoteWrite.flushInterval=1s",
         *(f"-remoteWrite.url={u}" for u in urls)],
        stdout=log, stderr=log,
    )  # fmt: skip
    wait_port(port, proc)
    return proc


def test_vmagent_through_a_killed_collector_loses_nothing_and_stores_nothing_twice(
    tmp_path: Path, node_exporter: str, receiving: Callable[..., tuple[CollectorProcess, int]]
) -> None:
    """vmagent sends to the collector and to Prometheus (the reference) from its own queue each; the
    collector is killed (SIGKILL) while it receives and started again on the same file and port."""
    collector, rw = receiving("--no-detect")
    prom = Prometheus(tmp_path, {}, scrape_s=1)
    try:
        vm = _vmagent(
            tmp_path, node_exporter, [f"http://127.0.0.1:{rw}/api/v1/write", f"{prom.url}/api/v1/write"]
        )
    except BaseException:
        prom.stop()
        raise
    try:
        began = time.time()
        time.sleep(8)
        assert collector.proc is not None
        collector.proc.kill()
        collector.proc.wait()
        time.sleep(4)  # vmagent keeps scraping; what it cannot send waits in its queue
        collector.start()
        time.sleep(8)
        vm.terminate()
        vm.wait(timeout=30)
        ended = time.time()
        time.sleep(6)  # the last parts settle
        compared = 0
        for metric, selector, _ in COMPARED[:5]:
            held = {k: v for k, v in _held(prom, selector, ended).items() if k[1] >= began * 1000}
            stored = {k: v for k, v in _stored(collector, metric).items() if k[1] >= began * 1000}
            assert len(held) >= 15, selector
            # vmagent converts each queue's values to its own decimal form and back: the two copies may
            # differ in the 16th digit (24660049920 and 24660049919.999996).
            assert stored.keys() == held.keys(), metric
            assert all(math.isclose(stored[k], held[k], rel_tol=1e-12) for k in held), metric
            compared += len(held)
        assert compared > 100
        twice = run_cli("--collector", collector.target, "--insecure", "--format", "json", "query",
                        "SELECT count(*) AS n FROM (SELECT node, device, time FROM cpu "
                        "GROUP BY ALL HAVING count(*) > 1)").stdout  # fmt: skip
        assert json.loads(twice) == [{"n": 0}]
        assert "couldn't send a block" in (tmp_path / "vmagent.log").read_text()  # it did meet the outage
    finally:
        if vm.poll() is None:
            vm.kill()
        prom.stop()


@pytest.mark.parametrize(
    ("scenario", "incident_s", "expected"),
    [
        ("thermal", 275, {("thermal", "sim-001", "0")}),  # sim-001's GPU 0 overheats
        ("starved-storage", 238, {("data_starvation", "sim-001", "0"), ("data_starvation", "sim-001", "1")}),
    ],
)
def test_scraped_trace_opens_the_findings_a_direct_replay_finds(
    tmp_path: Path, receiving: Callable[..., tuple[CollectorProcess, int]], scenario: str, incident_s: int,
    expected: set[tuple[str, str, str]],
) -> None:  # fmt: skip
    """The agent's /metrics (dcgm-exporter names, plus ironsight's) replaying an incident as it
    happens, scraped by Prometheus and remote-written: the collector's detector opens the findings the
    same trace stored directly gives (kind, node, GPU; start within one detector step)."""
    from ironsight.collector.detect.findings import detect
    from ironsight.collector.store import Store
    from ironsight.offline.simulate import simulate

    from support.trace_exporter import TraceExporter

    # The incident starts 25 s after the scraping does.
    start_ns = (time.time_ns() - (incident_s - 25) * 10**9) // 10**9 * 10**9
    header, stream = simulate(
        scenario, nodes=2, gpus=2, duration_s=incident_s + 150, seed=77, start_ns=start_ns
    )
    batches = list(stream)
    collector, rw = receiving()
    exporters = [TraceExporter(header, batches, n.node_id, f"127.0.0.1:{free_port()}") for n in header.nodes]
    scraped_from = datetime.now(UTC).replace(tzinfo=None)
    prom = None
    try:
        prom = Prometheus(
            tmp_path, {"agents": [(f"127.0.0.1:{e.server.server_port}", {"instance": n.node_id})
                                  for e, n in zip(exporters, header.nodes, strict=True)]}, scrape_s=1,
            remote_write=f"  - url: http://127.0.0.1:{rw}/api/v1/write\n    queue_config:\n      batch_send_deadline: 1s",
        )  # fmt: skip
        found: list[dict[str, object]] = []
        deadline = time.monotonic() + 120
        while {(f["kind"], f["node"], f["device"]) for f in found} < expected and time.monotonic() < deadline:
            time.sleep(2)
            out = run_cli("--collector", collector.target, "--insecure", "--format", "json", "query",
                          "SELECT kind, node, device, start_time FROM events").stdout  # fmt: skip
            found = json.loads(out)
        until = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=10)
    finally:
        if prom is not None:
            prom.stop()
        for e in exporters:
            e.stop()
        collector.stop()
    assert found, f"the collector's detector should open the {scenario} finding from scraped data"
    # The same trace stored directly, from when the scraping started to when the finding was open.
    direct = Store(tmp_path / "direct.duckdb")
    lo, hi = scraped_from.timestamp() * 10**9 // 1, (until.timestamp() + 10) * 10**9 // 1
    direct.ingest([b for b in batches if lo <= min(min(t.time_ns) for t in b.tables if t.time_ns) <= hi])
    offline = detect(direct.con, scraped_from, until + timedelta(seconds=10)).to_pylist()
    direct.close()
    want = {(f["kind"], f["node"], f["device"]): f["start_time"] for f in offline}
    have = {(f["kind"], f["node"], f["device"]): datetime.fromisoformat(str(f["start_time"])) for f in found}
    assert have.keys() == want.keys() == expected
    for key, start in want.items():
        assert abs((have[key] - start).total_seconds()) <= 10, key


def test_over_tls_each_sender_stores_only_its_own_instances(
    tmp_path: Path, node_exporter: str, receiving: Callable[..., tuple[CollectorProcess, int]]
) -> None:
    """One Prometheus, two remote_write entries: one by client certificate, one by bearer token, each
    bound to its instances in the senders file; the collector serves TLS with its own certificate."""
    import ssl
    import urllib.error
    import urllib.request

    from ironsight.cli import pki

    pki.init(tmp_path / "pki", days=2)
    for name, ips in (("collector", ["127.0.0.1"]), ("prometheus-tls", [])):
        pki.issue(tmp_path / "pki", name, [], ips, 2, name)
    pki.issue(tmp_path / "pki", "me", [], [], 2, "me", reader=True)
    (tmp_path / "token").write_text("t0ken-for-prometheus\n")
    (tmp_path / "senders.toml").write_text(
        f'[[sender]]\nname = "prometheus-tls"\ncertificate = "prometheus-tls"\ninstances = "tls-.*"\n\n'
        f'[[sender]]\nname = "prom-token"\ntoken_file = "{tmp_path / "token"}"\ninstances = "tok-.*"\n'
    )
    p = tmp_path / "pki"
    collector, rw = receiving(
        "--no-detect", "--tls-ca", str(p / "ca.pem"), "--tls-cert", str(p / "collector.pem"),
        "--tls-key", str(p / "collector.key"), "--remote-write-senders", str(tmp_path / "senders.toml"),
    )  # fmt: skip
    url = f"https://127.0.0.1:{rw}/api/v1/write"
    context = ssl.create_default_context(cafile=str(p / "ca.pem"))
    with pytest.raises(urllib.error.HTTPError) as refused:  # TLS without a certificate or a token
        urllib.request.urlopen(
            urllib.request.Request(url, data=b"x", method="POST"), context=context, timeout=10
        )
    assert refused.value.code == 401
    prom = Prometheus(
        tmp_path,
        {"a": (node_exporter, {"instance": "tls-node"}), "b": (node_exporter, {"instance": "tok-node"})},
        scrape_s=1,
        remote_write=(
            f"  - url: {url}\n    tls_config: {{ca_file: {p / 'ca.pem'}, cert_file: {p / 'prometheus-tls.pem'}, "
            f"key_file: {p / 'prometheus-tls.key'}}}\n    queue_config: {{batch_send_deadline: 1s}}\n"
            f"  - url: {url}\n    authorization: {{credentials_file: {tmp_path / 'token'}}}\n"
            f"    tls_config: {{ca_file: {p / 'ca.pem'}}}\n    queue_config: {{batch_send_deadline: 1s}}"
        ),
    )
    try:
        time.sleep(12)
    finally:
        prom.stop()
    time.sleep(4)  # settled
    tls = ["--tls-ca", str(p / "ca.pem"), "--tls-cert", str(p / "me.pem"), "--tls-key", str(p / "me.key")]
    nodes = json.loads(run_cli("--collector", collector.target, *tls, "--format", "json", "nodes").stdout)
    assert sorted((n["node"], n["agent_version"]) for n in nodes) == [
        ("tls-node", "remote write (prometheus-tls)"), ("tok-node", "remote write (prom-token)")]  # fmt: skip
    rows = json.loads(run_cli("--collector", collector.target, *tls, "--format", "json", "query",
                              "SELECT node, count(*) AS n, count(DISTINCT time) AS t FROM load GROUP BY node "
                              "ORDER BY node").stdout)  # fmt: skip
    assert [r["node"] for r in rows] == ["tls-node", "tok-node"]
    assert all(r["n"] == r["t"] >= 5 for r in rows)  # a row a scrape, none twice
