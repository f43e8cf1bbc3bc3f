"""Dead letters of the sinks: what a sink gave up on goes to Kafka ``dlq.sink``.

One record per point or alert, so each can be inspected and replayed on its
own (a line-protocol ``payload`` can be POSTed back to InfluxDB as it is).
Writes are confirmed by Kafka (idempotent producer, ``acks=all``) before
``send`` returns: a dead letter that is not stored would be a silent drop.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import msgspec
from confluent_kafka import KafkaError, Message, Producer

from iotpipe.errors import ConnectorError
from iotpipe.settings import KafkaSettings
from iotpipe.topics import KafkaTopics


class SinkDeadLetter(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One point or alert a sink could not deliver, with the error."""

    sink: str  # "influx", "webhook", ...
    reason: str  # stable code: rejected_by_server, retries_exhausted, unrepresentable_tag...
    error: str  # the server's or library's message
    payload: str  # the line of line protocol, or the alert JSON
    failed_at: int  # ms since the epoch
    attempts: int = 0
    target: str | None = None  # bucket or URL


_encoder = msgspec.json.Encoder()


class DeadLetterWriter:
    """Produces ``SinkDeadLetter`` records to ``dlq.sink`` and counts them."""

    def __init__(self, kafka: KafkaSettings, *, timeout_s: float = 60.0) -> None:
        config: dict[str, Any] = {
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": "lz4",
            **kafka.client_config(),
        }
        self.topic = KafkaTopics(kafka.topic_prefix).dlq_sink
        self.timeout_s = timeout_s
        self.sent = 0
        self._producer = Producer(config)
        self._errors: list[str] = []

    def send(self, letters: Sequence[SinkDeadLetter]) -> None:
        """Write and wait for Kafka's confirmation; raises ``ConnectorError`` if it fails."""
        for letter in letters:
            while True:
                try:
                    self._producer.produce(
                        self.topic, _encoder.encode(letter), on_delivery=self._on_delivery
                    )
                    break
                except BufferError:
                    self._producer.poll(0.1)
        left = self._producer.flush(self.timeout_s)
        if left or self._errors:
            errors, self._errors = self._errors, []
            raise ConnectorError(
                f"dead letters to {self.topic} not confirmed ({left} pending): {errors[:3]}",
                retryable=True,
            )
        self.sent += len(letters)

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._errors.append(str(err))

    def close(self) -> None:
        self._producer.flush(self.timeout_s)


def now_ms() -> int:
    return int(time.time() * 1000)
