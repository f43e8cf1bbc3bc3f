"""Line protocol: escaping, fixed field types, and no injection for any input.

``parse`` below follows InfluxDB 2.7's parser (models/points.go): a tag value
ends at the first ``,``/space not preceded by a backslash; ``\\,``, ``\\ ``
and ``\\=`` unescape, every other backslash is literal; string fields unescape
``\\"`` and ``\\\\``. The integration tests check the same against the server.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iotpipe.model import Aggregate, Alert, Reading, SiteAggregate
from sinks.lineprotocol import (
    Lines,
    UnrepresentableError,
    aggregate_lines,
    anomaly_lines,
    build_lines,
    escape_string_field,
    escape_tag,
    reading_lines,
    site_aggregate_lines,
)


def _unescape_tag(text: str) -> str:
    for ch in (",", " ", "="):
        text = text.replace("\\" + ch, ch)
    return text


def parse(line: str) -> tuple[str, dict[str, str], dict[str, object], int]:
    """(measurement, tags, fields, timestamp) the way InfluxDB reads one line.

    A line break is only allowed inside a string field (tag values may hold
    a literal ``"``, so quotes mean nothing before the fields).
    """
    i = 0
    while line[i] not in ", " or (i and line[i - 1] == "\\"):
        i += 1
    measurement, rest = line[:i], line[i:]
    tags: dict[str, str] = {}
    while rest.startswith(","):
        key, _, rest = rest[1:].partition("=")
        j = 0
        while rest[j] not in ", " or rest[j - 1] == "\\":
            assert not (rest[j] == "=" and (j == 0 or rest[j - 1] != "\\")), "bare = in tag"
            j += 1
        tags[key] = _unescape_tag(rest[:j])
        rest = rest[j:]
    assert rest.startswith(" ")
    assert "\n" not in line[: len(line) - len(rest)], "line break in the series key"
    fields: dict[str, object] = {}
    rest = rest[1:]
    while True:
        key, _, rest = rest.partition("=")
        if rest.startswith('"'):
            j, chars = 1, []
            while rest[j] != '"':
                if rest[j] == "\\" and rest[j + 1] in '"\\':
                    j += 1
                chars.append(rest[j])
                j += 1
            fields[key] = "".join(chars)
            rest = rest[j + 1 :]
        else:
            m = re.match(r"[^, ]+", rest)
            assert m
            raw = m.group(0)
            assert "\n" not in raw, "line break in a field value"
            fields[key] = int(raw[:-1]) if raw.endswith("i") else float(raw)
            assert raw.endswith("i") or re.search(r"[.eE]", raw), f"float {raw} looks like int"
            rest = rest[len(raw) :]
        if rest.startswith(","):
            rest = rest[1:]
            continue
        assert rest.startswith(" ") and rest[1:].isdigit(), f"bad timestamp {rest!r}"
        return measurement, tags, fields, int(rest[1:])


def _agg(**kw: object) -> Aggregate:
    base: dict[str, object] = dict(
        device_id="dev-1",
        sensor_type="temperature",
        site="plant-a",
        window="1m",
        start=1_764_400_000_000,
        end=1_764_400_060_000,
        count=3,
        mean=21.0,
        min=20.0,
        max=22.0,
        std=1.0,
        last=22.0,
    )
    base.update(kw)
    return Aggregate(**base)  # type: ignore[arg-type]


def _alert(**kw: object) -> Alert:
    base: dict[str, object] = dict(
        alert_id="abc",
        device_id="dev-1",
        sensor_type="gas",
        site="plant-a",
        detector="zscore",
        severity="critical",
        ts=1_764_400_000_123,
        value=9.0,
        score=4.5,
        threshold=3.0,
        message='gas "high", check\nvalve',
    )
    base.update(kw)
    return Alert(**base)  # type: ignore[arg-type]


def test_aggregate_line_exact() -> None:
    out = aggregate_lines([_agg()])
    assert out.lines == [
        "sensor_agg,device_id=dev-1,sensor_type=temperature,site=plant-a,window=1m "
        "count=3i,mean=21.0,min=20.0,max=22.0,std=1.0,last=22.0 1764400000000"
    ]
    assert out.rejected == []


def test_site_aggregate_line_exact_and_mixed_batches() -> None:
    site = SiteAggregate(
        site="plant a",
        sensor_type="temperature",
        window="10s",
        start=1_764_400_000_000,
        end=1_764_400_010_000,
        devices=12,
        count=120,
        mean=21.5,
        min=19.0,
        max=float("nan"),
        std=0.5,
        last=21.0,
    )
    line = site_aggregate_lines([site]).lines[0]
    assert line == (
        "site_agg,sensor_type=temperature,site=plant\\ a,window=10s "
        "devices=12i,count=120i,mean=21.5,min=19.0,std=0.5,last=21.0 1764400000000"
    )
    assert parse(line)[1]["site"] == "plant a"
    assert build_lines([_agg(), [site]]).lines[1] == line


def test_whole_numbers_stay_floats_and_numpy_values_are_plain() -> None:
    agg = _agg(count=np.int64(4), mean=np.float64(2), min=1, max=np.float32(3.0), last=7)
    _m, _t, fields, _ts = parse(aggregate_lines([agg]).lines[0])
    assert fields == {"count": 4, "mean": 2.0, "min": 1.0, "max": 3.0, "std": 1.0, "last": 7.0}
    assert all(isinstance(fields[k], float) for k in ("mean", "min", "max", "std", "last"))
    line = reading_lines([Reading(device_id="d", sensor_type="t", ts=5, value=3)]).lines[0]  # type: ignore[arg-type]
    assert line == "reading,device_id=d,sensor_type=t,site=default value=3.0 5"


def test_anomaly_line_round_trips_message() -> None:
    alert = _alert()
    measurement, tags, fields, ts = parse(anomaly_lines([alert]).lines[0])
    assert measurement == "anomaly"
    assert tags == {
        "detector": "zscore",
        "device_id": "dev-1",
        "sensor_type": "gas",
        "severity": "critical",
        "site": "plant-a",
    }
    assert fields == {
        "value": 9.0, "score": 4.5, "message": alert.message, "state": "raised",
        "alert_id": alert.alert_id,
    }  # fmt: skip
    assert ts == alert.ts


def test_reading_with_and_without_seq() -> None:
    out = reading_lines(
        [
            Reading(device_id="a", sensor_type="t", site="s", ts=1, value=1.5, seq=7),
            Reading(device_id="b", sensor_type="t", site="s", ts=2, value=2.5),
        ]
    )
    assert [parse(line)[2] for line in out.lines] == [{"value": 1.5, "seq": 7}, {"value": 2.5}]


def test_non_finite_floats_are_left_out_or_rejected() -> None:
    (line,) = aggregate_lines([_agg(std=math.nan, max=math.inf)]).lines
    assert parse(line)[2] == {"count": 3, "mean": 21.0, "min": 20.0, "last": 22.0}
    (line,) = anomaly_lines([_alert(score=-math.inf)]).lines
    assert set(parse(line)[2]) == {"value", "message", "state", "alert_id"}
    out = reading_lines([Reading(device_id="a", sensor_type="t", ts=1, value=math.nan)])
    assert out.lines == []
    assert out.rejected[0].reason == "non_finite_value"


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("plain", "plain"),
        ("a b", "a\\ b"),
        ("a,b=c", "a\\,b\\=c"),
        ('q"uote', 'q"uote'),
        ("mid\\dle", "mid\\dle"),
        ("\\lead", "\\lead"),
        ("ünï 温度", "ünï\\ 温度"),
    ],
)
def test_escape_tag(raw: str, escaped: str) -> None:
    assert escape_tag(raw) == escaped
    assert _unescape_tag(escaped) == raw


@pytest.mark.parametrize("raw", ["", "trail\\", "a\\ b", "a\\,b", "a\\=b", "two\\\\", "nl\nx"])
def test_unrepresentable_tags_are_refused(raw: str) -> None:
    with pytest.raises(UnrepresentableError):
        escape_tag(raw)
    out = aggregate_lines([_agg(device_id=raw), _agg(device_id="fine")])
    assert len(out.lines) == 1
    assert out.rejected[0].reason == "unrepresentable_tag"
    assert out.rejected[0].item.device_id == raw  # type: ignore[attr-defined]


def test_string_field_escaping() -> None:
    assert escape_string_field('a"b\\c\nd') == '"a\\"b\\\\c\nd"'


def test_build_lines_flattens_mixed_batches() -> None:
    reading = Reading(device_id="a", sensor_type="t", ts=1, value=1.0)
    out = build_lines([[_agg(), _agg(window="5m")], _alert(), reading, "junk"])
    assert sorted(line.split(",", 1)[0] for line in out.lines) == [
        "anomaly",
        "reading",
        "sensor_agg",
        "sensor_agg",
    ]
    assert [r.reason for r in out.rejected] == ["unsupported_item"]


def test_same_input_same_line() -> None:
    assert aggregate_lines([_agg()]).lines == aggregate_lines([_agg()]).lines


_text = st.text(min_size=0, max_size=30)


@settings(max_examples=500)
@given(device=_text, site=_text, window=_text, detector=_text, message=st.text(max_size=60))
def test_no_input_can_inject(
    device: str, site: str, window: str, detector: str, message: str
) -> None:
    """Any text either round-trips exactly, as one point, or is refused."""
    out = Lines()
    out.extend(aggregate_lines([_agg(device_id=device, site=site, window=window)]))
    out.extend(anomaly_lines([_alert(device_id=device, detector=detector, message=message)]))
    for rejected in out.rejected:
        assert rejected.reason == "unrepresentable_tag"
    tag_values = (device, site, window, detector)
    if all(v and "\n" not in v and not re.search(r"\\(?=[,= ]|$)", v) for v in tag_values):
        assert len(out.lines) == 2
    for line in out.lines:
        measurement, tags, fields, _ts = parse(line)
        assert tags["device_id"] == device
        if measurement == "sensor_agg":
            assert (tags["site"], tags["window"]) == (site, window)
            assert set(tags) == {"device_id", "sensor_type", "site", "window"}
            assert set(fields) == {"count", "mean", "min", "max", "std", "last"}
        else:
            assert tags["detector"] == detector
            assert fields["message"] == message
            assert set(fields) == {"value", "score", "message", "state", "alert_id"}
