"""Every metric the agent and the collector expose passes `promtool check metrics`.

The only complaints allowed are promtool's style lints on what compatibility
requires: node_exporter's own camelCase names (node_memory_MemTotal_bytes,
node_netstat_Tcp_*), dcgm-exporter's labels UUID and modelName (also on our
ironsight_gpu_* series, so they join with the DCGM ones in PromQL) and its
DCGM_FI_DEV_PCIE_REPLAY_COUNTER. Existing dashboards query exactly those.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from ironsight.agent.samplers.base import SamplerContext
from ironsight.agent.samplers.gpu import GpuSampler
from ironsight.core.exposition import render
from ironsight.v1 import telemetry_pb2_grpc as pb_grpc

from support.batches import one_batch
from support.nvml_double import H100, CaptureNvml, capture
from support.processes import BIN, CollectorProcess
from support.prom import promtool

COMPATIBLE = re.compile(
    r"^(node_(memory(_numa)?_[A-Z]\w*|netstat_Tcp_\w+) metric names should be written in 'snake_case' not 'camelCase'"
    r"|(DCGM_FI_\w+|ironsight_gpu_\w+) label names should be written in 'snake_case' not 'camelCase'"
    r"|DCGM_FI_DEV_PCIE_REPLAY_COUNTER metric name should not include type 'counter')$"
)


def test_agent_exposition_passes_promtool(node_exporter_tree: Path) -> None:
    host = subprocess.run(
        [str(BIN / "ironsight-agent"), "--once", f"--path.procfs={node_exporter_tree / 'proc'}",
         f"--path.sysfs={node_exporter_tree / 'sys'}", "--no-collector.gpu"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    sampler = GpuSampler(SamplerContext(nvml=CaptureNvml(capture(H100), "load")))
    gpu = render(sampler.sample(), sampler.inventory(), "node1").decode()
    assert "DCGM_FI_DEV_GPU_UTIL" in gpu and "node_cpu_seconds_total" in host
    problems = promtool(host) + promtool(gpu)
    assert [p for p in problems if not COMPATIBLE.match(p)] == []


@pytest.mark.slow
def test_collector_metrics_pass_promtool(tmp_path: Path) -> None:
    # Remote write on (to a port nothing listens on) so its metrics are there too.
    rw = ["--remote-write-url", "http://127.0.0.1:9/api/v1/write"]
    c = CollectorProcess(tmp_path / "p.duckdb", tmp_path / "c.log", rw, http=True).start()
    try:
        with c.channel() as ch:
            list(pb_grpc.IngestStub(ch).Stream(iter([one_batch(1, "n1")]), timeout=20))
        text = c.metrics("ironsight_detector_steps_total")
        assert (
            "ironsight_collector_node_lag_seconds" in text and "ironsight_remote_write_retries_total" in text
        )
        assert "ironsight_findings_opened_total" in text
        assert promtool(text) == []
    finally:
        c.stop()
