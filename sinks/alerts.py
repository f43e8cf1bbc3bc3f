"""Alert emitters: Kafka ``alerts`` (always), MQTT, an HTTP webhook, a log line.

Per batch, each alert passes the ``AlertGate`` (de-duplication, per-device
rate limit) and is routed by severity (``IOTPIPE_ALERT_ROUTE_*``). The
notification targets go first and Kafka last, each confirmed before ``emit``
returns, so a record on the ``alerts`` topic means "delivered". At start-up
the gate is seeded from that topic over the de-duplication horizon: a replay
after a crash does not notify twice, and a crash before the Kafka write
notifies again (at-least-once, never zero times).

Raised, escalated and cleared events all flow (``Alert.state``); receivers
match them by ``alert_id``. A webhook that keeps failing dead-letters the
alert to ``dlq.sink`` (counted) rather than holding every other alert back.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import Consumer, Message, TopicPartition

from iotpipe.connectors.kafka import broker_metadata
from iotpipe.errors import ConfigError, ConnectorError
from iotpipe.model import Alert
from iotpipe.settings import AlertSettings, KafkaSettings, MqttSettings, Settings
from sinks.alert_policy import ALERT_SIGNATURE, AlertGate, Verdict, verify
from sinks.alert_targets import (
    KafkaAlertTarget,
    MqttAlertTarget,
    Undelivered,
    WebhookTarget,
    alert_json,
    log_alert,
)
from sinks.dead_letter import DeadLetterWriter, LetterSink, SinkDeadLetter, now_ms

log = logging.getLogger(__name__)
_alert_decoder = msgspec.json.Decoder(Alert)


@dataclass
class EmitterStats:
    """Counters over the emitter's life; ``gate.stats`` has duplicates/suppressed."""

    received: int = 0
    to_kafka: int = 0
    to_mqtt: int = 0
    to_webhook: int = 0
    to_log: int = 0
    webhook_failed: int = 0
    forged_seen: int = 0  # records on the alerts topic without our signature, at start
    undelivered: Counter[str] = field(default_factory=Counter)  # dead-lettered, by output


class BatchTarget(Protocol):
    """Sends a batch, returns what it could not deliver (Kafka and MQTT targets)."""

    def send(self, alerts: list[Alert]) -> Undelivered: ...

    def close(self) -> None: ...


class RecordTarget(BatchTarget, Protocol):
    """The system of record (the ``alerts`` topic)."""

    topic: str


class PostTarget(Protocol):
    """One request per alert, retried inside ``post`` (the webhook)."""

    url: str
    attempts: int

    def post(self, alert: Alert) -> None: ...

    def close(self) -> None: ...


class AlertEmitter:
    """Sends alerts to Kafka and the routed targets; usable without Bytewax.

    The targets are built from the settings unless given (unit tests give
    their own, to check routing and failure handling without servers).
    """

    def __init__(
        self,
        alert: AlertSettings,
        kafka_settings: KafkaSettings,
        mqtt_settings: MqttSettings,
        dead_letters: LetterSink | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        kafka: RecordTarget | None = None,
        mqtt: BatchTarget | None = None,
        webhook: PostTarget | None = None,
    ) -> None:
        self.alert_settings = alert
        self.kafka_settings = kafka_settings
        self.mqtt_settings = mqtt_settings
        conf = alert
        self.stats = EmitterStats()
        self.gate = AlertGate(
            horizon_s=conf.dedupe_horizon_s,
            per_minute=conf.rate_limit_per_minute,
            burst=conf.rate_limit_burst,
            clock=clock,
        )
        self._dead_letters = dead_letters
        used = set().union(*(conf.route(s) for s in ("info", "warning", "critical")))
        key = conf.signing_key
        self.kafka: RecordTarget = kafka or KafkaAlertTarget(
            kafka_settings, conf.publish_timeout_s, key
        )
        self.mqtt: BatchTarget | None = None
        if "mqtt" in used:
            self.mqtt = mqtt or MqttAlertTarget(mqtt_settings, conf.publish_timeout_s, key)
        self.webhook: PostTarget | None = None
        if "webhook" in used:
            self.webhook = webhook or WebhookTarget(conf, sleep)

    def start(self) -> None:
        """Check the alerts topic exists; seed de-duplication from it."""
        deadline = time.monotonic() + 10  # a topic just created may take a moment to show
        topics = broker_metadata(self.kafka_settings)
        while self.kafka.topic not in topics and time.monotonic() < deadline:
            time.sleep(0.5)
            topics = broker_metadata(self.kafka_settings)
        if self.kafka.topic not in topics:
            raise ConfigError(
                f"Kafka topic {self.kafka.topic!r} does not exist; run `iotpipe topics create`"
            )
        conf = self.alert_settings
        if not (conf.dedupe_seed_from_kafka and conf.dedupe_horizon_s):
            return
        if conf.signing_key is None:
            log.warning(
                "no IOTPIPE_ALERT_SIGNING_KEY: not seeding de-duplication from %s (an unsigned"
                " record there could be a forgery that suppresses a real alert)",
                self.kafka.topic,
            )
            return
        seen = recent_alerts(
            self.kafka_settings,
            self.kafka.topic,
            conf.dedupe_horizon_s,
            conf.signing_key.get_secret_value(),
        )
        for alert_id, state in seen.signed:
            self.gate.remember(alert_id, state)
        log.info("remembered %d recent alerts from %s", len(seen.signed), self.kafka.topic)
        if seen.forged:
            self.stats.forged_seen = seen.forged
            log.error(
                "%d records on %s are not signed by this pipeline's key; ignored (forged?)",
                seen.forged,
                self.kafka.topic,
            )

    def emit(self, alerts: Iterable[Alert]) -> None:
        """Emit a batch; returns once every target has confirmed."""
        record: list[Alert] = []
        notify: dict[str, list[Alert]] = {"mqtt": [], "webhook": [], "log": []}
        for alert in alerts:
            self.stats.received += 1
            verdict = self.gate.decide(alert)
            if verdict is Verdict.DUPLICATE:
                continue
            record.append(alert)
            if verdict is Verdict.NOTIFY:
                for target in self.alert_settings.route(alert.severity):
                    notify[target].append(alert)
        for alert in notify["log"]:
            log_alert(alert)
        self.stats.to_log += len(notify["log"])
        if self.mqtt and notify["mqtt"]:
            failed = self.mqtt.send(notify["mqtt"])
            self.stats.to_mqtt += len(notify["mqtt"]) - len(failed)
            self._undelivered("mqtt", "not_delivered", failed, self.mqtt_settings.url)
        if self.webhook:
            for alert in notify["webhook"]:
                self._post(self.webhook, alert)
        if record:
            failed = self.kafka.send(record)
            self.stats.to_kafka += len(record) - len(failed)
            self._undelivered("kafka", "rejected_by_server", failed, self.kafka.topic)

    def _undelivered(self, sink: str, reason: str, failed: Undelivered, target: str) -> None:
        """One output could not deliver these: dead-letter them for it; the others went on."""
        if not failed:
            return
        self.stats.undelivered[sink] += len(failed)
        log.error("%s could not deliver %d alerts: %s", sink, len(failed), failed[0][1])
        letters = [
            SinkDeadLetter(
                sink=f"alerts-{sink}",
                reason=reason,
                error=error,
                payload=alert_json(alert).decode(),
                failed_at=now_ms(),
                target=target,
            )
            for alert, error in failed
        ]
        if self._dead_letters is None:
            raise ConnectorError(f"{sink}: {len(failed)} alerts undelivered: {failed[0][1]}")
        self._dead_letters.send(letters)

    def _post(self, webhook: PostTarget, alert: Alert) -> None:
        try:
            webhook.post(alert)
            self.stats.to_webhook += 1
        except ConnectorError as exc:
            self.stats.webhook_failed += 1
            log.error("webhook gave up on alert %s: %s", alert.alert_id, exc)
            if self._dead_letters is None:
                raise
            letter = SinkDeadLetter(
                sink="webhook",
                reason="retries_exhausted" if exc.retryable else "rejected_by_server",
                error=str(exc),
                payload=alert_json(alert).decode(),
                failed_at=now_ms(),
                attempts=webhook.attempts,
                target=webhook.url,
            )
            self._dead_letters.send([letter])

    def close(self) -> None:
        for target in (self.mqtt, self.webhook, self.kafka):
            if target is not None:
                target.close()


