"""MQTT in, Kafka out: validate, route by sensor type, acknowledge only when safe.

For each MQTT message the ingester decodes every reading, produces the valid
ones to ``readings.<type>`` (key: device id) and one dead-letter record for
whatever was refused, and acknowledges the MQTT message when Kafka has
confirmed all of those writes. Kill it at any moment: unacknowledged messages
are redelivered by the broker (at-least-once; duplicates are possible, loss is not).
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from confluent_kafka import KafkaError, Message

from ingest.kafka import DeliveryCallback, KafkaWriter, producer_config
from ingest.mqtt import MqttSession
from ingest.stats import IngestStats
from iotpipe.catalogue import Catalogue
from iotpipe.codec import ReadingDecoder, Reason, Rejection, encode
from iotpipe.model import IngestDeadLetter, ItemRejection, Reading
from iotpipe.settings import Settings
from iotpipe.topics import KafkaTopics, TopicError, parse_mqtt_reading_topic

log = logging.getLogger(__name__)
_KAFKA_REJECTED = "kafka_rejected"


@dataclass(slots=True)
class _Pending:
    """An MQTT message waiting for its Kafka writes; acked when remaining hits 0."""

    mid: int
    qos: int
    remaining: int
    received: float


class Ingester:
    """One ingester process: an MQTT session feeding a Kafka producer."""

    def __init__(self, settings: Settings, catalogue: Catalogue) -> None:
        self.settings = settings
        self.topics = KafkaTopics(settings.kafka.topic_prefix)
        self.stats = IngestStats()
        self._decoder = ReadingDecoder(catalogue, settings.validation)
        self._readings_topic = {name: self.topics.readings(name) for name in catalogue.names}
        self._accepting = threading.Event()
        self._max_inflight = settings.ingest.max_inflight
        self._acks: list[int] = []  # QoS 1 mids released by Kafka, sent after each poll
        self._writer = KafkaWriter(
            producer_config(settings.kafka, settings.ingest), after_poll=self._flush_acks
        )
        self._mqtt = MqttSession(settings.mqtt, settings.ingest, self._on_message)

    @property
    def session(self) -> MqttSession:
        return self._mqtt

    def start(self) -> None:
        self._accepting.set()
        self._mqtt.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop taking messages, let Kafka confirm what is in flight, ack, disconnect.

        Messages that arrive after this point are not acknowledged: the broker
        keeps them for the next ingester. Returns True if everything drained.
        """
        self._accepting.clear()
        drained = self._writer.drain(timeout)
        deadline = time.monotonic() + 2
        while self.stats.inflight and time.monotonic() < deadline:
            time.sleep(0.01)  # the last delivery callbacks are acking
        self._mqtt.stop()
        self._writer.close()
        return drained and self.stats.inflight == 0

    # --- hot path: runs on paho's network thread -------------------------------

    def _wait_for_room(self) -> None:
        """Hold the network thread while our window is full.

        The broker should never send more than Receive Maximum unacknowledged
        messages, but Mosquitto 2.0.11 overshoots; not reading the socket
        pushes back through TCP, so memory stays bounded however long Kafka
        is away.
        """
        while self.stats.inflight >= self._max_inflight and self._accepting.is_set():
            time.sleep(0.005)

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        if not self._accepting.is_set():
            return  # shutting down: leave it unacknowledged for redelivery
        stats = self.stats
        if message.qos and stats.inflight >= self._max_inflight:
            self._wait_for_room()
        received = time.time()
        stats.messages += 1
        try:
            context = parse_mqtt_reading_topic(message.topic)
        except (TopicError, UnicodeDecodeError) as exc:
            self._dispatch(message, [], [Rejection(Reason.BAD_TOPIC, str(exc))], received)
            return
        result = self._decoder.decode(message.payload, context)
        stats.readings += len(result.readings)
        self._dispatch(message, result.readings, result.rejections, received)

    def _dispatch(
        self,
        message: mqtt.MQTTMessage,
        readings: list[Reading],
        rejections: list[Rejection],
        received: float,
    ) -> None:
        writes = len(readings) + (1 if rejections else 0)
        pending = None
        if message.qos:
            self.stats.tracked += 1
            pending = _Pending(message.mid, message.qos, writes, received)
        ingest_ts = int(received * 1000)
        produce = self._writer.produce
        for reading in readings:
            reading.ingest_ts = ingest_ts
            produce(
                self._readings_topic[reading.sensor_type],
                encode(reading),
                reading.device_id.encode(),
                self._callback(pending, reading.sensor_type),
            )
        if rejections:
            for rej in rejections:
                self.stats.dead_lettered[rej.reason] += 1
            produce(
                self.topics.dlq_ingest,
                encode(_dead_letter(message, rejections, ingest_ts)),
                None,
                self._callback(pending, None),
            )

    def _callback(self, pending: _Pending | None, sensor_type: str | None) -> DeliveryCallback:
        stats = self.stats

        def delivered(err: KafkaError | None, msg: Message) -> None:
            # Runs on the Kafka delivery thread (the only one that touches `pending`).
            if err is not None:
                self._delivery_failed(err, msg, pending)
                return
            if sensor_type is not None:
                stats.produced[sensor_type] += 1
            if pending is None:
                return
            pending.remaining -= 1
            if pending.remaining == 0:
                stats.observe_latency(time.time() - pending.received)
                stats.acked += 1  # before the ack, so inflight never overstates the window
                if pending.qos == 1:
                    self._acks.append(pending.mid)
                else:
                    self._mqtt.ack(pending.mid, pending.qos)

        return delivered

    def _flush_acks(self) -> None:
        """Runs on the delivery thread after each poll that delivered something."""
        if self._acks:
            acks, self._acks = self._acks, []
            self._mqtt.ack_many(acks)

    def _delivery_failed(self, err: KafkaError, msg: Message, pending: _Pending | None) -> None:
        """Kafka refused a write for good (writes are retried forever otherwise).

        A refused reading is dead-lettered so its MQTT message can still be
        acknowledged; if the dead-letter write fails too, the message stays
        unacknowledged and the broker redelivers it after a reconnect.
        """
        self.stats.delivery_errors += 1
        if msg.topic() == self.topics.dlq_ingest:
            log.error("dead-letter write failed (%s); MQTT message left unacked", err)
            return
        log.error("Kafka refused a reading on %s (%s); dead-lettering it", msg.topic(), err)
        self.stats.dead_lettered[_KAFKA_REJECTED] += 1
        value = msg.value() or b""
        record = IngestDeadLetter(
            reason=_KAFKA_REJECTED,
            detail=f"{msg.topic()}: {err.str()}",
            mqtt_topic="",
            payload=value.decode("utf-8", "replace"),
            received_at=int(time.time() * 1000),
        )
        self._writer.produce(
            self.topics.dlq_ingest, encode(record), None, self._callback(pending, None)
        )


def _dead_letter(
    message: mqtt.MQTTMessage, rejections: list[Rejection], received_ms: int
) -> IngestDeadLetter:
    payload = bytes(message.payload)
    try:
        text, encoding = payload.decode("utf-8"), "text"
    except UnicodeDecodeError:
        text, encoding = base64.b64encode(payload).decode("ascii"), "base64"
    first = rejections[0]
    try:
        topic = message.topic
    except UnicodeDecodeError:  # paho raises on a non-UTF-8 topic
        topic = message._topic.decode("utf-8", "replace")
    return IngestDeadLetter(
        reason=str(first.reason),
        detail=first.detail,
        mqtt_topic=topic,
        payload=text,
        payload_encoding=encoding,  # type: ignore[arg-type]
        received_at=received_ms,
        rejections=[
            ItemRejection(reason=str(r.reason), detail=r.detail, index=r.index) for r in rejections
        ],
    )
