"""Readings -> Prometheus text format, under node_exporter's and dcgm-exporter's metric names.

People's dashboards and alerts already query those names; reusing them means
ironsight drops in without rewriting any of it. What neither exporter has is
ours, under ironsight_.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from ironsight.core.reading import DeviceInfo, Owners, Reading, Value
from ironsight.core.series_rules import (
    CORE_THROTTLES,
    FB_FREE,
    MIB,
    PACKAGE_THROTTLES,
    RULES,
    XID_COUNT,
    XID_LAST,
    device_labels,
)

Family = GaugeMetricFamily | CounterMetricFamily


class _Families:
    """Metric families by name, created on first use, so each rule is one call."""

    def __init__(self) -> None:
        self.by_name: dict[str, Family] = {}

    def add(self, name: str, kind: str, labels: dict[str, str], value: Value, help: str = "") -> None:
        if value is None:
            return  # not available: no sample, never a 0
        fam = self.by_name.get(name)
        if fam is None:
            doc = help or name
            if kind == "counter":
                fam = CounterMetricFamily(name.removesuffix("_total"), doc, labels=list(labels))
            else:
                fam = GaugeMetricFamily(name, doc, labels=list(labels))
            self.by_name[name] = fam
        fam.add_metric(list(labels.values()), float(value))


class XidHistory:
    """XIDs arrive as events on one tick; a scrape must still show them afterwards."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}
        self.count: dict[str, int] = {}

    def add(self, reading: Reading) -> None:
        for index, v in reading.rows("gpu_xid"):
            xid = v.get("xid")
            if xid is not None:
                self.last[index] = int(xid)
                self.count[index] = self.count.get(index, 0) + 1


def _scaled(value: Value, scale: float) -> Value:
    return None if value is None else value * scale


class ReadingCollector(Collector):
    def __init__(
        self,
        reading: Reading,
        inventory: list[DeviceInfo],
        hostname: str,
        xids: XidHistory | None = None,
        owners: Owners | None = None,
    ) -> None:
        """owners: the last look at who owns each GPU (the reading's own, if it has one)."""
        self.reading = reading
        # dcgm-exporter's label for a GPU's HPC job (never `job`, which Prometheus owns); several
        # jobs on one GPU comma-separated. Only where some GPU has a job, as dcgm-exporter.
        # On Kubernetes, dcgm-exporter's pod, namespace and container instead (the first pod on a GPU).
        self.hpc_jobs: dict[str, str] = {}
        self.pods: dict[str, dict[str, str]] = {}
        for o in (owners or reading.owners or Owners((), ())).jobs:
            if o.source == "kubernetes":
                attrs = dict(o.attrs)
                self.pods.setdefault(o.gpu, {k: attrs.get(k, "") for k in ("pod", "namespace", "container")})
            else:
                self.hpc_jobs[o.gpu] = f"{self.hpc_jobs[o.gpu]},{o.job}" if o.gpu in self.hpc_jobs else o.job
        self.inventory = {(d.kind, d.name): d for d in inventory}
        self.hostname = hostname
        if xids is None:  # one reading alone (--once): what it saw
            xids = XidHistory()
            xids.add(reading)
        self.xids = xids

    def collect(self) -> Iterator[Metric]:
        f = _Families()
        for table, rules in RULES.items():
            for device, v in self.reading.rows(table):
                labels = self._labels(table, device)
                for rule in rules:
                    value = v.get(rule.column)
                    f.add(rule.name, rule.kind, labels | dict(rule.labels), _scaled(value, rule.scale))
                if table == "gpu":
                    self._gpu_special(f, device, v, labels)
            if table == "cpu":
                self._throttles(f)
        yield from f.by_name.values()

    def _labels(self, table: str, device: str) -> dict[str, str]:
        labels = device_labels(table, device, self.inventory, self.hostname)
        if table == "gpu":
            if self.hpc_jobs:
                labels["hpc_job"] = self.hpc_jobs.get(device, "")
            if self.pods:
                labels |= self.pods.get(device, dict.fromkeys(("pod", "namespace", "container"), ""))
        return labels

    def _gpu_special(self, f: _Families, index: str, v: dict[str, Value], labels: dict[str, str]) -> None:
        mem_used, mem_total = v.get("memory_used_bytes"), v.get("memory_total_bytes")
        if mem_used is not None and mem_total is not None:
            f.add(FB_FREE, "gauge", labels, (mem_total - mem_used) / MIB)
        f.add(XID_LAST, "gauge", labels, self.xids.last.get(index, 0))
        f.add(XID_COUNT, "counter", labels, self.xids.count.get(index, 0))

    def _throttles(self, f: _Families) -> None:
        # Throttle counters belong to a core and a package, not to each hyperthread:
        # emit each once (the first CPU's), as node_exporter does.
        cores: dict[tuple[str, str], Value] = {}
        packages: dict[str, Value] = {}
        for _, v in self.reading.rows("cpu"):
            core, package = v.get("core_id"), v.get("package_id")
            if core is not None and package is not None:
                cores.setdefault((str(core), str(package)), v.get("core_throttles"))
                packages.setdefault(str(package), v.get("package_throttles"))
        for (core_label, package_label), count in sorted(cores.items()):
            f.add(CORE_THROTTLES, "counter", {"core": core_label, "package": package_label}, count)
        for package_label, count in sorted(packages.items()):
            f.add(PACKAGE_THROTTLES, "counter", {"package": package_label}, count)


def render(reading: Reading, inventory: list[DeviceInfo], hostname: str) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReadingCollector(reading, inventory, hostname))
    return generate_latest(registry)