@dataclass
class RecentAlerts:
    """The alerts topic's last horizon: what we signed, and how many records we did not."""

    signed: list[tuple[str, str]] = field(default_factory=list)  # (alert_id, state)
    forged: int = 0


def recent_alerts(kafka: KafkaSettings, topic: str, horizon_s: float, key: str) -> RecentAlerts:
    """(alert_id, state) of every alert this pipeline (``key``) wrote in the last ``horizon_s``."""
    consumer = Consumer(
        {
            **kafka.client_config(),
            "group.id": f"iotpipe-alert-seed-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "latest",
        }
    )
    out = RecentAlerts()
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        since = now_ms() - int(horizon_s * 1000)
        starts = consumer.offsets_for_times(
            [TopicPartition(topic, p, since) for p in meta.partitions], timeout=10
        )
        ends: dict[int, int] = {}
        for tp in starts:
            _low, high = consumer.get_watermark_offsets(tp, timeout=10)
            if 0 <= tp.offset < high:
                ends[tp.partition] = high
        consumer.assign([tp for tp in starts if tp.partition in ends])
        deadline = time.monotonic() + 60
        while ends and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=5000, timeout=0.5):
                if msg.error():
                    continue
                value = msg.value()
                if value and _signed_by(msg, value, key):
                    try:
                        alert = _alert_decoder.decode(value)
                        out.signed.append((alert.alert_id, alert.state))
                    except msgspec.DecodeError:
                        pass
                elif value:
                    out.forged += 1
                offset = msg.offset()
                if offset is not None and offset + 1 >= ends.get(msg.partition() or 0, 0):
                    ends.pop(msg.partition() or 0, None)
    finally:
        consumer.close()
    return out


def _signed_by(msg: Message, value: bytes, key: str) -> bool:
    for name, header in msg.headers() or []:
        if name == ALERT_SIGNATURE and header is not None:
            return verify(value, key, header.decode(errors="replace"))
    return False


class _AlertPartition(StatelessSinkPartition[Any]):
    def __init__(self, emitter: AlertEmitter, dead_letters: DeadLetterWriter) -> None:
        self.emitter = emitter
        self.dead_letters = dead_letters

    def write_batch(self, items: list[Any]) -> None:
        alerts: list[Alert] = []
        for item in items:
            alerts.extend(item if isinstance(item, list | tuple) else [item])
        self.emitter.emit(alerts)

    def close(self) -> None:
        self.emitter.close()
        self.dead_letters.close()


class AlertSink(DynamicSink[Any]):
    """Bytewax sink for ``Alert`` items (or lists of them).

    Key the alert stream by device upstream so one device's events reach one
    worker, in order: de-duplication and rate limits are per worker.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _AlertPartition:
        dead_letters = DeadLetterWriter(
            self.settings.kafka, timeout_s=self.settings.sink.dlq_timeout_s
        )
        emitter = AlertEmitter(
            self.settings.alert, self.settings.kafka, self.settings.mqtt, dead_letters
        )
        emitter.start()
        return _AlertPartition(emitter, dead_letters)
