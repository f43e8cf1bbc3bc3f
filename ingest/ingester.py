"""MQTT in, Kafka out: validate, route by sensor type, acknowledge only when safe.

For each MQTT message the ingester decodes every reading, produces the valid
ones to ``readings.<type>`` (key: device id) and one dead-letter record for
whatever was refused, and acknowledges the MQTT message when Kafka has
confirmed all of those writes. Kill it at any moment: unacknowledged messages
are redelivered by the broker (at-least-once; duplicates are possible, loss is not;
the flow drops the duplicates).

No message can stop the loop: whatever one message raises is caught, and the
message is dead-lettered (``internal_error``) and acknowledged. A dead letter
too big for Kafka keeps the payload's start, its size and its SHA-256. A
redelivered message that has killed ``poison_after`` ingester processes while
they handled it (``ingest/redelivery.py``) is dead-lettered as ``poison``. A message the
broker sends from its retained store (retain flag set: a replay of an old
publish on subscribe) is dead-lettered as ``retained``, never forwarded: live
publishes, retained or not, reach us with the flag clear and are forwarded
once; with MQTT v5 the broker is asked not to send retained messages at all.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import paho.mqtt.client as mqtt
from confluent_kafka import KafkaError, Message

from ingest.kafka import KafkaWriter, ingest_producer_config
from ingest.mqtt import MessageHandler, MqttSession
from ingest.redelivery import RedeliveryLog, message_key
from ingest.stats import IngestStats
from iotpipe.catalogue import Catalogue
from iotpipe.codec import ReadingDecoder, Reason, Rejection, encode
from iotpipe.connectors.kafka import DeliveryCallback
from iotpipe.model import IngestDeadLetter, ItemRejection, Reading
from iotpipe.settings import Settings
from iotpipe.topics import KafkaTopics, TopicError, parse_mqtt_reading_topic

log = logging.getLogger(__name__)
_KAFKA_REJECTED = "kafka_rejected"
_TRUNCATED_KEEP = 4096  # characters of an oversized payload kept in its dead letter


class Writer(Protocol):
    """The Kafka side as the ingester uses it (``KafkaWriter``; a recorder in unit tests)."""

    def produce(
        self, topic: str, value: bytes, key: bytes | None, on_delivery: DeliveryCallback
    ) -> None: ...
    def drain(self, timeout: float) -> bool: ...
    def close(self) -> None: ...


class Session(Protocol):
    """The MQTT side as the ingester uses it (``MqttSession``)."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def ack(self, mid: int, qos: int) -> None: ...
    def ack_many(self, mids: list[int]) -> None: ...


# Factories, so the ack accounting can be driven without servers: the writer gets the
# hook to run after each delivery poll, the session the per-message handler.
WriterFactory = Callable[[Callable[[], None]], Writer]
SessionFactory = Callable[[MessageHandler], Session]


@dataclass(slots=True)
class _Pending:
    """An MQTT message waiting for its Kafka writes; acked when remaining hits 0."""

    mid: int
    qos: int
    remaining: int
    received: float
    redelivery: str | None = None  # RedeliveryLog key of a redelivered message


