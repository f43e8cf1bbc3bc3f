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

from confluent_kafka import Producer

from iotpipe.connectors.kafka import DeliveryCallback, produce_waiting, producer_config
from iotpipe.settings import IngestSettings, KafkaSettings

log = logging.getLogger(__name__)


def _let_drain() -> None:
    time.sleep(0.01)  # the delivery thread is draining the queue


def ingest_producer_config(kafka: KafkaSettings, ingest: IngestSettings) -> dict[str, Any]:
    """The reliable defaults (the MQTT message stays unacknowledged, and the
    broker keeps it, until Kafka has it) with the ingester's batching."""
    return producer_config(
        kafka,
        **{
            "linger.ms": ingest.linger_ms,
            "batch.size": ingest.batch_size,
            "batch.num.messages": 100_000,
            "compression.type": ingest.compression,
            "queue.buffering.max.messages": ingest.queue_max_messages,
            "queue.buffering.max.kbytes": 1_048_576,
        },
    )


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
        produce_waiting(self._producer, topic, value, key, on_delivery, wait=_let_drain)

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
