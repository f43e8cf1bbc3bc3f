"""A Kafka producer whose ``send`` returns only when Kafka has the records.

Used where a record on Kafka means "delivered" (the alerts topic, the sinks'
dead letters). While Kafka is away it waits, logging now and then, however
long the outage lasts: librdkafka retries for ever (``message.timeout.ms=0``),
so an outage only delays the flow behind it and never ends the process. A
record Kafka refuses for good (too large, not authorised) comes back to the
caller, which dead-letters it; it never blocks the others.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from iotpipe.connectors.kafka import Headers, produce_waiting, producer_config
from iotpipe.settings import KafkaSettings

log = logging.getLogger(__name__)

Record = tuple[str, bytes, bytes | None]  # topic, value, key
WARN_EVERY_S = 30.0


class ConfirmedProducer:
    """Idempotent, ``acks=all``; ``send`` waits for every confirmation."""

    def __init__(self, kafka: KafkaSettings, name: str, **config: Any) -> None:
        self.name = name
        self._producer = Producer(producer_config(kafka, **{"linger.ms": 5, **config}))
        self._refused: list[tuple[int, str]] = []

    def send(
        self, records: Sequence[Record], headers: Sequence[Headers] | None = None
    ) -> list[tuple[int, str]]:
        """Write all; returns (index, error) of the records Kafka refused for good.

        ``headers``, if given, holds each record's Kafka headers (same order).
        """
        self._refused = []
        for i, (topic, value, key) in enumerate(records):
            try:
                produce_waiting(
                    self._producer,
                    topic,
                    value,
                    key,
                    self._callback(i),
                    headers=headers[i] if headers else None,
                )
            except Exception as exc:  # refused at once (e.g. too large)
                self._refused.append((i, str(exc)))
        started = time.monotonic()
        warned = started
        while self._producer.flush(1.0):
            if time.monotonic() - warned >= WARN_EVERY_S:
                warned = time.monotonic()
                log.warning(
                    "%s: %d records not yet confirmed by Kafka after %.0f s; still waiting",
                    self.name,
                    len(self._producer),
                    warned - started,
                )
        refused, self._refused = self._refused, []
        return refused

    def _callback(self, index: int) -> Any:
        def done(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                self._refused.append((index, str(err)))

        return done

    def close(self, timeout_s: float = 10.0) -> None:
        self._producer.flush(timeout_s)
