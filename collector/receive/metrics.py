"""The receiver's figures on the collector's /metrics: per sender, and what waits to settle."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector as PromCollector

from ironsight.collector.receive.endpoint import Receiver

TOP_FAMILIES = 20  # dropped families named per sender; the rest are counted as "other"


class ReceiverMetrics(PromCollector):
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver

    def collect(self) -> Iterator[Metric]:
        stats = {name: (s.requests, s.samples, s.stored, s.series, s.refused, s.dropped)
                 for name, s in self.receiver.figures().items()}  # fmt: skip
        requests = CounterMetricFamily(
            "ironsight_receive_requests", "Remote-write requests received, by sender and HTTP status",
            labels=["sender", "code"],
        )  # fmt: skip
        plain = [
            CounterMetricFamily(name, text, labels=["sender"])
            for name, text in (
                ("ironsight_receive_samples", "Samples received, stored or not"),
                ("ironsight_receive_samples_stored", "Samples committed (they settle into rows afterwards)"),
                ("ironsight_receive_series_mapped", "Series mapped to an ironsight column, counted per request"),
                ("ironsight_receive_series_refused", "Series refused (a 400 names them): no node, a value "
                 "that is not finite, an instance the sender may not write for"),
            )
        ]  # fmt: skip
        dropped = CounterMetricFamily(
            "ironsight_receive_samples_dropped",
            f"Samples of series ironsight has no column for, by family (the top {TOP_FAMILIES}, then other)",
            labels=["sender", "family"],
        )
        for name, (codes, *figures, families) in sorted(stats.items()):
            for code, n in sorted(codes.items()):
                requests.add_metric([name, str(code)], n)
            for family, value in zip(plain, figures, strict=True):
                family.add_metric([name], value)
            top = families.most_common(TOP_FAMILIES)
            for fam, n in top:
                dropped.add_metric([name, fam], n)
            rest = sum(families.values()) - sum(n for _, n in top)
            if rest:
                dropped.add_metric([name, "other"], rest)
        yield requests
        yield from plain
        yield dropped
        staging = self.receiver.staging
        yield GaugeMetricFamily("ironsight_receive_backlog_samples", "Received samples waiting to settle into rows",
                                value=staging.backlog)  # fmt: skip
        yield CounterMetricFamily("ironsight_receive_rows_settled", "Rows settled from received samples",
                                  value=staging.settled_rows)  # fmt: skip
