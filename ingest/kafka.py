"""The ingester's Kafka side: an idempotent, batching producer.

Delivery reports arrive on one dedicated thread (the only caller of
``poll``), so the callbacks that count down a message's pending writes never
race each other.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from iotpipe.settings import IngestSettings, KafkaSettings

log = logging.getLogger(__name__)

DeliveryCallback = Callable[[KafkaError | None, Message], None]


def producer_config(kafka: KafkaSettings, ingest: IngestSettings) -> dict[str, Any]:
    """At-least-once without duplicates from retries: idempotence, acks=all.

    ``message.timeout.ms=0`` means librdkafka keeps retrying while Kafka is
    away instead of failing the write: the MQTT message stays unacknowledged,
    and the broker keeps it, until Kafka has it. Reconnect attempts back off
    to at most a second (librdkafka's default is ten): after an outage the
    flow may already be back, and every second the queue waits here is a
    second it might close windows without it.
    """
    defaults: dict[str, Any] = {
        "enable.idempotence": True,
        "acks": "all",
        "message.timeout.ms": 0,
        "reconnect.backoff.max.ms": 1_000,
        "linger.ms": ingest.linger_ms,
        "batch.size": ingest.batch_size,
        "batch.num.messages": 100_000,
        "compression.type": ingest.compression,
        "queue.buffering.max.messages": ingest.queue_max_messages,
        "queue.buffering.max.kbytes": 1_048_576,
    }
    return {**defaults, **kafka.client_config()}  # IOTPIPE_KAFKA_OPTIONS wins


class KafkaWriter:
    """Produces keyed values; runs delivery callbacks on its own thread."""

    def __init__(
        self, config: dict[str, Any], after_poll: Callable[[], None] | None = None
    ) -> None:
        self._producer = Producer(config)
        self._after_poll = after_poll
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll_loop, name="kafka-delivery", daemon=True)
        self._thread.start()

    def produce(
        self, topic: str, value: bytes, key: bytes | None, on_delivery: DeliveryCallback
    ) -> None:
        """Queue one write; waits (never drops) while librdkafka's queue is full."""
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=on_delivery)
                return
            except BufferError:
                time.sleep(0.01)  # the delivery thread is draining the queue

    def pending(self) -> int:
        """Writes not yet confirmed by Kafka."""
        return len(self._producer)

    def _poll_loop(self) -> None:
        after = self._after_poll
        while not self._stop.is_set():
            if self._producer.poll(0.05) and after is not None:
                after()  # e.g. send the MQTT acks these deliveries released, in one go

    def drain(self, timeout: float) -> bool:
        """Wait until every queued write is confirmed; True if all were."""
        deadline = time.monotonic() + timeout
        while len(self._producer) and time.monotonic() < deadline:
            time.sleep(0.02)
        return len(self._producer) == 0

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._producer.poll(0)
