"""Codec: every rejection reason, topic filling, batches, round-trips, fuzzing."""

from __future__ import annotations

import json
import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iotpipe.catalogue import load_catalogue
from iotpipe.codec import ReadingDecoder, Reason, decode_reading, decode_readings, encode
from iotpipe.model import Aggregate, Alert, Reading, alert_id
from iotpipe.settings import ValidationSettings
from iotpipe.topics import TopicContext, parse_mqtt_reading_topic

NOW_MS = 1_764_400_000_000
CATALOGUE = load_catalogue()
DECODER = ReadingDecoder(
    CATALOGUE,
    ValidationSettings(max_past_s=3600, max_future_s=60, max_payload_bytes=4096, max_batch_items=5),
    clock=lambda: NOW_MS / 1000,
)
FULL_TOPIC = parse_mqtt_reading_topic("sensors/plant-a/temperature/dev-000042")


def reading(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "device_id": "dev-000042",
        "sensor_type": "temperature",
        "site": "plant-a",
        "ts": NOW_MS,
        "value": 21.7,
        "seq": 1052,
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not ...}


def raw(obj: object) -> bytes:
    return json.dumps(obj).encode()


def reasons(payload: bytes, topic: TopicContext | None = FULL_TOPIC) -> list[Reason]:
    return [r.reason for r in DECODER.decode(payload, topic).rejections]


def test_valid_reading_round_trips_exactly() -> None:
    result = DECODER.decode(raw(reading()), FULL_TOPIC)
    assert result.rejections == []
    (r,) = result.readings
    assert r == Reading(
        device_id="dev-000042",
        sensor_type="temperature",
        site="plant-a",
        ts=NOW_MS,
        value=21.7,
        seq=1052,
    )
    assert decode_reading(encode(r)) == r
    assert json.loads(encode(r)) == reading()


def test_missing_fields_come_from_the_topic() -> None:
    payload = raw({"ts": NOW_MS, "value": 3})
    (r,) = DECODER.decode(payload, FULL_TOPIC).readings
    assert (r.device_id, r.sensor_type, r.site) == ("dev-000042", "temperature", "plant-a")
    assert isinstance(r.value, float) and r.value == 3.0


def test_site_defaults_when_neither_payload_nor_topic_says() -> None:
    (r,) = DECODER.decode(raw(reading(site=...)), None).readings
    assert r.site == "default"


def test_iso_timestamp_is_normalised_to_ms() -> None:
    (r,) = DECODER.decode(raw(reading(ts="2025-11-29T07:06:40.123+00:00")), FULL_TOPIC).readings
    assert r.ts == 1_764_400_000_123


def test_gateway_batch_keeps_good_items_and_names_bad_ones() -> None:
    batch = [reading(seq=1), reading(value="hot"), reading(seq=3), 7]
    result = DECODER.decode(raw(batch), parse_mqtt_reading_topic("sensors/plant-a"))
    assert [r.seq for r in result.readings] == [1, 3]
    assert [(r.reason, r.index) for r in result.rejections] == [
        (Reason.WRONG_TYPE, 1),
        (Reason.WRONG_TYPE, 3),
    ]


def test_gateway_batch_of_many_devices_on_a_site_topic() -> None:
    batch = [reading(device_id=f"d{i}", sensor_type=t) for i, t in enumerate(["gas", "co2"])]
    result = DECODER.decode(raw(batch), parse_mqtt_reading_topic("sensors/plant-a"))
    assert [(r.device_id, r.sensor_type) for r in result.readings] == [("d0", "gas"), ("d1", "co2")]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", Reason.EMPTY_PAYLOAD),
        (b"[]", Reason.EMPTY_PAYLOAD),
        (b"x" * 5000, Reason.PAYLOAD_TOO_LARGE),
        (raw([reading()] * 6), Reason.BATCH_TOO_LARGE),
        (b'{"device_id": "\xff\xfe"}', Reason.INVALID_UTF8),
        (b"\xff\xfe{", Reason.INVALID_UTF8),
        (b'{"ts": 1, "value": ', Reason.MALFORMED_JSON),
        (b"not json", Reason.MALFORMED_JSON),
        (b'"just a string"', Reason.WRONG_TYPE),
        (b"42", Reason.WRONG_TYPE),
        (raw(reading(value="21.7")), Reason.WRONG_TYPE),
        (raw(reading(value=True)), Reason.WRONG_TYPE),
        (raw(reading(ts=1.5e12)), Reason.WRONG_TYPE),
        (raw(reading(seq=-1)), Reason.WRONG_TYPE),
        (raw(reading(value=...)), Reason.MISSING_FIELD),
        (raw(reading(ts=...)), Reason.MISSING_FIELD),
        (b'{"ts": 1764400000000, "value": NaN}', Reason.NON_FINITE_VALUE),
        (b'{"ts": 1764400000000, "value": -Infinity}', Reason.NON_FINITE_VALUE),
        (b'{"ts": 1764400000000, "value": 1e999}', Reason.NON_FINITE_VALUE),
        (raw(reading(ts=NOW_MS + 61_000)), Reason.TS_OUT_OF_BOUNDS),
        (raw(reading(ts=NOW_MS - 3_601_000)), Reason.TS_OUT_OF_BOUNDS),
        (raw(reading(ts=1_764_400_000)), Reason.TS_OUT_OF_BOUNDS),  # seconds, not ms
        (raw(reading(ts="yesterday")), Reason.BAD_TIMESTAMP),
        (raw(reading(ts="2025-11-29T07:06:40")), Reason.BAD_TIMESTAMP),  # no timezone
        (raw(reading(device_id="dev 42")), Reason.BAD_ID),
        (raw(reading(device_id="dev/42/#")), Reason.BAD_ID),
        (raw(reading(device_id="x" * 65)), Reason.BAD_ID),
        (raw(reading(site="")), Reason.BAD_ID),
        (raw(reading(device_id="dev-7")), Reason.TOPIC_MISMATCH),
        (raw(reading(sensor_type="humidity")), Reason.TOPIC_MISMATCH),
        (raw(reading(site="plant-b")), Reason.TOPIC_MISMATCH),
        (raw(reading(unit="fahrenheit")), Reason.BAD_UNIT),
    ],
)
def test_every_rejection_reason(payload: bytes, expected: Reason) -> None:
    result = DECODER.decode(payload, FULL_TOPIC)
    assert result.readings == []
    assert [r.reason for r in result.rejections] == [expected], result.rejections
    assert all(r.detail for r in result.rejections)


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (reading(sensor_type="radiation"), Reason.UNKNOWN_SENSOR_TYPE),
        (reading(sensor_type="Temperature"), Reason.UNKNOWN_SENSOR_TYPE),
        (reading(device_id=...), Reason.MISSING_FIELD),
        (reading(sensor_type=...), Reason.MISSING_FIELD),
    ],
)
def test_rejections_without_topic_context(obj: dict[str, object], expected: Reason) -> None:
    assert reasons(raw(obj), None) == [expected]


