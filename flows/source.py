"""Kafka source that hands Bytewax whole micro-batches, not single messages.

One item per poll, ``(partition_key, [value, ...])``, so the flow does one
Python call per few thousand readings instead of one per reading. Offsets are
the recovery state: a restarted flow resumes exactly after the last snapshot,
like Bytewax's own ``KafkaSource`` (which this mirrors, minus the per-message
wrapping). The offsets are also committed to Kafka, about once a second, under
the flow's consumer group: only so that consumer lag can be watched with the
usual tools (`iotpipe status`, kafka-consumer-groups); resuming never reads them.

An empty batch ``(partition_key, [])`` is a heartbeat: the partition is caught
up with the broker's end of the log, asked of the broker itself. Only then may
the flow let the watermark move on with wall time; a broker that cannot be
reached sends no heartbeat, so an outage is never mistaken for silence.
"""

from __future__ import annotations

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
HEARTBEAT_S = 1.0  # how often an idle partition asks the broker whether it is caught up
HEARTBEAT_TIMEOUT_S = 0.3


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
        self._eof = False
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

    def _heartbeat(self) -> list[Batch]:
        """An empty batch if the broker says we have read all there is (at most once a second)."""
        now = time.monotonic()
        if now < self._heartbeat_at:
            return []
        self._heartbeat_at = now + HEARTBEAT_S
        tp = TopicPartition(self._topic, self._partition)
        try:
            low, high = self._consumer.get_watermark_offsets(tp, timeout=HEARTBEAT_TIMEOUT_S)
        except KafkaException:
            return []  # broker away: not idle, just cut off
        position = self._offset if self._offset >= 0 else low
        return [(self._key, [])] if position >= high else []

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
