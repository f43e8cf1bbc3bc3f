"""The messages every stage exchanges, as msgspec structs (the README's "Data contracts").

msgspec rather than pydantic here because these are on the hot path: a typed
msgspec decode is several times faster than JSON-then-validate.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal

import msgspec

from iotpipe.topics import ID_RE, MAX_SEQ, TYPE_RE

Severity = Literal["info", "warning", "critical"]
# What a Kafka consumer may trust about a reading, whoever wrote it to the topic.
DeviceId = Annotated[str, msgspec.Meta(pattern=ID_RE.pattern)]
SensorType = Annotated[str, msgspec.Meta(pattern=TYPE_RE.pattern)]
Seq = Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ)]
AlertState = Literal["raised", "escalated", "cleared"]


class Reading(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """One sensor reading as it travels on Kafka (``readings.<type>``)."""

    device_id: DeviceId
    sensor_type: SensorType
    site: DeviceId = "default"
    ts: int
    value: float
    seq: Seq | None = None
    unit: str | None = None
    ingest_ts: int | None = None


class Aggregate(msgspec.Struct, kw_only=True, gc=False):
    """Statistics of one device's readings over one event-time window."""

    device_id: str
    sensor_type: str
    site: str
    window: str
    start: int
    end: int
    count: int
    mean: float
    min: float
    max: float
    std: float
    last: float


class SiteAggregate(msgspec.Struct, kw_only=True, gc=False):
    """One site's readings of one sensor type over one window, all its devices together.

    ``devices`` is how many devices reported in the window; ``std`` is the
    population standard deviation of all their readings (not of device means).
    """

    site: str
    sensor_type: str
    window: str
    start: int
    end: int
    devices: int
    count: int
    mean: float
    min: float
    max: float
    std: float
    last: float


class Alert(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """An anomaly event; ``alert_id`` is stable across replays."""

    alert_id: str
    device_id: str
    sensor_type: str
    site: str
    detector: str
    severity: Severity
    ts: int
    value: float
    score: float
    threshold: float
    message: str
    state: AlertState = "raised"


class ItemRejection(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Why one item of a gateway batch (or the whole payload) was refused."""

    reason: str
    detail: str
    index: int | None = None


class IngestDeadLetter(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One MQTT message the ingester refused, wholly or in part.

    ``reason``/``detail`` repeat the first rejection for quick filtering
    (reasons beyond ``codec.Reason``: ``retained``, ``poison``, ``internal_error``,
    ``kafka_rejected``);
    ``rejections`` lists every refused item (``index`` into a JSON array), so a
    replay re-submits exactly those items and not the ones already accepted.
    """

    reason: str
    detail: str
    mqtt_topic: str
    payload: str
    payload_encoding: Literal["text", "base64"] = "text"
    received_at: int
    rejections: list[ItemRejection] = msgspec.field(default_factory=list)
    # Set when the payload was too large to keep whole in a Kafka record:
    # ``payload`` then holds its start, and size + hash identify the original.
    payload_truncated: bool = False
    payload_size: int | None = None
    payload_sha256: str | None = None


def alert_id(device_id: str, sensor_type: str, detector: str, ts: int) -> str:
    """Deterministic id: the same anomaly replayed after a crash keeps its id."""
    key = f"{device_id}\x1f{sensor_type}\x1f{detector}\x1f{ts}".encode()
    return hashlib.blake2b(key, digest_size=10).hexdigest()
