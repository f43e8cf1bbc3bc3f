"""Integration fixtures: the real local stack, started (or reused) once per session.

Services that were already running are reused and left running; services this
session started are stopped at the end, so `make test` leaves nothing behind
that was not there before.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from influxdb_client import BucketRetentionRules, InfluxDBClient

from iotpipe.connectors.kafka import delete_topics, ensure_topics
from iotpipe.settings import KafkaSettings, Settings, load_settings
from ops.stack import Stack


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def stack(settings: Settings) -> Iterator[Stack]:
    stack = Stack(settings)
    before = {s.name: s.state for s in stack.status()}
    stack.up()
    yield stack
    started = [name for name, state in before.items() if state == "down"]
    if started:
        stack.down(started)


@pytest.fixture
def unique() -> str:
    """A short unique suffix so each test gets fresh topics, buckets, client ids."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def kafka_topic(stack: Stack, unique: str) -> Iterator[Callable[..., str]]:
    """Factory for fresh Kafka topics, deleted after the test."""
    made: list[str] = []
    kafka: KafkaSettings = stack.settings.kafka

    def make(name: str = "t", partitions: int | None = None) -> str:
        topic = f"test.{name}.{unique}.{len(made)}"
        conf = kafka.model_copy(update={"partitions": partitions or kafka.partitions})
        ensure_topics(conf, [topic])
        made.append(topic)
        return topic

    yield make
    if made:
        delete_topics(kafka, made)


@pytest.fixture
def influx(stack: Stack) -> Iterator[InfluxDBClient]:
    """influxdb-client connected to the stack's InfluxDB."""
    s = stack.settings.influx
    with InfluxDBClient(
        url=s.url, token=s.token.get_secret_value(), org=s.org, timeout=s.timeout_ms
    ) as client:
        yield client


@pytest.fixture
def bucket(influx: InfluxDBClient, stack: Stack, unique: str) -> Iterator[str]:
    """A fresh bucket per test, deleted afterwards."""
    api = influx.buckets_api()
    created = api.create_bucket(
        bucket_name=f"test-{unique}",
        org=stack.settings.influx.org,
        retention_rules=BucketRetentionRules(type="expire", every_seconds=0),
    )
    yield created.name
    api.delete_bucket(created)
