"""Decode and validate readings at the edge; encode messages back to JSON.

Every refusal carries a ``Reason`` (a stable machine-readable code, counted in
metrics and stored in the dead-letter topic) and a human-readable detail. A
gateway batch (JSON array) is judged item by item: one bad reading does not
sink its neighbours.

Hot path: one typed msgspec decode of the whole payload, then a handful of
cheap Python checks per reading. Only when that decode fails do we fall back to
item-by-item decoding to say precisely what was wrong.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import msgspec

from iotpipe.catalogue import Catalogue
from iotpipe.model import (
    Aggregate,
    Alert,
    DeviceId,
    IngestDeadLetter,
    Reading,
    SensorType,
    Seq,
    SiteAggregate,
)
from iotpipe.settings import ValidationSettings
from iotpipe.topics import TopicContext

DEFAULT_SITE = "default"


class Reason(StrEnum):
    """Why a payload or reading was refused."""

    EMPTY_PAYLOAD = "empty_payload"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    BATCH_TOO_LARGE = "batch_too_large"
    INVALID_UTF8 = "invalid_utf8"
    MALFORMED_JSON = "malformed_json"
    WRONG_TYPE = "wrong_type"
    MISSING_FIELD = "missing_field"
    NON_FINITE_VALUE = "non_finite_value"
    BAD_ID = "bad_id"
    UNKNOWN_SENSOR_TYPE = "unknown_sensor_type"
    BAD_TIMESTAMP = "bad_timestamp"
    TS_OUT_OF_BOUNDS = "ts_out_of_bounds"
    TOPIC_MISMATCH = "topic_mismatch"
    BAD_TOPIC = "bad_topic"
    BAD_UNIT = "bad_unit"
    # The ingester's own, about a whole MQTT message:
    RETAINED = "retained"  # from the broker's retained store, a replay (see ingest/ingester.py)
    POISON = "poison"  # redelivered again and again without ever being acknowledged
    INTERNAL_ERROR = "internal_error"  # handling it raised; a bug, kept for replay


@dataclass(frozen=True, slots=True)
class Rejection:
    """One refused payload or batch item. ``index`` is the item's place in a batch."""

    reason: Reason
    detail: str
    index: int | None = None


@dataclass(slots=True)
class DecodeResult:
    readings: list[Reading] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


class _WireReading(msgspec.Struct, gc=False):
    """What a device may send: ids optional (the topic can supply them)."""

    ts: int | str
    value: float
    device_id: DeviceId | None = None
    sensor_type: SensorType | None = None
    site: DeviceId | None = None
    seq: Seq | None = None
    unit: str | None = None


_payload_decoder = msgspec.json.Decoder(_WireReading | list[_WireReading])
_raw_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
_reading_decoder = msgspec.json.Decoder(Reading)
_reading_list_decoder = msgspec.json.Decoder(list[Reading])
_FIELD_RE = re.compile(r"at `\$(?:\[\d+\])?\.(\w+)")
_NON_FINITE_RE = re.compile(rb"(?<![\w\"])(-?Infinity|NaN)(?![\w\"])")
_ID_FIELDS = {"device_id", "site"}