def test_unit_matching_the_catalogue_is_kept() -> None:
    (r,) = DECODER.decode(raw(reading(unit="celsius")), FULL_TOPIC).readings
    assert r.unit == "celsius"


def test_unknown_extra_fields_are_ignored() -> None:
    (r,) = DECODER.decode(raw(reading(battery=0.9)), FULL_TOPIC).readings
    assert r.value == 21.7


def test_decode_readings_batch_matches_single_decodes() -> None:
    rs = [
        Reading(device_id=f"d{i}", sensor_type="gas", ts=NOW_MS + i, value=i / 3) for i in range(50)
    ]
    values = [encode(r) for r in rs]
    assert decode_readings(values) == [decode_reading(v) for v in values] == rs
    with pytest.raises(msgspec.ValidationError):
        decode_readings([*values, b'{"device_id": 1}'])


def test_aggregate_and_alert_round_trip() -> None:
    agg = Aggregate(
        device_id="d",
        sensor_type="gas",
        site="s",
        window="10s",
        start=0,
        end=10_000,
        count=3,
        mean=1.0,
        min=0.5,
        max=1.5,
        std=0.4,
        last=1.5,
    )
    assert msgspec.json.decode(encode(agg), type=Aggregate) == agg
    alert = Alert(
        alert_id=alert_id("d", "gas", "threshold", NOW_MS),
        device_id="d",
        sensor_type="gas",
        site="s",
        detector="threshold",
        severity="critical",
        ts=NOW_MS,
        value=60.0,
        score=1.2,
        threshold=50.0,
        message="gas above critical",
    )
    decoded = msgspec.json.decode(encode(alert), type=Alert)
    assert decoded == alert and decoded.state == "raised"


def test_alert_id_is_deterministic_and_distinguishing() -> None:
    a = alert_id("dev-1", "gas", "ewma", NOW_MS)
    assert a == alert_id("dev-1", "gas", "ewma", NOW_MS)
    others = {
        alert_id("dev-2", "gas", "ewma", NOW_MS),
        alert_id("dev-1", "co2", "ewma", NOW_MS),
        alert_id("dev-1", "gas", "threshold", NOW_MS),
        alert_id("dev-1", "gas", "ewma", NOW_MS + 1),
    }
    assert a not in others and len(others) == 4


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_crash_the_decoder(payload: bytes) -> None:
    result = DECODER.decode(payload, FULL_TOPIC)
    assert len(result.readings) + len(result.rejections) >= 1
    for r in result.readings:
        assert math.isfinite(r.value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=20,
)
field_values = st.one_of(
    json_values, st.just(NOW_MS), st.sampled_from(["temperature", "gas", "dev-1", "plant-a"])
)


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.dictionaries(
            st.sampled_from(["device_id", "sensor_type", "site", "ts", "value", "seq", "unit"]),
            field_values,
        ),
        json_values,
    )
)
def test_random_json_is_accepted_or_refused_never_raises(obj: object) -> None:
    payload = json.dumps(obj, allow_nan=True).encode()
    result = DECODER.decode(payload, FULL_TOPIC)
    assert len(result.readings) + len(result.rejections) >= 1
    for r in result.readings:
        assert math.isfinite(r.value) and CATALOGUE[r.sensor_type].name == r.sensor_type
