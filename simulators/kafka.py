"""Kafka output: readings straight to ``readings.<type>``, keyed by device id.

For benchmarks that skip MQTT. The producer batches (linger, lz4) and is
polled once per batch, never flushed per message; only failed deliveries call
back (``delivery.report.only.error``), so the hot path has no Python callback.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from iotpipe.connectors.kafka import (
    broker_metadata,
    ensure_topics,
    produce_waiting,
    producer_config,
)
from iotpipe.errors import ConnectorError
from iotpipe.settings import KafkaSettings
from iotpipe.topics import KafkaTopics
from simulators.names import Naming
from simulators.outgoing import Outgoing
from simulators.outputs import OutputStats


def simulator_producer_config(kafka: KafkaSettings) -> dict[str, Any]:
    """The reliable defaults with large batches; only failed deliveries call back."""
    return producer_config(
        kafka,
        **{
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "batch.num.messages": 100_000,
            "compression.type": "lz4",
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "message.max.bytes": 2_000_000,
            "delivery.report.only.error": True,
        },
    )


class KafkaOutput:
    """Produces each reading to its type's topic with the device id as key."""

    name = "kafka"

    def __init__(self, settings: KafkaSettings, naming: Naming) -> None:
        self.settings = settings
        self.naming = naming
        topics = KafkaTopics(settings.topic_prefix)
        self.topics = [topics.readings(t) for t in naming.types]
        self.stats = OutputStats()
        self._producer: Producer | None = None
        self._produced = 0
        self._errors = 0
        self.last_error: str | None = None

    def open(self) -> None:
        """Check the broker answers and create missing ``readings.<type>`` topics."""
        broker_metadata(self.settings)  # ConnectorError if Kafka is down
        ensure_topics(self.settings, self.topics)
        try:
            self._producer = Producer(
                {**simulator_producer_config(self.settings), "on_delivery": self._on_error}
            )
        except KafkaException as exc:
            raise ConnectorError(f"Kafka producer: {exc}") from exc

    def _on_error(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._errors += 1
            self.last_error = str(err)

    def send(self, out: Outgoing) -> None:
        producer = self._producer
        assert producer is not None, "open() first"
        topics, naming = self.topics, self.naming
        for rec, d, t in zip(out.records, out.device.tolist(), out.stype.tolist(), strict=True):
            produce_waiting(producer, topics[t], rec, naming.device_id(d).encode())
            self.stats.bytes += len(rec)
        self._produced += len(out)
        self.stats.messages = self._produced
        producer.poll(0)
        self._refresh()

    def _refresh(self) -> None:
        pending = len(self._producer) if self._producer is not None else 0
        self.stats.sent = self._produced - pending - self._errors
        self.stats.failed = self._errors

    def poll_stats(self) -> OutputStats:
        if self._producer is not None:
            self._producer.poll(0)
        self._refresh()
        return self.stats

    def close(self, timeout: float = 30.0) -> None:
        if self._producer is None:
            return
        left = self._producer.flush(timeout)
        self._refresh()
        self.stats.failed += left
        self.stats.sent = self._produced - left - self._errors
        self._producer = None
