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

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from flows.partition import Output
from iotpipe import metrics as m
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
        for metric, value in (
            (m.FLOW_READINGS, s.readings),
            (m.FLOW_BAD, s.bad),
            (m.FLOW_LATE, s.late),
            (m.FLOW_DUPLICATES, s.duplicates),
            (m.FLOW_AGGREGATES, s.aggregates),
            (m.FLOW_SITE_AGGREGATES, s.site_aggregates),
            (m.FLOW_SITE_PARTIALS_DROPPED, s.site_partials_dropped),
            (m.SINK_POINTS, points),
            (m.SINK_RETRIES, retries),
            (m.SINK_DEAD_LETTERED, dead),
        ):
            family = metric.family()
            family.add_metric(flow, value)
            yield family
        alerts = m.FLOW_ALERTS.family()
        for (detector, state, severity), n in sorted(s.alerts.items()):
            alerts.add_metric([s.flow, detector, state, severity], n)
        yield alerts
