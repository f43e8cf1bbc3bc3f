"""One snapshot of the whole pipeline's health, for ``iotpipe status`` and Grafana.

Everything here is read from the outside, the way an operator would: the
servers through ``Stack.status()`` (which also sees servers it did not
start), Kafka through an admin client (watermarks and committed offsets, so
no consumer joins a group and nothing is consumed), and the ingester and
flows through their Prometheus endpoints. Each part is optional: a part that
is down is reported as down, never raised, and every call has a short
timeout, so a snapshot takes well under two seconds whatever is running.

The parts are fetched concurrently. ``HealthCollector`` keeps one admin
client, one HTTP pool and one thread pool for a ``--watch`` loop;
``collect_health`` is the one-shot form.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

import urllib3
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from prometheus_client.parser import text_string_to_metric_families

from iotpipe import metrics as m
from iotpipe.catalogue import load_catalogue
from iotpipe.settings import Settings
from iotpipe.topics import KafkaTopics
from ops.pipeline_health import (
    RATE_COUNTERS,
    AlertCounts,
    ComponentMetrics,
    DeadLetters,
    PartitionLag,
    PipelineHealth,
    Sample,
    ServiceHealth,
    TopicHealth,
    TopicRole,
)
from ops.stack import Stack
from ops.stack.base import Service

KAFKA_TIMEOUT_S = 1.0
SCRAPE_CONNECT_S = 0.3
SCRAPE_READ_S = 0.8
_T = TypeVar("_T")

_QUIET = logging.getLogger("ops.health.kafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


class HealthCollector:
    """Collects snapshots with reusable clients; close it (or use ``with``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stack = Stack(settings)
        self.names = KafkaTopics(settings.kafka.topic_prefix)
        self.catalogue = load_catalogue(settings.core.sensors_file)
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="health")
        self._http = urllib3.PoolManager(
            maxsize=3,
            retries=False,
            timeout=urllib3.Timeout(connect=SCRAPE_CONNECT_S, read=SCRAPE_READ_S),
        )
        self._admin: AdminClient | None = None

    def __enter__(self) -> HealthCollector:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._http.clear()
        self._admin = None  # librdkafka handle is destroyed with the object

    # -- the snapshot ---------------------------------------------------------

    def collect(self, previous: PipelineHealth | None = None) -> PipelineHealth:
        started = time.monotonic()
        at_ms = int(time.time() * 1000)
        services = [self._pool.submit(_service_health, s) for s in self.stack.services.values()]
        scrapes = [
            self._pool.submit(self._scrape, name, kind, port)
            for name, kind, port in self._endpoints()
        ]
        kafka = self._pool.submit(self._kafka)
        topics_raw, lag, kafka_error = kafka.result()
        prev_at = previous.at_ms if previous else None
        dt = (at_ms - prev_at) / 1000 if prev_at is not None else 0.0
        topics = tuple(
            _with_rate(t, previous.topic(t.topic) if previous else None, dt) for t in topics_raw
        )
        components = tuple(
            _with_rates(c, previous.component(c.name) if previous else None, dt)
            for c in _results(scrapes)
        )
        return PipelineHealth(
            at_ms=at_ms,
            elapsed_s=round(time.monotonic() - started, 3),
            services=tuple(_results(services)),
            kafka_error=kafka_error,
            topics=topics,
            lag=tuple(lag),
            components=components,
            dead_letters=self._dead_letters(topics, components),
            alerts=self._alerts(topics, components),
        )

    def _endpoints(self) -> list[tuple[str, str, int]]:
        flow_port = self.settings.flow.metrics_port
        return [
            ("ingest", "ingest", self.settings.ingest.metrics_port),
            ("flow-normal", "flow", m.flow_metrics_port(flow_port, "normal")),
            ("flow-high", "flow", m.flow_metrics_port(flow_port, "high")),
        ]

    # -- Prometheus -----------------------------------------------------------

    def _scrape(self, name: str, kind: str, port: int) -> ComponentMetrics:
        if not port:
            return ComponentMetrics(name, kind, "", "off", "metrics port is 0")
        url = f"http://127.0.0.1:{port}/metrics"
        try:
            resp = self._http.request("GET", url)
            if resp.status != 200:
                return ComponentMetrics(name, kind, url, "down", f"HTTP {resp.status}")
            text = resp.data.decode("utf-8", "replace")
            samples = tuple(
                Sample(s.name, dict(s.labels), float(s.value))
                for family in text_string_to_metric_families(text)
                for s in family.samples
                if s.name.startswith("iotpipe_") and not s.name.endswith("_created")
            )
        except (urllib3.exceptions.HTTPError, ValueError) as exc:
            return ComponentMetrics(name, kind, url, "down", _short(exc))
        return ComponentMetrics(name, kind, url, "up", "", samples)

    # -- Kafka ----------------------------------------------------------------

    def _admin_client(self) -> AdminClient:
        if self._admin is None:
            conf: dict[str, Any] = {
                **self.settings.kafka.client_config(),
                "socket.connection.setup.timeout.ms": 1000,
                "logger": _QUIET,
            }
            self._admin = AdminClient(conf)
        return self._admin

    def _pipeline_topics(self) -> list[tuple[str, TopicRole, str | None]]:
        n = self.names
        out: list[tuple[str, TopicRole, str | None]] = [
            (n.readings(t), "readings", t) for t in sorted(self.catalogue.names)
        ]
        out += [
            (n.alerts, "alerts", None),
            (n.aggregates, "aggregates", None),
            (n.dlq_ingest, "dlq.ingest", None),
            (n.dlq_sink, "dlq.sink", None),
            (n.late, "late", None),
        ]
        return out

    def _kafka(self) -> tuple[list[TopicHealth], list[PartitionLag], str | None]:
        wanted = self._pipeline_topics()
        try:
            admin = self._admin_client()
            meta = admin.list_topics(timeout=KAFKA_TIMEOUT_S)
            parts = {
                name: sorted(meta.topics[name].partitions)
                for name, _, _ in wanted
                if name in meta.topics and not meta.topics[name].error
            }
            tps = [TopicPartition(name, p) for name, ps in parts.items() for p in ps]
            groups = self._group_requests(parts)
            low_f = admin.list_offsets(
                {tp: OffsetSpec.earliest() for tp in tps}, request_timeout=KAFKA_TIMEOUT_S
            )
            high_f = admin.list_offsets(
                {tp: OffsetSpec.latest() for tp in tps}, request_timeout=KAFKA_TIMEOUT_S
            )
            group_f = [
                admin.list_consumer_group_offsets(
                    [ConsumerGroupTopicPartitions(group, list(gtps))],
                    request_timeout=KAFKA_TIMEOUT_S,
                )
                for group, gtps in groups.items()
                if gtps
            ]
            low, low_err = _offsets(low_f)
            high, high_err = _offsets(high_f)
            committed: dict[tuple[str, str, int], int | None] = {}
            for futures in group_f:
                for group, fut in futures.items():
                    try:
                        result = fut.result()
                    except KafkaException:  # e.g. coordinator moving: no lag this time
                        continue
                    for tp in result.topic_partitions:
                        ok = tp.error is None and tp.offset >= 0
                        committed[(group, tp.topic, tp.partition)] = tp.offset if ok else None
        except (KafkaException, RuntimeError, ValueError) as exc:
            return [_missing(name, role, st) for name, role, st in wanted], [], _short(exc)
        errors = {**low_err, **high_err}
        topics = []
        for name, role, sensor_type in wanted:
            if name not in parts:
                topics.append(_missing(name, role, sensor_type))
                continue
            keys = [(name, p) for p in parts[name]]
            failed = next((errors[k] for k in keys if k in errors), "")
            ends = None if failed else sum(high[k] for k in keys)
            starts = None if failed else sum(low[k] for k in keys)
            topics.append(
                TopicHealth(
                    name,
                    role,
                    sensor_type,
                    True,
                    len(keys),
                    ends - starts if ends is not None and starts is not None else None,
                    ends,
                    None,
                    failed,
                )
            )
        lag = []
        for (group, topic, partition), offset in sorted(committed.items()):
            if (topic, partition) not in high:
                continue
            end = high[(topic, partition)]
            lag.append(
                PartitionLag(
                    group,
                    topic,
                    partition,
                    offset,
                    end,
                    max(0, end - offset) if offset is not None else None,
                )
            )
        return topics, lag, None

    def _group_requests(self, parts: dict[str, list[int]]) -> dict[str, list[TopicPartition]]:
        """Each flow group with the readings partitions of its priority's types."""
        out: dict[str, list[TopicPartition]] = {}
        for priority in ("normal", "high"):
            topics = [self.names.readings(t.name) for t in self.catalogue.by_priority(priority)]
            out[self.names.flow_group(priority)] = [
                TopicPartition(t, p) for t in sorted(topics) for p in parts.get(t, [])
            ]
        return out

    # -- derived counts -------------------------------------------------------

    def _dead_letters(
        self, topics: tuple[TopicHealth, ...], components: tuple[ComponentMetrics, ...]
    ) -> DeadLetters:
        ingest = next(c for c in components if c.name == "ingest")
        flows = [c for c in components if c.kind == "flow" and c.up]
        sink_total = (
            int(sum(c.total(m.SINK_DEAD_LETTERED.sample) or 0 for c in flows)) if flows else None
        )
        by_topic = {t.role: t.messages for t in topics}
        if ingest.up:
            reasons = ingest.by_label(m.INGEST_DEAD_LETTERED.sample, "reason")
            return DeadLetters(
                "ingest metrics",
                {k: int(v) for k, v in sorted(reasons.items())},
                by_topic.get("dlq.ingest"),
                by_topic.get("dlq.sink"),
                sink_total,
            )
        return DeadLetters(
            "kafka topics", {}, by_topic.get("dlq.ingest"), by_topic.get("dlq.sink"), sink_total
        )

    def _alerts(
        self, topics: tuple[TopicHealth, ...], components: tuple[ComponentMetrics, ...]
    ) -> AlertCounts:
        by_detector: dict[str, int] = {}
        by_state: dict[str, int] = {}
        by_severity: dict[str, int] = {}
        for c in components:
            if c.kind != "flow" or not c.up:
                continue
            for s in c.samples:
                if s.name != m.FLOW_ALERTS.sample:
                    continue
                det, state = s.labels.get("detector", "?"), s.labels.get("state", "?")
                by_detector[det] = by_detector.get(det, 0) + int(s.value)
                by_state[state] = by_state.get(state, 0) + int(s.value)
                if "severity" in s.labels:
                    sev = s.labels["severity"]
                    by_severity[sev] = by_severity.get(sev, 0) + int(s.value)
        total = next((t.messages for t in topics if t.role == "alerts"), None)
        return AlertCounts(
            total,
            dict(sorted(by_detector.items())),
            dict(sorted(by_state.items())),
            dict(sorted(by_severity.items())),
        )


