"""Kafka for every stage: producer settings, the full-queue wait, readiness, topics.

Every producer of the project starts from ``producer_config``: idempotent,
``acks=all``, and no write ever timed out (``message.timeout.ms=0``: while
Kafka is away librdkafka keeps retrying, and the caller keeps whatever it
must not acknowledge yet). Each use adds only its batching tuning.

Topics are created explicitly with the configured partition count (the broker
has auto-creation off), so the partitioning that scales flows out is a
decision, not an accident.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from iotpipe.errors import ConnectorError
from iotpipe.settings import KafkaSettings

log = logging.getLogger(__name__)

DeliveryCallback = Callable[[KafkaError | None, Message], None]
Headers = list[tuple[str, bytes]]  # a record's Kafka headers

RELIABLE: dict[str, Any] = {
    "enable.idempotence": True,  # a retried batch is written once
    "acks": "all",
    "message.timeout.ms": 0,  # retry while Kafka is away; never fail a write on time
    # librdkafka backs reconnects off to 10 s by default; after an outage every
    # second a queue waits here is a second the flow may close windows without it.
    "reconnect.backoff.max.ms": 1_000,
}


def producer_config(kafka: KafkaSettings, **tuning: Any) -> dict[str, Any]:
    """The reliable defaults, then this use's tuning, then ``IOTPIPE_KAFKA_OPTIONS``."""
    return {**RELIABLE, **tuning, **kafka.client_config()}


def produce_waiting(
    producer: Producer,
    topic: str,
    value: bytes,
    key: bytes | None = None,
    on_delivery: DeliveryCallback | None = None,
    wait: Callable[[], object] | None = None,
    headers: Headers | None = None,
) -> None:
    """Queue one write; while librdkafka's queue is full, wait for it to drain (never drop).

    ``wait`` is how to let it drain: by default this thread polls the
    producer; a caller whose own thread polls passes a short sleep.
    """
    while True:
        try:
            extra: dict[str, object] = {}
            if on_delivery is not None:
                extra["on_delivery"] = on_delivery
            if headers:
                extra["headers"] = headers
            producer.produce(topic, value, key, **extra)
            return
        except BufferError:
            if wait is None:
                producer.poll(0.05)
            else:
                wait()


def admin_client(settings: KafkaSettings, **overrides: Any) -> AdminClient:
    return AdminClient({**settings.client_config(), **overrides})


def broker_metadata(settings: KafkaSettings, timeout: float = 5.0) -> dict[str, int]:
    """Topic name -> partition count; raises ConnectorError if no broker answers."""
    client = admin_client(settings, **{"socket.connection.setup.timeout.ms": 3000})
    try:
        meta = client.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise ConnectorError(
            f"Kafka at {settings.bootstrap_servers}: {exc}", retryable=True
        ) from exc
    if not meta.brokers:
        raise ConnectorError(f"Kafka at {settings.bootstrap_servers}: no brokers in metadata")
    return {name: len(t.partitions) for name, t in meta.topics.items()}


def ensure_topics(
    settings: KafkaSettings, names: Iterable[str], timeout: float = 30.0
) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created.

    On a Kafka with ACLs an account sees only the topics it may describe, and
    may create none: a topic it is not allowed to create is its owner's to
    make (``iotpipe topics create`` as the admin), so it is logged and skipped.
    """
    existing = broker_metadata(settings)
    wanted = [n for n in dict.fromkeys(names) if n not in existing]
    if not wanted:
        return []
    client = admin_client(settings)
    futures = client.create_topics(
        [
            NewTopic(
                n,
                num_partitions=settings.partitions,
                replication_factor=settings.replication_factor,
            )
            for n in wanted
        ],
        operation_timeout=timeout,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except KafkaException as exc:
            code = exc.args[0].name() if exc.args and hasattr(exc.args[0], "name") else ""
            if code == "TOPIC_ALREADY_EXISTS":
                continue
            if code in {"TOPIC_AUTHORIZATION_FAILED", "CLUSTER_AUTHORIZATION_FAILED"}:
                log.info("not allowed to create topic %s: left to its owner", name)
                continue
            raise ConnectorError(f"creating topic {name}: {exc}") from exc
    return created


def delete_topics(settings: KafkaSettings, names: Iterable[str], timeout: float = 30.0) -> None:
    """Delete topics (tests use this to clean up their own)."""
    client = admin_client(settings)
    for name, future in client.delete_topics(list(names), operation_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            raise ConnectorError(f"deleting topic {name}: {exc}") from exc
