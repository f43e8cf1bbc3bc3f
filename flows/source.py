"""Kafka source that hands Bytewax whole micro-batches, not single messages.

One item per poll, ``(partition_key, [value, ...])``, so the flow does one
Python call per few thousand readings instead of one per reading. Offsets are
the recovery state: a restarted flow resumes exactly after the last snapshot,
like Bytewax's own ``KafkaSource`` (which this mirrors, minus the per-message
wrapping). The offsets are also committed to Kafka, about once a second, under
the flow's consumer group: only so that consumer lag can be watched with the
usual tools (`iotpipe status`, kafka-consumer-groups); resuming never reads them.

An empty batch ``(partition_key, [])`` is a heartbeat: the partition is caught
up with the broker's end of the log. librdkafka's statistics (once a second,
no extra requests) say whether the partition's leader is up and fetching and
where the log ends. Only while heartbeats keep coming may the flow let the
watermark move on with wall time; a broker that cannot be reached sends none,
so an outage is never mistaken for silence.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import cast

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from iotpipe.errors import ConnectorError
from iotpipe.settings import KafkaSettings

Batch = tuple[str, list[bytes]]

COMMIT_INTERVAL_S = 1.0
# An empty partition is asked again after this long instead of blocking in
# consume(): Bytewax polls its partitions in turn, so one blocking empty
# partition would hold up every busy one (24 of them once cost 1.2 s a round).
IDLE_BACKOFF = timedelta(milliseconds=10)
HEARTBEAT_S = 1.0  # how often an idle partition says it is caught up
STATS_INTERVAL_MS = 1000
STATS_FRESH_S = 2.5  # older statistics vouch for nothing


class _PartitionReader(StatefulSourcePartition[Batch, int]):
    def __init__(
        self, conf: dict[str, object], topic: str, partition: int, offset: int, batch_size: int
    ) -> None:
        self._key = f"{partition}-{topic}"
        self._topic, self._partition = topic, partition
        self._offset = offset
        self._committed = offset
        self._commit_at = time.monotonic() + COMMIT_INTERVAL_S
        self._awake: datetime | None = None
        self._batch_size = batch_size
        self._heartbeat_at = time.monotonic()
        self._log_end: tuple[float, int] | None = None  # (when, end offset) with the leader up
        self._offset_floor = 0  # the log's start, while we still read from the beginning
        self._eof = False
        conf = {**conf, "statistics.interval.ms": STATS_INTERVAL_MS, "stats_cb": self._on_stats}
        self._consumer = Consumer(conf)
        self._consumer.assign([TopicPartition(topic, partition, offset)])

    def next_batch(self) -> list[Batch]:
        if self._eof:
            raise StopIteration
        msgs = self._consumer.consume(self._batch_size, 0)  # what librdkafka has fetched
        self._maybe_commit()
        if not msgs:
            self._awake = datetime.now(UTC) + IDLE_BACKOFF
            return self._heartbeat()
        self._awake = None
        if any(map(Message.error, msgs)):  # C calls: no Python frame per message
            return self._with_errors(msgs)
        values = list(map(Message.value, msgs))
        last = msgs[-1].offset()  # one partition: offsets ascend
        if last is not None:
            self._offset = last + 1
        return [(self._key, cast(list[bytes], values))]

    def next_awake(self) -> datetime | None:
        return self._awake

    def _on_stats(self, text: str) -> None:
        """librdkafka's statistics (served by ``consume``): is the leader up, where is the end?"""
        try:
            stats = json.loads(text)
            part = stats["topics"][self._topic]["partitions"][str(self._partition)]
            leader = next(
                b for b in stats["brokers"].values() if b.get("nodeid") == part.get("leader")
            )
        except (ValueError, KeyError, StopIteration, TypeError):
            self._log_end = None
            return
        fetching = leader.get("state") == "UP" and part.get("fetch_state") == "active"
        end = part.get("hi_offset", -1)
        self._log_end = (time.monotonic(), end) if fetching and end >= 0 else None
        if self._log_end and self._offset < 0:
            self._offset_floor = part.get("lo_offset", 0)

    def _heartbeat(self) -> list[Batch]:
        """An empty batch if fresh statistics say we have read all there is (once a second)."""
        now = time.monotonic()
        if now < self._heartbeat_at or self._log_end is None:
            return []
        seen_at, end = self._log_end
        if now - seen_at > STATS_FRESH_S:
            return []  # no statistics lately: the client is stuck, not idle
        self._heartbeat_at = now + HEARTBEAT_S
        position = self._offset if self._offset >= 0 else self._offset_floor
        return [(self._key, [])] if position >= end else []

    def _with_errors(self, msgs: list[Message]) -> list[Batch]:
        """The slow path: end-of-partition markers or broker errors in the batch."""
        values: list[bytes] = []
        last = None
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._eof = True
                    break
                raise ConnectorError(f"Kafka partition {self._key}: {err}", retryable=True)
            value = msg.value()
            if value is not None:
                values.append(value)
            last = msg.offset()
        if last is not None:
            self._offset = last + 1
        return [(self._key, values)] if values else []

    def _maybe_commit(self, force: bool = False) -> None:
        """Publish progress for lag monitoring; never blocks, never fails the flow."""
        if self._offset < 0 or self._offset == self._committed:
            return
        if not force and time.monotonic() < self._commit_at:
            return
        self._commit_at = time.monotonic() + COMMIT_INTERVAL_S
        try:
            self._consumer.commit(
                offsets=[TopicPartition(self._topic, self._partition, self._offset)],
                asynchronous=not force,
            )
            self._committed = self._offset
        except KafkaException:
            pass  # informational only; the next interval tries again

    def snapshot(self) -> int:
        return self._offset

    def close(self) -> None:
        self._maybe_commit(force=True)
        self._consumer.close()


class KafkaBatchSource(FixedPartitionedSource[Batch, int]):
    """Every partition of the given topics; ``tail=False`` stops at the current end."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topics: Sequence[str],
        *,
        group_id: str = "iotpipe-flow",
        batch_size: int = 5000,
        tail: bool = True,
    ) -> None:
        self._kafka = kafka
        self._topics = list(topics)
        self._group_id = group_id
        self._batch_size = batch_size
        self._tail = tail

    def list_parts(self) -> list[str]:
        client = AdminClient(self._kafka.client_config())
        parts: list[str] = []
        for topic in self._topics:
            meta = client.list_topics(topic, timeout=10).topics[topic]
            if meta.error is not None:
                raise ConnectorError(f"Kafka topic {topic}: {meta.error.str()}")
            parts.extend(f"{p}-{topic}" for p in sorted(meta.partitions))
        return parts

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _PartitionReader:
        index, topic = for_part.split("-", 1)
        conf: dict[str, object] = {
            **self._kafka.client_config(),
            "group.id": self._group_id,  # for lag monitoring; offsets live in Bytewax recovery
            "enable.auto.commit": False,
            "enable.partition.eof": not self._tail,
            "fetch.max.bytes": 64 * 1024 * 1024,
            "queued.min.messages": 200_000,
        }
        offset = OFFSET_BEGINNING if resume_state is None else resume_state
        return _PartitionReader(conf, topic, int(index), offset, self._batch_size)
