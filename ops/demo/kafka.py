"""Kafka for the demo: topic end offsets, and reading back one run's slice of a topic.

The demo records each topic's end offsets when it starts and reads from there
to the end offsets at the close: that slice is exactly what this run added,
without a fresh topic per run.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from iotpipe.errors import ConnectorError
from iotpipe.settings import KafkaSettings

Offsets = dict[tuple[str, int], int]


def _consumer(kafka: KafkaSettings) -> Consumer:
    return Consumer(
        {
            **kafka.client_config(),
            "group.id": f"iotpipe-demo-reader-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )


def end_offsets(kafka: KafkaSettings, topics: Iterable[str], timeout: float = 10.0) -> Offsets:
    """High watermark of every partition of ``topics``."""
    consumer = _consumer(kafka)
    out: Offsets = {}
    try:
        for topic in topics:
            meta = consumer.list_topics(topic, timeout=timeout).topics[topic]
            if meta.error is not None:
                raise ConnectorError(f"Kafka topic {topic}: {meta.error}")
            for p in sorted(meta.partitions):
                out[(topic, p)] = _high_watermark(consumer, topic, p, timeout)
    except KafkaException as exc:
        raise ConnectorError(f"Kafka at {kafka.bootstrap_servers}: {exc}") from exc
    finally:
        consumer.close()
    return out


def _high_watermark(consumer: Consumer, topic: str, partition: int, timeout: float) -> int:
    """Retried for a while: a topic created a moment ago may have no leader yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=timeout
            )
            return int(high)
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def committed_offsets(
    kafka: KafkaSettings, group: str, partitions: Iterable[tuple[str, int]], timeout: float = 10.0
) -> Offsets:
    """A consumer group's committed offsets (partitions it never committed are left out)."""
    consumer = Consumer({**kafka.client_config(), "group.id": group, "enable.auto.commit": False})
    try:
        tps = [TopicPartition(t, p) for t, p in partitions]
        got = consumer.committed(tps, timeout=timeout)
    except KafkaException as exc:
        raise ConnectorError(f"Kafka group {group}: {exc}") from exc
    finally:
        consumer.close()
    return {(tp.topic, tp.partition): tp.offset for tp in got if tp.offset >= 0}


def total(offsets: Mapping[tuple[str, int], int], topic: str | None = None) -> int:
    return sum(v for (t, _p), v in offsets.items() if topic is None or t == topic)


def read_slice(
    kafka: KafkaSettings, start: Offsets, end: Offsets, timeout: float = 120.0
) -> Iterator[tuple[str, bytes]]:
    """(topic, value) of every message between ``start`` and ``end`` offsets."""
    wanted = {tp: (start.get(tp, 0), hi) for tp, hi in end.items() if hi > start.get(tp, 0)}
    if not wanted:
        return
    consumer = _consumer(kafka)
    try:
        consumer.assign([TopicPartition(t, p, lo) for (t, p), (lo, _hi) in wanted.items()])
        open_parts = set(wanted)
        deadline = time.monotonic() + timeout
        while open_parts:
            if time.monotonic() > deadline:
                raise ConnectorError(f"reading back {sorted(open_parts)} took over {timeout} s")
            for msg in consumer.consume(num_messages=10_000, timeout=0.5):
                tp = (msg.topic(), msg.partition())
                hi = wanted[tp][1]
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF and (msg.offset() or 0) >= hi:
                        open_parts.discard(tp)
                    continue
                if msg.offset() < hi:
                    yield tp[0], msg.value()
                if msg.offset() >= hi - 1:
                    open_parts.discard(tp)
    finally:
        consumer.close()
