"""The ingester's acknowledgement accounting, driven through injected transports.

No servers: a recording writer stands in for ``KafkaWriter`` and a recording
session for ``MqttSession`` (the ingester's own interfaces, not Kafka's or
MQTT's), and each test decides when and how Kafka "confirms" a write. The
rule under test: an MQTT message is acknowledged exactly once, and only after
every reading and dead letter it produced was confirmed; a write refused for
good is dead-lettered instead, and a message whose dead letter cannot be
written is never acknowledged (the broker redelivers it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from confluent_kafka import KafkaError

from ingest.ingester import Ingester
from iotpipe.catalogue import load_catalogue
from iotpipe.codec import decode_reading
from iotpipe.connectors.kafka import DeliveryCallback
from iotpipe.settings import Settings, load_settings

TOPIC = "sensors/site-1/temperature/dev-1"


@dataclass
class Write:
    topic: str
    value: bytes
    key: bytes | None
    on_delivery: DeliveryCallback


class _Msg:
    """What a delivery callback is handed: the written record."""

    def __init__(self, write: Write) -> None:
        self._write = write

    def topic(self) -> str:
        return self._write.topic

    def value(self) -> bytes:
        return self._write.value


@dataclass
class RecordingWriter:
    """Keeps every write until the test confirms or refuses it."""

    after_poll: Callable[[], None]
    queued: list[Write] = field(default_factory=list)
    immediate: bool = False  # confirm inside produce(), as a fast broker can

    def produce(
        self, topic: str, value: bytes, key: bytes | None, on_delivery: DeliveryCallback
    ) -> None:
        write = Write(topic, value, key, on_delivery)
        if self.immediate:
            on_delivery(None, _Msg(write))  # type: ignore[arg-type]
            return
        self.queued.append(write)

    def confirm(self, n: int | None = None, error: KafkaError | None = None) -> list[Write]:
        """Deliver the oldest ``n`` writes (all by default), then run the poll hook."""
        n = len(self.queued) if n is None else n
        done, self.queued = self.queued[:n], self.queued[n:]
        for write in done:
            write.on_delivery(error, _Msg(write))  # type: ignore[arg-type]
        self.after_poll()
        return done

    def drain(self, timeout: float) -> bool:
        return not self.queued

    def close(self) -> None:
        pass


@dataclass
class RecordingSession:
    handler: Callable[[mqtt.MQTTMessage], None]
    acks: list[tuple[int, int]] = field(default_factory=list)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def ack(self, mid: int, qos: int) -> None:
        self.acks.append((mid, qos))

    def ack_many(self, mids: list[int]) -> None:
        self.acks.extend((mid, 1) for mid in mids)


class Rig:
    def __init__(self, settings: Settings) -> None:
        self.ingester = Ingester(
            settings, load_catalogue(), writer=self._writer, session=self._session
        )
        self.ingester.start()

    def _writer(self, after_poll: Callable[[], None]) -> RecordingWriter:
        self.kafka = RecordingWriter(after_poll)
        return self.kafka

    def _session(self, handler: Callable[[mqtt.MQTTMessage], None]) -> RecordingSession:
        self.mqtt = RecordingSession(handler)
        return self.mqtt

    def send(
        self, payload: bytes, mid: int, *, qos: int = 1, topic: str = TOPIC, retain: bool = False
    ) -> None:
        message = mqtt.MQTTMessage(mid, topic.encode())
        message.payload, message.qos, message.retain = payload, qos, retain
        self.mqtt.handler(message)

    def dead_letters(self) -> list[dict[str, object]]:
        return [json.loads(w.value) for w in self.kafka.queued if w.topic.endswith("dlq.ingest")]


def readings(*values: float, ts: int | None = None) -> bytes:
    now = ts or int(time.time() * 1000)
    return json.dumps([{"ts": now + i, "value": v} for i, v in enumerate(values)]).encode()


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Rig:
    monkeypatch.setenv("IOTPIPE_STATE_DIR", str(tmp_path))  # the redelivery log lives there
    return Rig(load_settings(role="ingest"))


def test_acked_once_and_only_after_every_reading_is_confirmed(rig: Rig) -> None:
    rig.send(readings(20.0, 21.0, 22.0), mid=7)
    assert [w.topic for w in rig.kafka.queued] == ["readings.temperature"] * 3
    assert {w.key for w in rig.kafka.queued} == {b"dev-1"}
    assert [decode_reading(w.value).value for w in rig.kafka.queued] == [20.0, 21.0, 22.0]
    rig.kafka.confirm(2)
    assert rig.mqtt.acks == [] and rig.ingester.stats.inflight == 1
    rig.kafka.confirm()
    assert rig.mqtt.acks == [(7, 1)] and rig.ingester.stats.inflight == 0
    rig.kafka.confirm()
    assert rig.mqtt.acks == [(7, 1)]


def test_a_partly_bad_message_waits_for_its_dead_letter_too(rig: Rig) -> None:
    now = int(time.time() * 1000)
    payload = json.dumps([{"ts": now, "value": 1.0}, {"ts": now, "value": "hot"}]).encode()
    rig.send(payload, mid=3)
    assert [w.topic.rsplit(".", 1)[-1] for w in rig.kafka.queued] == ["temperature", "ingest"]
    (letter,) = rig.dead_letters()
    assert letter["reason"] == "wrong_type"
    rig.kafka.confirm(1)  # the reading, not the dead letter
    assert rig.mqtt.acks == []
    rig.kafka.confirm()
    assert rig.mqtt.acks == [(3, 1)]


def test_confirmations_arriving_while_still_queuing_cannot_ack_early(rig: Rig) -> None:
    rig.kafka.immediate = True
    rig.send(readings(*range(50)), mid=11)
    rig.kafka.after_poll()
    assert rig.mqtt.acks == [(11, 1)]


def test_a_write_refused_for_good_is_dead_lettered_then_acked(rig: Rig) -> None:
    rig.send(readings(5.0, 6.0), mid=4)
    rig.kafka.confirm(1)
    rig.kafka.confirm(1, error=KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    (letter,) = rig.dead_letters()
    assert letter["reason"] == "kafka_rejected"
    assert decode_reading(letter["payload"].encode()).value == 6.0  # type: ignore[union-attr]
    assert rig.mqtt.acks == []
    rig.kafka.confirm()
    assert rig.mqtt.acks == [(4, 1)]
    assert rig.ingester.stats.dead_lettered["kafka_rejected"] == 1


def test_a_message_whose_dead_letter_fails_too_is_never_acked(rig: Rig) -> None:
    rig.send(b"not json", mid=9)
    assert [letter["reason"] for letter in rig.dead_letters()] == ["malformed_json"]
    rig.kafka.confirm(error=KafkaError(KafkaError._MSG_TIMED_OUT))
    assert rig.kafka.queued == [] and rig.mqtt.acks == []
    assert rig.ingester.stats.inflight == 1  # held in the window until redelivered


def test_an_exception_in_one_message_is_dead_lettered_and_the_next_flows(rig: Rig) -> None:
    def explode(*_: object) -> None:
        raise RuntimeError("decoder bug")

    real = rig.ingester._decoder.decode
    rig.ingester._decoder.decode = explode  # type: ignore[method-assign]
    rig.send(readings(1.0), mid=1)
    rig.ingester._decoder.decode = real  # type: ignore[method-assign]
    rig.send(readings(2.0), mid=2)
    letters = rig.dead_letters()
    assert [(letter["reason"], letter["detail"]) for letter in letters] == [
        ("internal_error", "RuntimeError: decoder bug")
    ]
    rig.kafka.confirm()
    assert sorted(rig.mqtt.acks) == [(1, 1), (2, 1)]


def test_retained_replays_and_bad_topics_are_dead_lettered_not_forwarded(rig: Rig) -> None:
    rig.send(readings(1.0), mid=5, retain=True)
    rig.send(readings(1.0), mid=6, topic="sensors/site-1/temperature/dev-1/extra/x")
    assert [letter["reason"] for letter in rig.dead_letters()] == ["retained", "bad_topic"]
    assert all(w.topic.endswith("dlq.ingest") for w in rig.kafka.queued)
    rig.kafka.confirm()
    assert sorted(rig.mqtt.acks) == [(5, 1), (6, 1)]


def test_qos_0_is_never_acked_and_qos_2_is_acked_by_itself(rig: Rig) -> None:
    rig.send(readings(1.0), mid=0, qos=0)
    rig.send(readings(1.0), mid=8, qos=2)
    rig.kafka.confirm()
    assert rig.mqtt.acks == [(8, 2)]
    assert rig.ingester.stats.inflight == 0


def test_after_stop_nothing_is_taken_or_acked(rig: Rig) -> None:
    rig.send(readings(1.0), mid=1)
    rig.kafka.confirm()
    assert rig.ingester.stop(timeout=0.1)
    rig.send(readings(2.0), mid=2)
    assert rig.kafka.queued == [] and rig.mqtt.acks == [(1, 1)]
