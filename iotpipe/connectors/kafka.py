"""Kafka administration: readiness checks and topic creation.

Topics are created explicitly with the configured partition count (the broker
has auto-creation off), so the partitioning that scales flows out is a
decision, not an accident.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from iotpipe.errors import ConnectorError
from iotpipe.settings import KafkaSettings


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
    """Create the topics that do not exist yet; returns the ones created."""
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
            if exc.args and getattr(exc.args[0], "name", lambda: "")() == "TOPIC_ALREADY_EXISTS":
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