def collect_health(settings: Settings, previous: PipelineHealth | None = None) -> PipelineHealth:
    """One snapshot with throwaway clients; rates are against ``previous``."""
    with HealthCollector(settings) as collector:
        return collector.collect(previous)


def _service_health(service: Service) -> ServiceHealth:
    s = service.status()
    return ServiceHealth(s.name, s.state, s.state in {"up", "external"}, s.address, s.detail)


def _results(futures: list[Future[_T]]) -> list[_T]:
    return [f.result() for f in futures]


def _offsets(
    futures: dict[TopicPartition, Future[Any]],
) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], str]]:
    """Offsets by (topic, partition), and the partitions whose request failed."""
    found: dict[tuple[str, int], int] = {}
    failed: dict[tuple[str, int], str] = {}
    for tp, fut in futures.items():
        try:
            found[(tp.topic, tp.partition)] = fut.result().offset
        except KafkaException as exc:
            failed[(tp.topic, tp.partition)] = _short(exc)
    return found, failed


def _missing(name: str, role: TopicRole, sensor_type: str | None) -> TopicHealth:
    return TopicHealth(name, role, sensor_type, False, 0, None, None, None)


def _with_rate(topic: TopicHealth, previous: TopicHealth | None, dt: float) -> TopicHealth:
    if previous is None or dt <= 0 or topic.end_offset is None or previous.end_offset is None:
        return topic
    delta = topic.end_offset - previous.end_offset
    if delta < 0:  # topic recreated
        return topic
    return TopicHealth(
        topic.topic,
        topic.role,
        topic.sensor_type,
        topic.exists,
        topic.partitions,
        topic.messages,
        topic.end_offset,
        round(delta / dt, 3),
        topic.error,
    )


def _with_rates(
    component: ComponentMetrics, previous: ComponentMetrics | None, dt: float
) -> ComponentMetrics:
    """Per-second rates of the component's counters; None without a usable previous."""
    rates: dict[str, float | None] = {}
    for key, name in RATE_COUNTERS.get(component.kind, ()):
        now = component.total(name)
        before = previous.total(name) if previous is not None else None
        if now is None or before is None or dt <= 0 or now < before:  # restarted: reset
            rates[key] = None
        else:
            rates[key] = round((now - before) / dt, 3)
    return ComponentMetrics(
        component.name,
        component.kind,
        component.url,
        component.state,
        component.error,
        component.samples,
        rates,
    )


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:200]
