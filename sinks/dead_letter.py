"""Dead letters of the sinks: what a sink gave up on goes to Kafka ``dlq.sink``.

One record per point or alert, so each can be inspected and replayed on its
own (a line-protocol ``payload`` can be POSTed back to InfluxDB as it is).
Writes are confirmed by Kafka (idempotent producer, ``acks=all``) before
``send`` returns: a dead letter that is not stored would be a silent drop.
While Kafka is away ``send`` waits (``sinks.confirmed``) rather than fail.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Protocol

import msgspec

from iotpipe.settings import KafkaSettings
from iotpipe.topics import KafkaTopics
from sinks.confirmed import ConfirmedProducer

log = logging.getLogger(__name__)


class SinkDeadLetter(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One point or alert a sink could not deliver, with the error."""

    sink: str  # "influx", "webhook", ...
    reason: str  # stable code: rejected_by_server, retries_exhausted, unrepresentable_tag...
    error: str  # the server's or library's message
    payload: str  # the line of line protocol, or the alert JSON
    failed_at: int  # ms since the epoch
    attempts: int = 0
    target: str | None = None  # bucket or URL


class LetterSink(Protocol):
    """Where undeliverable items go: ``DeadLetterWriter`` (``dlq.sink``), or a test's list."""

    topic: str

    def send(self, letters: Sequence[SinkDeadLetter]) -> None: ...


_encoder = msgspec.json.Encoder()


class DeadLetterWriter:
    """Produces ``SinkDeadLetter`` records to ``dlq.sink`` and counts them."""

    def __init__(self, kafka: KafkaSettings, *, timeout_s: float = 60.0) -> None:
        self.topic = KafkaTopics(kafka.topic_prefix).dlq_sink
        self.timeout_s = timeout_s  # for close(); send waits as long as Kafka is away
        self.sent = 0
        self.refused = 0  # dead letters Kafka refused for good (logged with the error)
        self._producer = ConfirmedProducer(kafka, "dlq.sink", **{"compression.type": "lz4"})

    def send(self, letters: Sequence[SinkDeadLetter]) -> None:
        """Write and wait for Kafka's confirmation (through any outage)."""
        refused = self._producer.send([(self.topic, _encoder.encode(x), None) for x in letters])
        for index, error in refused:
            letter = letters[index]
            log.error(
                "Kafka refused a dead letter of %s (%s): %s",
                letter.sink,
                error,
                letter.payload[:200],
            )
        self.refused += len(refused)
        self.sent += len(letters) - len(refused)

    def close(self) -> None:
        self._producer.close(self.timeout_s)


def now_ms() -> int:
    return int(time.time() * 1000)
