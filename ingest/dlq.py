"""Dead-letter tooling: see what was refused, and send it again once fixed.

A refused message is never a dead end: ``inspect`` counts and samples
``dlq.ingest``; ``replay`` decodes the refused items again (with today's
catalogue, optionally after a fix-up) and produces the ones that now pass to
their readings topics. Timestamps are judged against the time the message was
first received, so a replay days later is not refused as "too old".
"""

from __future__ import annotations

import base64
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from ingest.kafka import KafkaWriter, ingest_producer_config
from iotpipe.catalogue import Catalogue
from iotpipe.codec import ReadingDecoder, encode
from iotpipe.errors import ConfigError, ConnectorError
from iotpipe.model import IngestDeadLetter
from iotpipe.settings import Settings
from iotpipe.topics import KafkaTopics, TopicContext, TopicError, parse_mqtt_reading_topic


@dataclass(frozen=True)
class DlqFilter:
    """Which dead letters to look at."""

    reason: str | None = None
    device: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def matches(self, record: IngestDeadLetter) -> bool:
        if self.reason and self.reason not in {r.reason for r in record.rejections} | {
            record.reason
        }:
            return False
        if self.since_ms is not None and record.received_at < self.since_ms:
            return False
        if self.until_ms is not None and record.received_at > self.until_ms:
            return False
        if self.device:
            in_topic = record.mqtt_topic.rsplit("/", 1)[-1] == self.device
            if not in_topic and f'"{self.device}"' not in record.payload:
                return False
        return True


_record_decoder = msgspec.json.Decoder(IngestDeadLetter)


def read_dead_letters(settings: Settings, timeout: float = 10.0) -> Iterator[IngestDeadLetter]:
    """Every record in ``dlq.ingest`` as of now (reads to the current end, commits nothing)."""
    topic = KafkaTopics(settings.kafka.topic_prefix).dlq_ingest
    consumer = Consumer(
        {
            **settings.kafka.client_config(),
            "group.id": "iotpipe-dlq-tool",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        try:
            meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        except KafkaException as exc:
            raise ConnectorError(
                f"Kafka at {settings.kafka.bootstrap_servers}: {exc}", retryable=True
            ) from exc
        if meta is None or meta.error is not None:
            raise ConnectorError(f"topic {topic} not found on {settings.kafka.bootstrap_servers}")
        ends: dict[int, int] = {}
        assignment = []
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if high > low:
                ends[p] = high
                assignment.append(TopicPartition(topic, p, low))
        if not assignment:
            return
        consumer.assign(assignment)
        deadline = time.monotonic() + max(timeout, 60.0)
        while ends and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=1000, timeout=1.0):
                partition, offset, value = msg.partition(), msg.offset(), msg.value()
                if msg.error() or partition is None or offset is None:
                    continue
                end = ends.get(partition)
                if end is None or offset >= end:
                    continue
                if offset == end - 1:
                    del ends[partition]
                try:
                    yield _record_decoder.decode(value or b"")
                except msgspec.DecodeError:
                    continue  # not a record of ours
    finally:
        consumer.close()


@dataclass
class Inspection:
    """Counts by reason, plus a few samples per reason."""

    records: int = 0
    items_by_reason: Counter[str] = field(default_factory=Counter)
    samples: dict[str, list[IngestDeadLetter]] = field(default_factory=dict)


def inspect(records: Iterator[IngestDeadLetter], filt: DlqFilter, samples: int = 3) -> Inspection:
    result = Inspection()
    for record in records:
        if not filt.matches(record):
            continue
        result.records += 1
        reasons = [r.reason for r in record.rejections] or [record.reason]
        result.items_by_reason.update(reasons)
        bucket = result.samples.setdefault(record.reason, [])
        if len(bucket) < samples:
            bucket.append(record)
    return result


Fixup = Callable[[dict[str, Any]], dict[str, Any]]


def make_fixup(sets: list[str], renames: list[str]) -> Fixup | None:
    """``--set key=value`` (JSON value if it parses) and ``--rename-type old=new``."""
    assignments: dict[str, Any] = {}
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value")
        try:
            assignments[key] = json.loads(raw)
        except json.JSONDecodeError:
            assignments[key] = raw
    types: dict[str, str] = {}
    for item in renames:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            raise ConfigError(f"--rename-type {item!r}: expected old=new")
        types[old] = new
    if not assignments and not types:
        return None

    def fix(obj: dict[str, Any]) -> dict[str, Any]:
        out = {**obj, **assignments}
        if out.get("sensor_type") in types:
            out["sensor_type"] = types[out["sensor_type"]]
        return out

    return fix


@dataclass
class ReplayReport:
    records: int = 0
    replayed: int = 0
    still_refused: Counter[str] = field(default_factory=Counter)


def refused_items(record: IngestDeadLetter, reason: str | None = None) -> list[bytes]:
    """The payload parts that were refused (for ``reason``, if given): the whole
    payload, or the refused items of a batch."""
    raw = (
        base64.b64decode(record.payload)
        if record.payload_encoding == "base64"
        else record.payload.encode("utf-8")
    )
    indices = [
        r.index
        for r in record.rejections
        if r.index is not None and (reason is None or r.reason == reason)
    ]
    if not indices:
        return [raw]
    try:
        items = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return [raw]
    return [json.dumps(items[i]).encode() for i in indices if 0 <= i < len(items)]


def replay(
    settings: Settings,
    catalogue: Catalogue,
    records: Iterator[IngestDeadLetter],
    filt: DlqFilter,
    *,
    fixup: Fixup | None = None,
    dry_run: bool = False,
) -> ReplayReport:
    """Decode refused items again and produce those that now pass."""
    report = ReplayReport()
    topics = KafkaTopics(settings.kafka.topic_prefix)
    writer = (
        None if dry_run else KafkaWriter(ingest_producer_config(settings.kafka, settings.ingest))
    )
    failures: list[str] = []

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(str(err))

    for record in records:
        if not filt.matches(record):
            continue
        report.records += 1
        decoder = ReadingDecoder(catalogue, settings.validation, clock=_at(record.received_at))
        try:
            context = parse_mqtt_reading_topic(record.mqtt_topic)
        except TopicError:
            context = TopicContext()
        for item in refused_items(record, filt.reason):
            result = decoder.decode(_apply(item, fixup), context)
            for rej in result.rejections:
                report.still_refused[str(rej.reason)] += 1
            for reading in result.readings:
                reading.ingest_ts = int(time.time() * 1000)
                report.replayed += 1
                if writer is not None:
                    writer.produce(
                        topics.readings(reading.sensor_type),
                        encode(reading),
                        reading.device_id.encode(),
                        delivered,
                    )
    if writer is not None:
        drained = writer.drain(60)
        writer.close()
        if not drained:
            raise ConnectorError("replay: Kafka did not confirm every write within 60 s")
    if failures:
        raise ConnectorError(f"replay: {len(failures)} writes failed, e.g. {failures[0]}")
    return report


def _at(received_ms: int) -> Callable[[], float]:
    return lambda: received_ms / 1000


def _apply(item: bytes, fixup: Fixup | None) -> bytes:
    if fixup is None:
        return item
    try:
        obj = json.loads(item)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return item
    if isinstance(obj, dict):
        return json.dumps(fixup(obj)).encode()
    return item
