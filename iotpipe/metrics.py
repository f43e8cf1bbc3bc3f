"""The Prometheus metrics every process exports and every reader scrapes.

The ingester and the flows export these; ``iotpipe status``, the dashboard
and the demo read them back. Each name is declared once here (with its help
text and labels), so an exporter and its readers cannot drift apart, and the
flows' metrics-port rule lives here too because health checks need it to
find a flow without asking it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

Kind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric family: its name (without ``_total``), help text, kind and labels."""

    name: str
    doc: str
    kind: Kind = "counter"
    labels: tuple[str, ...] = ()

    @property
    def sample(self) -> str:
        """The sample name a scrape shows (counters get ``_total``, histograms ``_count``)."""
        suffix = {"counter": "_total", "gauge": "", "histogram": "_count"}[self.kind]
        return self.name + suffix

    def family(
        self, value: float | None = None, labels: Sequence[str] | None = None
    ) -> CounterMetricFamily | GaugeMetricFamily:
        """An empty labelled family to ``add_metric`` to, or an unlabelled one with ``value``."""
        make = CounterMetricFamily if self.kind == "counter" else GaugeMetricFamily
        if value is not None:
            return make(self.name, self.doc, value=value)
        return make(self.name, self.doc, labels=list(labels or self.labels))


# -- the ingester ---------------------------------------------------------------
INGEST_MESSAGES = Metric("iotpipe_ingest_messages", "MQTT messages received")
INGEST_READINGS = Metric("iotpipe_ingest_readings", "Valid readings decoded")
INGEST_PRODUCED = Metric(
    "iotpipe_ingest_produced", "Readings confirmed by Kafka", labels=("sensor_type",)
)
INGEST_DEAD_LETTERED = Metric(
    "iotpipe_ingest_dead_lettered", "Refused items sent to dlq.ingest", labels=("reason",)
)
INGEST_ACKED = Metric("iotpipe_ingest_acked", "MQTT messages acknowledged")
INGEST_INFLIGHT = Metric(
    "iotpipe_ingest_inflight", "MQTT messages awaiting Kafka confirmation", "gauge"
)
INGEST_LOOP_ALIVE = Metric(
    "iotpipe_ingest_loop_alive",
    "1 while the MQTT network loop runs; 0 means the process is exiting",
    "gauge",
)
INGEST_SUBSCRIBED = Metric(
    "iotpipe_ingest_subscribed",
    "1 while connected with the subscription granted (SUBACK): readiness for publishers",
    "gauge",
)
INGEST_DELIVERY_ERRORS = Metric("iotpipe_ingest_kafka_delivery_errors", "Kafka writes that failed")
INGEST_DELIVERY_SECONDS = Metric(
    "iotpipe_ingest_kafka_delivery_seconds",
    "Time from MQTT receipt to Kafka confirmation",
    "histogram",
)

# -- the flows (every family carries the label ``flow``) ------------------------
_FLOW = ("flow",)
FLOW_READINGS = Metric("iotpipe_flow_readings", "Readings taken in", labels=_FLOW)
FLOW_BAD = Metric("iotpipe_flow_bad", "Kafka values that were not readings", labels=_FLOW)
FLOW_LATE = Metric("iotpipe_flow_late", "Readings later than the allowed lateness", labels=_FLOW)
FLOW_DUPLICATES = Metric(
    "iotpipe_flow_duplicates", "Readings dropped as already counted", labels=_FLOW
)
FLOW_AGGREGATES = Metric("iotpipe_flow_aggregates", "Window aggregates emitted", labels=_FLOW)
FLOW_SITE_AGGREGATES = Metric(
    "iotpipe_flow_site_aggregates", "Per-site roll-ups emitted", labels=_FLOW
)
FLOW_SITE_PARTIALS_DROPPED = Metric(
    "iotpipe_flow_site_partials_dropped",
    "Partials that came after their roll-up was retired",
    labels=_FLOW,
)
FLOW_ALERTS = Metric(
    "iotpipe_flow_alerts",
    "Alert events emitted",
    labels=("flow", "detector", "state", "severity"),
)
SINK_POINTS = Metric("iotpipe_sink_points", "Points InfluxDB accepted", labels=_FLOW)
SINK_RETRIES = Metric("iotpipe_sink_retries", "InfluxDB write attempts retried", labels=_FLOW)
SINK_DEAD_LETTERED = Metric("iotpipe_sink_dead_lettered", "Points sent to dlq.sink", labels=_FLOW)


def flow_metrics_port(base: int, priority: str, process_id: int = 0) -> int:
    """The normal flow on ``base``, the high flow on the next port; 0 = off.

    Processes of a multi-process flow (``-i``/``-a``) each take a further 2.
    """
    if not base:
        return 0
    return base + (1 if priority == "high" else 0) + 2 * process_id
