"""Against a real Prometheus: key expressions of the public node_exporter and dcgm-exporter dashboards
return data when it scrapes our agent (this machine, and GPUs through the NVML double)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from ironsight.agent.metrics import Latest, serve
from ironsight.agent.runner import Runner
from ironsight.agent.samplers.base import SamplerContext
from ironsight.agent.samplers.gpu import GpuSampler

from support.nvml_double import H100, CaptureNvml, capture, query_gpu
from support.processes import BIN, free_port, wait_port
from support.prom import Prometheus

# From "Node Exporter Full" (grafana.com 1860) and NVIDIA's DCGM exporter
# dashboard (12239), with $node / $gpu substituted and $__rate_interval as 5s.
NODE = {
    "cpu busy": '100 * (1 - avg(rate(node_cpu_seconds_total{mode="idle",job="host"}[5s])))',
    "cpu by mode": 'sum by (mode) (rate(node_cpu_seconds_total{job="host"}[5s]))',
    "memory available": 'node_memory_MemAvailable_bytes{job="host"}',
    "memory used": 'node_memory_MemTotal_bytes{job="host"} - node_memory_MemAvailable_bytes{job="host"}',
    "load": 'node_load1{job="host"}',
    "disk read": 'rate(node_disk_read_bytes_total{job="host"}[5s])',
    "disk io time": 'rate(node_disk_io_time_seconds_total{job="host"}[5s])',
    "network receive": 'rate(node_network_receive_bytes_total{job="host",device!="lo"}[5s])',
    "network transmit": 'rate(node_network_transmit_bytes_total{job="host",device!="lo"}[5s])',
}
DCGM = {
    "gpu utilization": 'DCGM_FI_DEV_GPU_UTIL{job="gpu", gpu=~"0"}',
    "temperature": 'DCGM_FI_DEV_GPU_TEMP{job="gpu", gpu=~"0"}',
    "power": 'DCGM_FI_DEV_POWER_USAGE{job="gpu", gpu=~"0"}',
    "total power": 'sum(DCGM_FI_DEV_POWER_USAGE{job="gpu"})',
    "sm clock": 'DCGM_FI_DEV_SM_CLOCK{job="gpu"} * 1000000',
    "memory clock": 'DCGM_FI_DEV_MEM_CLOCK{job="gpu"} * 1000000',
    "framebuffer used": 'DCGM_FI_DEV_FB_USED{job="gpu"}',
    "framebuffer used %": 'DCGM_FI_DEV_FB_USED{job="gpu"} / (DCGM_FI_DEV_FB_USED{job="gpu"} + DCGM_FI_DEV_FB_FREE{job="gpu"})',
    "by model": 'avg by (modelName, UUID, hostname) (DCGM_FI_DEV_GPU_TEMP{job="gpu"})',
}


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    tmp = tmp_path_factory.mktemp("prom")
    host_port = free_port()
    agent = subprocess.Popen(
        [str(BIN / "ironsight-agent"), "--metrics-listen", f"127.0.0.1:{host_port}", "--interval", "0.5",
         "--no-collector.gpu"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    # GPUs: the agent's own endpoint, fed by the NVML double with an H100 under load.
    sampler = GpuSampler(SamplerContext(nvml=CaptureNvml(capture(H100), "load")))
    runner = Runner([sampler], budget_s=5.0)
    latest = Latest("gpu-node-1")
    latest.update(runner.tick(), runner.inventory())
    gpu_port = free_port()
    server = serve(f"127.0.0.1:{gpu_port}", latest)
    wait_port(host_port, agent)
    prom = Prometheus(tmp, {"host": f"127.0.0.1:{host_port}", "gpu": f"127.0.0.1:{gpu_port}"})
    try:
        yield prom
    finally:
        prom.stop()
        server.shutdown()
        runner.close()
        agent.terminate()
        agent.wait(timeout=20)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NODE))
def test_node_exporter_dashboard_expressions(prometheus: Prometheus, name: str) -> None:
    result = prometheus.wait_for(NODE[name])
    assert result, f"{name}: {NODE[name]} returned nothing"
    values = [float(r["value"][1]) for r in result]
    assert all(v >= 0 for v in values)
    if name == "cpu busy":
        assert 0 <= values[0] <= 100
    if name == "memory available":
        total = float(prometheus.query('node_memory_MemTotal_bytes{job="host"}')[0]["value"][1])
        assert 0 < values[0] < total


@pytest.mark.parametrize("name", sorted(DCGM))
def test_dcgm_exporter_dashboard_expressions(prometheus: Prometheus, name: str) -> None:
    result = prometheus.wait_for(DCGM[name])
    assert result, f"{name}: {DCGM[name]} returned nothing"
    q = query_gpu(capture(H100), "load")
    value = float(result[0]["value"][1])
    if name == "temperature":
        assert value == float(q["temperature.gpu"])
    if name == "by model":
        assert (
            result[0]["metric"]["modelName"] == q["name"] and result[0]["metric"]["hostname"] == "gpu-node-1"
        )
    if name == "framebuffer used %":
        assert 0 < value < 1
