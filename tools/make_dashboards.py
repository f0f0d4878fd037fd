"""Write the Grafana dashboards and provisioning files under dashboards/ (make dashboards).

The JSON is generated so that ids, layout and the template variables stay
consistent across four dashboards; the files are committed, and a test fails
when they differ from what this script writes (--check).

Agent series are selected by Prometheus' `instance` label, the collector's by
its own `node` label; docs/fleet.md's scrape config sets instance to the node id
so that one `node` variable selects both.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "dashboards"
DS = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39  # Grafana 10.4-11: the classic dashboard model
AGENT = 'instance=~"$node"'
GPU = 'instance=~"$node", gpu=~"$gpu"'
RATE = "$__rate_interval"
JOB = 'ironsight_job=~"$job"'  # the collector's findings and jobs: the job they hit


@dataclass
class Panel:
    title: str
    targets: list[tuple[str, str]]  # (PromQL, legend)
    unit: str = "short"
    kind: str = "timeseries"
    w: int = 12
    h: int = 8
    description: str = ""
    instant: bool = False  # tables of the current state
    options: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)


def ts(title: str, unit: str, *targets: tuple[str, str], **kw: Any) -> Panel:
    return Panel(title, list(targets), unit, **kw)


def stat(title: str, expr: str, unit: str = "short", w: int = 6, **kw: Any) -> Panel:
    return Panel(title, [(expr, "")], unit, "stat", w, 4, defaults={"noValue": "0"}, **kw)


def table(title: str, expr: str, description: str, unit: str = "short", w: int = 24) -> Panel:
    return Panel(title, [(expr, "")], unit, "table", w, 8, description, instant=True)


def variables(gpu: bool = True, job: bool = False) -> list[dict[str, Any]]:
    def query(name: str, label: str, q: str) -> dict[str, Any]:
        return {
            "name": name,
            "label": label,
            "type": "query",
            "datasource": DS,
            "query": {"query": q, "refId": f"{name}-values"},
            "definition": q,
            "refresh": 2,  # on time range change: nodes come and go
            "multi": True,
            "includeAll": True,
            "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "sort": 3,
            "hide": 0,
        }

    out = [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
        },
        query("node", "Node", "label_values(node_cpu_seconds_total, instance)"),
    ]
    if gpu:
        out.append(query("gpu", "GPU", f"label_values(DCGM_FI_DEV_GPU_UTIL{{{AGENT}}}, gpu)"))
    if job:
        # The jobs the collectors know of (Slurm ids, namespace/pod, --job names); All also
        # keeps what no job is known to own.
        out.append(query("job", "Job", "label_values(ironsight_job_gpus, ironsight_job)"))
    return out


def render(uid: str, title: str, description: str, panels: list[Panel]) -> dict[str, Any]:
    out, x, y, row_h = [], 0, 0, 0
    for pid, p in enumerate(panels, start=1):
        if x + p.w > 24:
            x, y, row_h = 0, y + row_h, 0
        targets = []
        for i, (expr, legend) in enumerate(p.targets):
            t: dict[str, Any] = {"datasource": DS, "expr": expr, "refId": chr(ord("A") + i)}
            if legend:
                t["legendFormat"] = legend
            if p.instant:
                t.update(instant=True, range=False, format="table")
            targets.append(t)
        panel: dict[str, Any] = {
            "id": pid,
            "type": p.kind,
            "title": p.title,
            "datasource": DS,
            "gridPos": {"x": x, "y": y, "w": p.w, "h": p.h},
            "targets": targets,
            "fieldConfig": {"defaults": {"unit": p.unit, **p.defaults}, "overrides": []},
            "options": p.options,
        }
        if p.description:
            panel["description"] = p.description
        if p.instant:
            # One row per series, its labels as columns.
            panel["transformations"] = [{"id": "labelsToFields", "options": {"mode": "columns"}}]
        out.append(panel)
        x, row_h = x + p.w, max(row_h, p.h)
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["ironsight"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "browser",
        "templating": {
            "list": variables(
                gpu=any("$gpu" in e for p in panels for e, _ in p.targets),
                job=any("$job" in e for p in panels for e, _ in p.targets),
            )
        },
        "annotations": {"list": []},
        # The other ironsight dashboards, keeping the time range and the node / GPU chosen.
        "links": [
            {"type": "dashboards", "tags": ["ironsight"], "title": "ironsight", "asDropdown": True,
             "includeVars": True, "keepTime": True}
        ],
        "panels": out,
    }  # fmt: skip


def fleet() -> list[Panel]:
    return [
        stat("Nodes up", f"count(up{{{AGENT}}} == 1 and on(instance) node_load1) or vector(0)",
             description="Agent targets Prometheus scrapes successfully"),
        stat("Targets down", f"count(up{{{AGENT}}} == 0) or vector(0)"),
        stat("Nodes reporting to a collector",
             'count(time() - ironsight_collector_node_last_seen_seconds{node=~"$node"} < 30) or vector(0)',
             description="Nodes with a batch stored in the last 30 s"),
        stat("Active bottlenecks", f'count(ironsight_bottleneck_active{{node=~"$node", {JOB}}}) or vector(0)'),
        Panel("GPU utilization by node and GPU", [(f"DCGM_FI_DEV_GPU_UTIL{{{GPU}}}", "{{instance}} gpu {{gpu}}")],
              "percent", "status-history", 24, 10,
              "Heatmap: one row per GPU, colour by utilization",
              options={"showValue": "never", "rowHeight": 0.9},
              defaults={"min": 0, "max": 100, "color": {"mode": "continuous-RdYlGr"}}),
        ts("GPU power range", "watt",
           (f"min(DCGM_FI_DEV_POWER_USAGE{{{GPU}}})", "min"),
           (f"avg(DCGM_FI_DEV_POWER_USAGE{{{GPU}}})", "mean"),
           (f"max(DCGM_FI_DEV_POWER_USAGE{{{GPU}}})", "max")),
        ts("GPU temperature range", "celsius",
           (f"min(DCGM_FI_DEV_GPU_TEMP{{{GPU}}})", "min"),
           (f"avg(DCGM_FI_DEV_GPU_TEMP{{{GPU}}})", "mean"),
           (f"max(DCGM_FI_DEV_GPU_TEMP{{{GPU}}})", "max")),
        Panel("Active bottlenecks by kind",
              [(f'sum by (kind) (ironsight_bottleneck_active{{node=~"$node", {JOB}}})', "{{kind}}")],
              "short", "bargauge", 12, 8, options={"orientation": "horizontal"}),
        table("Jobs: GPUs held and open findings",
              f'sum by (ironsight_job) (ironsight_job_gpus{{node=~"$node", {JOB}}})',
              "Each job the collectors know of and the GPUs it holds now, from the agents' looks at their jobs"),
        Panel("Open findings by job",
              [(f'count by (ironsight_job, kind) (ironsight_bottleneck_active{{node=~"$node", {JOB}}})',
                "{{ironsight_job}} {{kind}}")],
              "short", "bargauge", 24, 6, "Which job each open finding hurts (empty: no job known on it)",
              options={"orientation": "horizontal"}),
        ts("Findings opened", "short",
           (f"sum by (kind) (increase(ironsight_findings_opened_total[{RATE}]))", "{{kind}}"),
           description="Findings the collectors' live detectors opened, by kind"),
    ]  # fmt: skip


def node() -> list[Panel]:
    cores = f'count by (instance) (node_cpu_seconds_total{{{AGENT}, mode="idle"}})'
    return [
        ts("CPU by mode", "percentunit",
           (f'sum by (instance, mode) (rate(node_cpu_seconds_total{{{AGENT}, mode!="idle"}}[{RATE}])) '
            f"/ on (instance) group_left {cores}", "{{instance}} {{mode}}"),
           options={"tooltip": {"mode": "multi"}}, defaults={"custom": {"stacking": {"mode": "normal"}}}),
        ts("Memory", "bytes",
           (f"node_memory_MemTotal_bytes{{{AGENT}}} - node_memory_MemAvailable_bytes{{{AGENT}}}",
            "{{instance}} used"),
           (f"node_memory_Cached_bytes{{{AGENT}}}", "{{instance}} cached"),
           (f"node_memory_MemTotal_bytes{{{AGENT}}}", "{{instance}} total")),
        ts("Pressure (PSI)", "percentunit",
           (f"rate(node_pressure_cpu_waiting_seconds_total{{{AGENT}}}[{RATE}])", "{{instance}} cpu some"),
           (f"rate(node_pressure_io_waiting_seconds_total{{{AGENT}}}[{RATE}])", "{{instance}} io some"),
           (f"rate(node_pressure_io_stalled_seconds_total{{{AGENT}}}[{RATE}])", "{{instance}} io full"),
           (f"rate(node_pressure_memory_waiting_seconds_total{{{AGENT}}}[{RATE}])", "{{instance}} memory some"),
           description="Share of time some (or all) tasks waited on CPU, I/O or memory"),
        ts("Disk throughput", "Bps",
           (f"rate(node_disk_read_bytes_total{{{AGENT}}}[{RATE}])", "{{instance}} {{device}} read"),
           (f"rate(node_disk_written_bytes_total{{{AGENT}}}[{RATE}])", "{{instance}} {{device}} write")),
        ts("Disk busy time", "percentunit",
           (f"rate(node_disk_io_time_seconds_total{{{AGENT}}}[{RATE}])", "{{instance}} {{device}}"),
           defaults={"max": 1}),
        ts("NIC throughput", "Bps",
           (f'rate(node_network_receive_bytes_total{{{AGENT}, device!="lo"}}[{RATE}])', "{{instance}} {{device}} rx"),
           (f'rate(node_network_transmit_bytes_total{{{AGENT}, device!="lo"}}[{RATE}])', "{{instance}} {{device}} tx")),
        ts("NIC drops and TCP retransmits", "pps",
           (f'rate(node_network_receive_drop_total{{{AGENT}, device!="lo"}}[{RATE}])', "{{instance}} {{device}} rx drop"),
           (f'rate(node_network_transmit_drop_total{{{AGENT}, device!="lo"}}[{RATE}])', "{{instance}} {{device}} tx drop"),
           (f"rate(node_netstat_Tcp_RetransSegs{{{AGENT}}}[{RATE}])", "{{instance}} TCP retransmits")),
        ts("RDMA congestion (RoCE)", "pps",
           (f"rate(ironsight_rdma_np_cnp_sent_total{{{AGENT}}}[{RATE}])", "{{instance}} {{device}} CNP sent"),
           (f"rate(ironsight_rdma_rp_cnp_handled_total{{{AGENT}}}[{RATE}])", "{{instance}} {{device}} CNP handled"),
           (f"rate(ironsight_rdma_np_ecn_marked_roce_packets_total{{{AGENT}}}[{RATE}])",
            "{{instance}} {{device}} ECN marked"),
           description="Congestion notification packets sent and handled, ECN-marked packets received"),
        ts("RDMA throughput", "Bps",
           (f"rate(node_infiniband_port_data_received_bytes_total{{{AGENT}}}[{RATE}])",
            "{{instance}} {{device}}:{{port}} rx"),
           (f"rate(node_infiniband_port_data_transmitted_bytes_total{{{AGENT}}}[{RATE}])",
            "{{instance}} {{device}}:{{port}} tx")),
        ts("GPU utilization", "percent",
           (f"DCGM_FI_DEV_GPU_UTIL{{{GPU}}}", "{{instance}} gpu {{gpu}}"), defaults={"max": 100}),
        ts("GPU power", "watt", (f"DCGM_FI_DEV_POWER_USAGE{{{GPU}}}", "{{instance}} gpu {{gpu}}")),
        ts("GPU temperature", "celsius", (f"DCGM_FI_DEV_GPU_TEMP{{{GPU}}}", "{{instance}} gpu {{gpu}}")),
    ]  # fmt: skip


def gpu() -> list[Panel]:
    by = "{{instance}} gpu {{gpu}}"
    return [
        ts("Utilization and SM activity", "percentunit",
           (f"DCGM_FI_DEV_GPU_UTIL{{{GPU}}} / 100", f"{by} utilization"),
           (f"DCGM_FI_PROF_SM_ACTIVE{{{GPU}}}", f"{by} SM active"),
           (f"DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{{{GPU}}}", f"{by} tensor active"),
           description="Utilization counts time any kernel ran; SM activity (Hopper GPM) how much of the chip did",
           defaults={"max": 1}),
        ts("Clocks against their maxima", "hertz",
           (f"ironsight_gpu_sm_clock_hertz{{{GPU}}}", f"{by} SM"),
           (f"ironsight_gpu_sm_clock_max_hertz{{{GPU}}}", f"{by} SM max"),
           (f"ironsight_gpu_mem_clock_hertz{{{GPU}}}", f"{by} memory"),
           (f"ironsight_gpu_mem_clock_max_hertz{{{GPU}}}", f"{by} memory max")),
        ts("Temperature against slowdown and shutdown", "celsius",
           (f"DCGM_FI_DEV_GPU_TEMP{{{GPU}}}", f"{by} die"),
           (f"DCGM_FI_DEV_MEMORY_TEMP{{{GPU}}}", f"{by} memory"),
           (f"ironsight_gpu_temperature_slowdown_celsius{{{GPU}}}", f"{by} slowdown"),
           (f"ironsight_gpu_temperature_shutdown_celsius{{{GPU}}}", f"{by} shutdown")),
        ts("Power against limit", "watt",
           (f"DCGM_FI_DEV_POWER_USAGE{{{GPU}}}", f"{by} power"),
           (f"DCGM_FI_DEV_POWER_MGMT_LIMIT{{{GPU}}}", f"{by} limit")),
        ts("Throttle time by reason", "percentunit",
           (f"rate(ironsight_gpu_throttle_sw_power_seconds_total{{{GPU}}}[{RATE}])", f"{by} SW power cap"),
           (f"rate(ironsight_gpu_throttle_sw_thermal_seconds_total{{{GPU}}}[{RATE}])", f"{by} SW thermal"),
           (f"rate(ironsight_gpu_throttle_hw_thermal_seconds_total{{{GPU}}}[{RATE}])", f"{by} HW thermal"),
           (f"rate(ironsight_gpu_throttle_hw_power_brake_seconds_total{{{GPU}}}[{RATE}])", f"{by} HW power brake"),
           description="Share of time the clocks were held down, per reason"),
        ts("PCIe throughput", "Bps",
           (f"rate(ironsight_gpu_pcie_rx_bytes_total{{{GPU}}}[{RATE}])", f"{by} host to device"),
           (f"rate(ironsight_gpu_pcie_tx_bytes_total{{{GPU}}}[{RATE}])", f"{by} device to host")),
        ts("NVLink throughput", "Bps",
           (f"rate(ironsight_gpu_nvlink_rx_bytes_total{{{GPU}}}[{RATE}])", f"{by} rx"),
           (f"rate(ironsight_gpu_nvlink_tx_bytes_total{{{GPU}}}[{RATE}])", f"{by} tx")),
        ts("ECC errors and remapped rows", "short",
           (f"increase(DCGM_FI_DEV_ECC_SBE_VOL_TOTAL{{{GPU}}}[{RATE}])", f"{by} single-bit"),
           (f"increase(DCGM_FI_DEV_ECC_DBE_VOL_TOTAL{{{GPU}}}[{RATE}])", f"{by} double-bit"),
           (f"DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS{{{GPU}}}", f"{by} uncorrectable remaps"),
           (f"DCGM_FI_DEV_ROW_REMAP_FAILURE{{{GPU}}}", f"{by} remap failure")),
        ts("XID", "short",
           (f"DCGM_FI_DEV_XID_ERRORS{{{GPU}}}", f"{by} last XID"),
           (f"increase(ironsight_gpu_xid_events_total{{{GPU}}}[{RATE}])", f"{by} XID events"),
           description="The last XID the driver reported (0: none since the agent started)",
           w=24),
    ]  # fmt: skip


def bottlenecks() -> list[Panel]:
    mine = f'node=~"$node", {JOB}'
    return [
        table("Active findings", f"ironsight_bottleneck_active{{{mine}}}",
              "Open findings: kind, node, device, severity, and the job each hit"),
        table("Active findings: since and cause",
              f"time() - ironsight_bottleneck_since_timestamp_seconds{{{mine}}}",
              "Seconds each open finding has lasted, with its cause", unit="s"),
        table("Evidence at the peak step", f"ironsight_bottleneck_evidence{{{mine}}}",
              "The figures that triggered each open finding (ironsight explain ID shows them over time)"),
        table("Recent findings (this time range)",
              f"max by (kind, node, device) (max_over_time(ironsight_bottleneck_active{{{mine}}}[$__range]))",
              "Every finding open at some point in the time range"),
        Panel("Findings over time", [(f"ironsight_bottleneck_active{{{mine}}}", "{{kind}} {{node}} {{device}}")],
              "short", "state-timeline", 24, 8, options={"showValue": "never", "mergeValues": True}),
        ts("Findings on the selected GPUs", "short",
           ('sum by (kind, node, device) (ironsight_bottleneck_active{node=~"$node", device=~"$gpu", '
            f'kind=~"thermal|power_cap|xid|hardware_fault|data_starvation|straggler", {JOB}}})',
            "{{kind}} {{node}} gpu {{device}}")),
        ts("Detector step duration", "s", ("ironsight_detector_step_seconds", "{{instance}}"),
           description="One step judges every node; should stay well under the 10 s step"),
        ts("Collector lag per node", "s", ('ironsight_collector_node_lag_seconds{node=~"$node"}', "{{node}}"),
           description="Now minus the newest sample stored from each node"),
        ts("Batches by outcome", "short",
           (f"sum by (outcome, reason) (rate(ironsight_collector_batches_total[{RATE}]))", "{{outcome}} {{reason}}")),
    ]  # fmt: skip


DASHBOARDS = {
    "ironsight-fleet": ("ironsight / Fleet", "Every node and GPU at a glance, and what the detector flags", fleet),
    "ironsight-node": ("ironsight / Node", "One node: CPU, memory, pressure, disks, NICs, RDMA and its GPUs", node),
    "ironsight-gpu": ("ironsight / GPU", "One GPU: activity, clocks, thermals, power, throttling, links, errors", gpu),
    "ironsight-bottlenecks": ("ironsight / Bottlenecks", "Active and recent findings with their evidence", bottlenecks),
}  # fmt: skip

DATASOURCE_YML = """# Grafana provisioning: copy to /etc/grafana/provisioning/datasources/ and set the urls.
apiVersion: 1
datasources:
  # The collector itself (--http-listen): the store at the agents' full resolution (docs/promql.md).
  - name: ironsight
    uid: ironsight
    type: prometheus
    access: proxy
    url: http://localhost:9470
    isDefault: true
    jsonData:
      timeInterval: 1s  # the agents' interval: lets $__rate_interval span 4 samples
      prometheusType: Prometheus
      prometheusVersion: 2.42.0
  # A Prometheus that scrapes the agents and the collector, for fleets that run one.
  - name: Prometheus
    uid: prometheus
    type: prometheus
    access: proxy
    url: http://localhost:9090
    jsonData:
      timeInterval: 1s
"""

DASHBOARDS_YML = """\
# Grafana provisioning: load ironsight's dashboards into an "ironsight" folder.
# Copy to /etc/grafana/provisioning/dashboards/ and the JSON files to the path below.
apiVersion: 1
providers:
  - name: ironsight
    folder: ironsight
    type: file
    disableDeletion: false
    updateIntervalSeconds: 60
    allowUiUpdates: false
    options:
      path: /var/lib/grafana/dashboards/ironsight
      foldersFromFilesStructure: false
"""


def files() -> dict[str, str]:
    out = {}
    for uid, (title, description, build) in DASHBOARDS.items():
        body = render(uid, title, description, build())
        out[f"{uid}.json"] = json.dumps(body, indent=2) + "\n"
    out["provisioning/datasources/ironsight.yml"] = DATASOURCE_YML
    out["provisioning/dashboards/ironsight.yml"] = DASHBOARDS_YML
    return out


def main(argv: list[str]) -> int:
    stale = []
    for name, text in files().items():
        path = OUT / name
        if "--check" in argv:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if stale:
        print(f"dashboards/ is stale ({', '.join(stale)}): run make dashboards", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