class ReadingDecoder:
    """Turns MQTT payloads into validated readings plus precise rejections."""

    def __init__(
        self,
        catalogue: Catalogue,
        bounds: ValidationSettings | None = None,
        clock: Any = time.time,
    ) -> None:
        self._catalogue = catalogue
        self._units = {name: t.unit for name, t in catalogue.types.items()}
        self._bounds = bounds or ValidationSettings()
        self._clock = clock

    def decode(self, payload: bytes | bytearray, topic: TopicContext | None = None) -> DecodeResult:
        """Decode one MQTT payload (an object or a JSON array of objects)."""
        result = DecodeResult()
        ctx = topic or TopicContext()
        limit = self._bounds.max_payload_bytes
        if not payload:
            result.rejections.append(Rejection(Reason.EMPTY_PAYLOAD, "payload is empty"))
            return result
        if len(payload) > limit:
            result.rejections.append(
                Rejection(Reason.PAYLOAD_TOO_LARGE, f"{len(payload)} bytes > limit {limit}")
            )
            return result
        try:
            wire = _payload_decoder.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
            return self._decode_slowly(payload, ctx)
        items = wire if isinstance(wire, list) else [wire]
        if not self._batch_size_ok(items, result):
            return result
        window = self._window()
        batch = isinstance(wire, list)
        for i, item in enumerate(items):
            self._check(item, ctx, window=window, index=i if batch else None, result=result)
        return result

    def _batch_size_ok(self, items: Sequence[object], result: DecodeResult) -> bool:
        if not items:
            result.rejections.append(Rejection(Reason.EMPTY_PAYLOAD, "empty JSON array"))
            return False
        if len(items) > self._bounds.max_batch_items:
            result.rejections.append(
                Rejection(
                    Reason.BATCH_TOO_LARGE,
                    f"{len(items)} readings > limit {self._bounds.max_batch_items}",
                )
            )
            return False
        return True

    def _check(
        self,
        item: _WireReading,
        ctx: TopicContext,
        *,
        window: tuple[int, int],
        index: int | None,
        result: DecodeResult,
    ) -> None:
        try:
            result.readings.append(self._validate(item, ctx, window))
        except _RefusedError as refused:
            result.rejections.append(Rejection(refused.reason, refused.detail, index))

    def _validate(self, item: _WireReading, ctx: TopicContext, window: tuple[int, int]) -> Reading:
        device_id = _pick("device_id", item.device_id, ctx.device_id)
        sensor_type = _pick("sensor_type", item.sensor_type, ctx.sensor_type)
        site = _pick("site", item.site, ctx.site, DEFAULT_SITE)
        unit = self._units.get(sensor_type)
        if unit is None:
            raise _RefusedError(Reason.UNKNOWN_SENSOR_TYPE, f"{sensor_type!r} is not configured")
        if item.unit is not None and item.unit != unit:
            detail = f"unit {item.unit!r}, {sensor_type} is in {unit!r}"
            raise _RefusedError(Reason.BAD_UNIT, detail)
        ts = item.ts
        if isinstance(ts, str):
            ts = _parse_iso(ts)
        lo, hi = window
        if not lo <= ts <= hi:
            raise _RefusedError(Reason.TS_OUT_OF_BOUNDS, f"ts {ts} outside [{lo}, {hi}] (ms)")
        if not math.isfinite(item.value):
            raise _RefusedError(Reason.NON_FINITE_VALUE, f"value {item.value} is not finite")
        return Reading(
            device_id=device_id,
            sensor_type=sensor_type,
            site=site,
            ts=ts,
            value=item.value,
            seq=item.seq,
            unit=item.unit,
        )

    def _window(self) -> tuple[int, int]:
        """Event times accepted now, in ms: [now - max_past, now + max_future]."""
        now_ms = int(self._clock() * 1000)
        return (
            now_ms - self._bounds.max_past_s * 1000,
            now_ms + self._bounds.max_future_s * 1000,
        )

    def _decode_slowly(self, payload: bytes | bytearray, ctx: TopicContext) -> DecodeResult:
        """The typed decode failed: find out exactly why, item by item."""
        result = DecodeResult()
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            result.rejections.append(Rejection(Reason.INVALID_UTF8, str(exc)))
            return result
        try:
            raw = _raw_decoder.decode(payload)
        except RecursionError:
            detail = "JSON nested too deeply (a reading is one object or an array of objects)"
            result.rejections.append(Rejection(Reason.MALFORMED_JSON, detail))
            return result
        except msgspec.ValidationError as exc:  # e.g. 1e999
            result.rejections.append(Rejection(Reason.NON_FINITE_VALUE, str(exc)))
            return result
        except msgspec.DecodeError as exc:
            reason = Reason.MALFORMED_JSON
            if _NON_FINITE_RE.search(payload):
                reason = Reason.NON_FINITE_VALUE
            result.rejections.append(Rejection(reason, str(exc)))
            return result
        if isinstance(raw, list):
            if not self._batch_size_ok(raw, result):
                return result
            items, batch = raw, True
        else:
            items, batch = [raw], False
        window = self._window()
        for i, obj in enumerate(items):
            index = i if batch else None
            if not isinstance(obj, dict):
                kind = type(obj).__name__
                result.rejections.append(
                    Rejection(Reason.WRONG_TYPE, f"expected a JSON object, got {kind}", index)
                )
                continue
            try:
                item = msgspec.convert(obj, _WireReading)
            except msgspec.ValidationError as exc:
                result.rejections.append(Rejection(_classify(str(exc)), str(exc), index))
                continue
            self._check(item, ctx, window=window, index=index, result=result)
        return result


class _RefusedError(Exception):
    """Internal: a reading failed a check (kept off the happy path)."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _pick(name: str, payload: str | None, topic: str | None, default: str | None = None) -> str:
    """Payload and topic must agree; either may supply the value."""
    if payload is not None and topic is not None and payload != topic:
        raise _RefusedError(Reason.TOPIC_MISMATCH, f"{name} {payload!r} but topic says {topic!r}")
    value = payload if payload is not None else topic if topic is not None else default
    if value is None:
        raise _RefusedError(Reason.MISSING_FIELD, f"{name} missing from payload and topic")
    return value


def _classify(message: str) -> Reason:
    """Map a msgspec validation message to our reason code."""
    if "missing required field" in message:
        return Reason.MISSING_FIELD
    if "Number out of range" in message:
        return Reason.NON_FINITE_VALUE
    match = _FIELD_RE.search(message)
    name = match.group(1) if match else ""
    constrained = "matching regex" in message or "of length" in message
    if constrained and name in _ID_FIELDS:
        return Reason.BAD_ID
    if constrained and name == "sensor_type":
        return Reason.UNKNOWN_SENSOR_TYPE
    return Reason.WRONG_TYPE


def _parse_iso(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        detail = f"ts {text[:40]!r} is not ISO-8601 with a timezone"
        raise _RefusedError(Reason.BAD_TIMESTAMP, detail)
    return int(moment.timestamp() * 1000)


def encode(message: Reading | Aggregate | SiteAggregate | Alert | IngestDeadLetter) -> bytes:
    """JSON bytes for any pipeline message."""
    return _encoder.encode(message)


def decode_reading(value: bytes) -> Reading:
    """Decode one trusted Kafka value (already validated by the ingester)."""
    return _reading_decoder.decode(value)


def decode_readings(values: Sequence[bytes]) -> list[Reading]:
    """Decode many Kafka values in one call by joining them into a JSON array.

    Several times faster than one decode per message; raises
    ``msgspec.DecodeError``/``ValidationError`` if any value is bad, so callers
    that cannot trust the topic fall back to ``decode_reading`` per value.
    """
    return _reading_list_decoder.decode(b"[" + b",".join(values) + b"]")
