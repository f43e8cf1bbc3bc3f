"""Topic names for MQTT and Kafka, in one place so every stage agrees.

MQTT: devices publish to ``sensors/<site>/<sensor_type>/<device_id>``; a
gateway may publish a batch to a shorter topic (``sensors/<site>/<type>`` or
``sensors/<site>``) and name the rest in the payload. Alerts go out on
``alerts/<site>/<sensor_type>/<device_id>``.

Kafka: ``readings.<sensor_type>``, ``alerts``, ``aggregates``, ``dlq.ingest``,
``dlq.sink``, ``late``, all behind an optional prefix (``IOTPIPE_KAFKA_TOPIC_PREFIX``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

SENSORS_ROOT = "sensors"
ALERTS_ROOT = "alerts"
# Full-match patterns (\A...\Z): with ``$``, "dev-1\n" would pass, since ``$``
# also matches before a final newline. msgspec's ``Meta(pattern=...)`` uses
# ``re.search``, so the anchors must be in the pattern itself.
ID_RE = re.compile(r"\A[A-Za-z0-9_.:-]{1,64}\Z")
TYPE_RE = re.compile(r"\A[a-z0-9_]{1,64}\Z")
MAX_SEQ = 2**53 - 1  # the largest integer every JSON consumer (and float64) holds exactly


@dataclass(frozen=True, slots=True)
class TopicContext:
    """What an MQTT topic says about the readings published on it."""

    site: str | None = None
    sensor_type: str | None = None
    device_id: str | None = None


class TopicError(ValueError):
    """The MQTT topic is not one the pipeline accepts readings on."""


def _levels(site: str, sensor_type: str, device_id: str) -> str:
    """The three topic levels, refusing any id that could add a level or a wildcard."""
    for name, value, pattern in (
        ("site", site, ID_RE),
        ("sensor type", sensor_type, TYPE_RE),
        ("device id", device_id, ID_RE),
    ):
        if not pattern.match(value):
            raise TopicError(f"bad {name} {value!r} for an MQTT topic")
    return f"{site}/{sensor_type}/{device_id}"


def mqtt_reading_topic(site: str, sensor_type: str, device_id: str) -> str:
    return f"{SENSORS_ROOT}/{_levels(site, sensor_type, device_id)}"


def mqtt_alert_topic(site: str, sensor_type: str, device_id: str) -> str:
    return f"{ALERTS_ROOT}/{_levels(site, sensor_type, device_id)}"


def mqtt_subscription(shared_group: str | None = None, site: str | None = None) -> str:
    """Filter for all readings (or one site's); with a group, a shared subscription."""
    base = f"{SENSORS_ROOT}/{site}/#" if site else f"{SENSORS_ROOT}/#"
    return f"$share/{shared_group}/{base}" if shared_group else base


def parse_mqtt_reading_topic(topic: str) -> TopicContext:
    """Split ``sensors/<site>[/<type>[/<device>]]``; raises ``TopicError`` otherwise."""
    levels = topic.split("/")
    if levels[0] != SENSORS_ROOT or not 2 <= len(levels) <= 4:
        raise TopicError(f"topic {topic!r} is not sensors/<site>[/<type>[/<device_id>]]")
    site = levels[1]
    sensor_type = levels[2] if len(levels) > 2 else None
    device_id = levels[3] if len(levels) > 3 else None
    if not ID_RE.match(site):
        raise TopicError(f"topic {topic!r}: bad site {site!r}")
    if sensor_type is not None and not TYPE_RE.match(sensor_type):
        raise TopicError(f"topic {topic!r}: bad sensor type {sensor_type!r}")
    if device_id is not None and not ID_RE.match(device_id):
        raise TopicError(f"topic {topic!r}: bad device id {device_id!r}")
    return TopicContext(site=site, sensor_type=sensor_type, device_id=device_id)


@dataclass(frozen=True, slots=True)
class KafkaTopics:
    """Kafka topic names under a prefix."""

    prefix: str = ""

    def readings(self, sensor_type: str) -> str:
        return f"{self.prefix}readings.{sensor_type}"

    @property
    def alerts(self) -> str:
        return f"{self.prefix}alerts"

    @property
    def aggregates(self) -> str:
        return f"{self.prefix}aggregates"

    @property
    def dlq_ingest(self) -> str:
        return f"{self.prefix}dlq.ingest"

    @property
    def dlq_sink(self) -> str:
        return f"{self.prefix}dlq.sink"

    @property
    def late(self) -> str:
        """Readings that arrived after their window closed (counted, never dropped)."""
        return f"{self.prefix}late"

    def flow_group(self, priority: str) -> str:
        """The Kafka consumer group a flow of this priority commits its offsets under."""
        return f"{self.prefix}iotpipe-flow-{priority}"

    def sensor_type_of(self, topic: str) -> str | None:
        """Inverse of ``readings``: the sensor type a readings topic carries."""
        head = f"{self.prefix}readings."
        return topic[len(head) :] if topic.startswith(head) else None

    def all_topics(self, sensor_types: Iterable[str]) -> list[str]:
        """Every topic the pipeline uses, for creation at start-up."""
        fixed = [self.alerts, self.aggregates, self.dlq_ingest, self.dlq_sink, self.late]
        return [self.readings(t) for t in sorted(sensor_types)] + fixed
