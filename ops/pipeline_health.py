"""A snapshot of the pipeline's health: what ``iotpipe status``, the dashboard and Grafana show.

Plain frozen records (``to_dict`` for JSON); ``ops.health`` fills them in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from iotpipe import metrics as m

ComponentState = Literal["up", "down", "off"]
TopicRole = Literal["readings", "alerts", "aggregates", "dlq.ingest", "dlq.sink", "late"]

# Counters turned into per-second rates, per kind of component: (key, sample name).
RATE_COUNTERS: dict[str, tuple[tuple[str, str], ...]] = {
    "ingest": (
        ("messages", m.INGEST_MESSAGES.sample),
        ("readings", m.INGEST_READINGS.sample),
        ("produced", m.INGEST_PRODUCED.sample),
        ("dead_lettered", m.INGEST_DEAD_LETTERED.sample),
    ),
    "flow": (
        ("readings", m.FLOW_READINGS.sample),
        ("aggregates", m.FLOW_AGGREGATES.sample),
        ("alerts", m.FLOW_ALERTS.sample),
        ("late", m.FLOW_LATE.sample),
        ("sink_points", m.SINK_POINTS.sample),
    ),
}


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    """A server of the stack (Mosquitto, Kafka, InfluxDB)."""

    name: str
    state: str  # up / external / down / unhealthy, as ``iotpipe stack status``
    up: bool
    address: str
    detail: str


@dataclass(frozen=True, slots=True)
class TopicHealth:
    """Messages held by one pipeline topic (sum over partitions of high - low)."""

    topic: str
    role: TopicRole
    sensor_type: str | None
    exists: bool
    partitions: int
    messages: int | None
    end_offset: int | None  # sum of high watermarks: everything ever written
    rate: float | None  # messages/s written since the previous snapshot
    error: str = ""  # offsets could not be read (e.g. a partition without a leader yet)


@dataclass(frozen=True, slots=True)
class PartitionLag:
    """A consumer group's position in one partition."""

    group: str
    topic: str
    partition: int
    committed: int | None  # None: the group has committed nothing here yet
    end: int
    lag: int | None


@dataclass(frozen=True, slots=True)
class Sample:
    """One Prometheus sample."""

    name: str
    labels: dict[str, str]
    value: float


@dataclass(frozen=True, slots=True)
class ComponentMetrics:
    """A pipeline process's Prometheus endpoint, scraped (or not reachable)."""

    name: str  # ingest, flow-normal, flow-high
    kind: str  # ingest, flow
    url: str
    state: ComponentState  # off: its metrics port is 0
    error: str
    samples: tuple[Sample, ...] = ()
    rates: dict[str, float | None] = field(default_factory=dict)

    @property
    def up(self) -> bool:
        return self.state == "up"

    def total(self, name: str, **labels: str) -> float | None:
        """Sum of the samples called ``name`` whose labels match; None when not up."""
        if not self.up:
            return None
        return sum(
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def by_label(self, name: str, label: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.samples:
            if s.name == name and label in s.labels:
                out[s.labels[label]] = out.get(s.labels[label], 0.0) + s.value
        return out


@dataclass(frozen=True, slots=True)
class DeadLetters:
    """Refused input and undeliverable points.

    ``by_reason`` comes from the ingester's counters (since it started) when it
    is up; otherwise it is empty and ``source`` says the topic totals are all
    there is. The topic totals cover everything Kafka still retains.
    """

    source: Literal["ingest metrics", "kafka topics"]
    by_reason: dict[str, int]
    ingest_topic: int | None
    sink_topic: int | None
    sink_from_flows: int | None


@dataclass(frozen=True, slots=True)
class AlertCounts:
    """Alerts in the alerts topic, and alert events by detector/state from the flows."""

    topic_total: int | None
    by_detector: dict[str, int]
    by_state: dict[str, int]
    by_severity: dict[str, int] = field(default_factory=dict)  # once the flows label it


@dataclass(frozen=True, slots=True)
class PipelineHealth:
    """One snapshot; ``to_dict()`` is JSON-ready (``iotpipe status --json``)."""

    at_ms: int
    elapsed_s: float
    services: tuple[ServiceHealth, ...]
    kafka_error: str | None
    topics: tuple[TopicHealth, ...]
    lag: tuple[PartitionLag, ...]
    components: tuple[ComponentMetrics, ...]
    dead_letters: DeadLetters
    alerts: AlertCounts

    def topic(self, name: str) -> TopicHealth | None:
        return next((t for t in self.topics if t.topic == name), None)

    def component(self, name: str) -> ComponentMetrics | None:
        return next((c for c in self.components if c.name == name), None)

    def lag_by_topic(self) -> dict[tuple[str, str], int | None]:
        """(group, topic) -> total lag; None when the group committed nothing there."""
        out: dict[tuple[str, str], int | None] = {}
        for p in self.lag:
            key = (p.group, p.topic)
            if p.lag is None:
                out.setdefault(key, None)
            else:
                out[key] = (out.get(key) or 0) + p.lag
        return out

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["lag_by_topic"] = [
            {"group": g, "topic": t, "lag": lag} for (g, t), lag in self.lag_by_topic().items()
        ]
        return data