class Ingester:
    """One ingester process: an MQTT session feeding a Kafka producer."""

    def __init__(
        self,
        settings: Settings,
        catalogue: Catalogue,
        *,
        writer: WriterFactory | None = None,
        session: SessionFactory | None = None,
    ) -> None:
        self.settings = settings
        self.topics = KafkaTopics(settings.kafka.topic_prefix)
        self.stats = IngestStats()
        self._decoder = ReadingDecoder(catalogue, settings.validation)
        self._readings_topic = {name: self.topics.readings(name) for name in catalogue.names}
        self._accepting = threading.Event()
        self._max_inflight = settings.ingest.max_inflight
        self._acks: list[int] = []  # QoS 1 mids released by Kafka, sent after each poll
        if writer is None:
            config = ingest_producer_config(settings.kafka, settings.ingest)
            self._writer: Writer = KafkaWriter(config, after_poll=self._flush_acks)
        else:
            self._writer = writer(self._flush_acks)
        self._dead_letter_max = settings.ingest.dead_letter_max_bytes
        self._redeliveries = RedeliveryLog(
            settings.core.state_dir / f"ingest-{settings.ingest.instance}.redeliveries",
            settings.ingest.poison_after,
        )
        make_session = session or (
            lambda handler: MqttSession(settings.mqtt, settings.ingest, handler)
        )
        self._mqtt = make_session(self._on_message)

    @property
    def session(self) -> MqttSession:
        assert isinstance(self._mqtt, MqttSession), "an injected session has no MQTT client"
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
        self._redeliveries.close()
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
        redelivery = None
        if message.dup and message.qos:
            redelivery = message_key(message._topic, bytes(message.payload))
            deaths = self._redeliveries.deaths(redelivery)
            if deaths >= self._redeliveries.limit:
                detail = f"{deaths} ingester processes died handling it"
                self._refuse(message, Reason.POISON, detail, received, redelivery)
                return
            self._redeliveries.attempt(redelivery)
        pending = self._track(message, received, redelivery)
        try:
            self._handle(message, received, pending)
        except Exception as exc:  # one message must never stop the loop
            if pending is not None and pending.remaining:
                # Part of it was queued: leave it unacknowledged (redelivered, then judged again).
                log.exception("message on %r failed after queuing writes", message._topic)
            else:
                log.exception("message on %r could not be handled; dead-lettering", message._topic)
                detail = f"{type(exc).__name__}: {exc}"[:500]
                self._refuse(message, Reason.INTERNAL_ERROR, detail, received, redelivery, pending)
        if redelivery is not None:
            self._redeliveries.survived(redelivery)

    def _track(
        self, message: mqtt.MQTTMessage, received: float, redelivery: str | None
    ) -> _Pending | None:
        if not message.qos:
            return None
        self.stats.tracked += 1
        return _Pending(message.mid, message.qos, 0, received, redelivery)

    def _handle(self, message: mqtt.MQTTMessage, received: float, pending: _Pending | None) -> None:
        if message.retain:
            detail = "sent from the broker's retained store on subscribe, not a live publish"
            self._dispatch(message, [], [Rejection(Reason.RETAINED, detail)], received, pending)
            return
        try:
            context = parse_mqtt_reading_topic(message.topic)
        except (TopicError, UnicodeDecodeError) as exc:
            rejection = Rejection(Reason.BAD_TOPIC, str(exc)[:500])
            self._dispatch(message, [], [rejection], received, pending)
            return
        result = self._decoder.decode(message.payload, context)
        self.stats.readings += len(result.readings)
        self._dispatch(message, result.readings, result.rejections, received, pending)

    def _refuse(
        self,
        message: mqtt.MQTTMessage,
        reason: Reason,
        detail: str,
        received: float,
        redelivery: str | None,
        pending: _Pending | None = None,
    ) -> None:
        """Dead-letter a whole message for a reason of the ingester's own; never raises."""
        if pending is None:
            pending = self._track(message, received, redelivery)
        try:
            self._dispatch(message, [], [Rejection(reason, detail)], received, pending)
        except Exception:
            log.exception("dead letter for %r not written; left unacknowledged", message._topic)

    def _dispatch(
        self,
        message: mqtt.MQTTMessage,
        readings: list[Reading],
        rejections: list[Rejection],
        received: float,
        pending: _Pending | None,
    ) -> None:
        ingest_ts = int(received * 1000)
        produce = self._writer.produce
        values = []
        for reading in readings:
            reading.ingest_ts = ingest_ts
            values.append((reading, encode(reading)))
        letter = self._bounded(_dead_letter(message, rejections, ingest_ts)) if rejections else None
        if pending is not None:
            # Everything is encoded (what can fail has): count every write before
            # queuing any, so no early delivery callback acknowledges the message.
            pending.remaining = len(values) + (letter is not None)
            if not pending.remaining:
                self._release(pending, from_mqtt_thread=True)
                return
        for reading, value in values:
            produce(
                self._readings_topic[reading.sensor_type],
                value,
                reading.device_id.encode(),
                self._callback(pending, reading.sensor_type),
            )
        if letter is not None:
            for rej in rejections:
                self.stats.dead_lettered[rej.reason] += 1
            produce(self.topics.dlq_ingest, letter, None, self._callback(pending, None))

    def _bounded(self, letter: IngestDeadLetter) -> bytes:
        """The dead letter as JSON, its payload cut (with size and hash) if it would not fit."""
        value = encode(letter)
        if len(value) <= self._dead_letter_max:
            return value
        raw = base64.b64decode(letter.payload) if letter.payload_encoding == "base64" else None
        original = raw if raw is not None else letter.payload.encode("utf-8", "surrogatepass")
        letter.payload_truncated = True
        letter.payload_size = len(original)
        letter.payload_sha256 = hashlib.sha256(original).hexdigest()
        letter.payload = letter.payload[:_TRUNCATED_KEEP]
        letter.rejections = letter.rejections[:100]
        value = encode(letter)
        if len(value) > self._dead_letter_max:  # pathological details: keep only the facts
            letter.payload, letter.rejections = "", []
            letter.detail = letter.detail[:500]
            value = encode(letter)
        return value

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
                self._release(pending)

        return delivered

    def _release(self, pending: _Pending, from_mqtt_thread: bool = False) -> None:
        """Every write of the message is confirmed: acknowledge it.

        QoS 1 acks are batched by the delivery thread; any other caller sends its own.
        """
        self.stats.observe_latency(time.time() - pending.received)
        self.stats.acked += 1  # before the ack, so inflight never overstates the window
        if pending.redelivery is not None:
            self._redeliveries.done(pending.redelivery)
        if pending.qos == 1 and not from_mqtt_thread:
            self._acks.append(pending.mid)
        else:
            self._mqtt.ack(pending.mid, pending.qos)

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
            self.topics.dlq_ingest, self._bounded(record), None, self._callback(pending, None)
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
