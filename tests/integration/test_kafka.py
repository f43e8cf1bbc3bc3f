"""Real Kafka: topic creation, idempotent produce, per-key order, kcat interop."""

from __future__ import annotations

import subprocess
from collections import defaultdict
from collections.abc import Callable

from confluent_kafka import Consumer, Producer

from iotpipe.catalogue import load_catalogue
from iotpipe.connectors.kafka import broker_metadata
from iotpipe.topics import KafkaTopics
from ops.stack import Stack


def consume_all(stack: Stack, topic: str, expected: int, group: str) -> list[tuple[bytes, bytes]]:
    consumer = Consumer(
        {
            **stack.settings.kafka.client_config(),
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    out: list[tuple[bytes, bytes]] = []
    try:
        for _ in range(200):
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                assert msg.error() is None, msg.error()
                out.append((msg.key(), msg.value()))
            if len(out) >= expected:
                break
    finally:
        consumer.close()
    return out


def test_stack_up_created_every_pipeline_topic(stack: Stack) -> None:
    meta = broker_metadata(stack.settings.kafka)
    topics = KafkaTopics(stack.settings.kafka.topic_prefix)
    for name in topics.all_topics(load_catalogue().names):
        assert meta.get(name) == stack.settings.kafka.partitions, name


def test_idempotent_producer_keeps_per_key_order(
    stack: Stack, kafka_topic: Callable[..., str], unique: str
) -> None:
    topic = kafka_topic("order", partitions=4)
    producer = Producer(
        {
            **stack.settings.kafka.client_config(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
        }
    )
    errors: list[object] = []
    n_keys, per_key = 25, 200
    for i in range(per_key):
        for k in range(n_keys):
            producer.produce(
                topic,
                key=f"dev-{k}".encode(),
                value=str(i).encode(),
                on_delivery=lambda err, _m: errors.append(err) if err else None,
            )
        producer.poll(0)
    assert producer.flush(30) == 0
    assert errors == []
    got = consume_all(stack, topic, n_keys * per_key, f"g-{unique}")
    by_key: dict[bytes, list[int]] = defaultdict(list)
    for key, value in got:
        by_key[key].append(int(value))
    assert len(got) == n_keys * per_key
    assert all(seq == list(range(per_key)) for seq in by_key.values())


def test_kcat_interoperates(stack: Stack, kafka_topic: Callable[..., str], unique: str) -> None:
    """kcat (Debian, librdkafka C) reads what Python wrote and vice versa."""
    topic = kafka_topic("kcat", partitions=1)
    brokers = stack.settings.kafka.bootstrap_servers
    producer = Producer(stack.settings.kafka.client_config())
    for i in range(10):
        producer.produce(topic, key=b"dev-1", value=f'{{"seq": {i}}}'.encode())
    assert producer.flush(10) == 0
    out = subprocess.run(
        ["kcat", "-b", brokers, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k|%s\\n"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert out.splitlines() == [f'dev-1|{{"seq": {i}}}' for i in range(10)]

    subprocess.run(
        ["kcat", "-b", brokers, "-P", "-t", topic, "-k", "dev-2"],
        input="from-kcat\n",
        text=True,
        check=True,
        timeout=30,
    )
    got = consume_all(stack, topic, 11, f"g-{unique}")
    assert (b"dev-2", b"from-kcat") in got
