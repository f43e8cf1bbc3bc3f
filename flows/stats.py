"""Counters for a running flow, exported to Prometheus for `iotpipe status` and dashboards.

Bumped once per micro-batch (never per reading), from Bytewax worker threads:
a lock per bump is cheap at that rate and keeps totals exact with ``-w 2``.
Each InfluxDB writer keeps its own ``WriterStats``; they are summed at scrape time.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from flows.partition import Output
from sinks.influx import WriterStats


@dataclass
class FlowStats:
    """Running totals since the flow process started."""

    flow: str
    readings: int = 0
    bad: int = 0
    late: int = 0
    duplicates: int = 0
    aggregates: int = 0
    site_aggregates: int = 0
    site_partials_dropped: int = 0
    alerts: Counter[tuple[str, str, str]] = field(
        default_factory=Counter
    )  # detector, state, severity
    writers: list[WriterStats] = field(default_factory=list)  # one per sink partition
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, readings: int, out: Output) -> None:
        with self._lock:
            self.readings += readings
            self.bad += len(out.bad)
            self.late += len(out.late)
            self.duplicates += out.duplicates
            self.aggregates += len(out.aggregates)
            for alert in out.alerts:
                self.alerts[(alert.detector, alert.state, alert.severity)] += 1

    def count_sites(self, emitted: int, dropped_total: int) -> None:
        """Roll-ups emitted; ``dropped_total`` is one roll-up state's running total."""
        with self._lock:
            self.site_aggregates += emitted
            self.site_partials_dropped = max(self.site_partials_dropped, dropped_total)


class FlowStatsCollector(Collector):
    """Exposes a ``FlowStats`` as Prometheus metrics at scrape time."""

    def __init__(self, stats: FlowStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s, flow = self.stats, [self.stats.flow]
        writers = list(s.writers)
        points = sum(w.points_written for w in writers)
        retries = sum(w.retries for w in writers)
        dead = sum(w.dead_lettered for w in writers)
        for name, doc, value in (
            ("iotpipe_flow_readings", "Readings taken in", s.readings),
            ("iotpipe_flow_bad", "Kafka values that were not readings", s.bad),
            ("iotpipe_flow_late", "Readings later than the allowed lateness", s.late),
            ("iotpipe_flow_duplicates", "Readings dropped as already counted", s.duplicates),
            ("iotpipe_flow_aggregates", "Window aggregates emitted", s.aggregates),
            ("iotpipe_flow_site_aggregates", "Per-site roll-ups emitted", s.site_aggregates),
            (
                "iotpipe_flow_site_partials_dropped",
                "Partials that came after their roll-up was retired",
                s.site_partials_dropped,
            ),
            ("iotpipe_sink_points", "Points InfluxDB accepted", points),
            ("iotpipe_sink_retries", "InfluxDB write attempts retried", retries),
            ("iotpipe_sink_dead_lettered", "Points sent to dlq.sink", dead),
        ):
            family = CounterMetricFamily(name, doc, labels=["flow"])
            family.add_metric(flow, value)
            yield family
        alerts = CounterMetricFamily(
            "iotpipe_flow_alerts",
            "Alert events emitted",
            labels=["flow", "detector", "state", "severity"],
        )
        for (detector, state, severity), n in sorted(s.alerts.items()):
            alerts.add_metric([s.flow, detector, state, severity], n)
        yield alerts
