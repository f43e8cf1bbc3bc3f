"""Every point the project writes matches ``iotpipe.schema``, the one table of names."""

from __future__ import annotations

import math

import pytest

from iotpipe import schema
from iotpipe.model import Reading, SiteAggregate
from ops.status import pipeline_lines
from sinks.lineprotocol import build_lines, point_line
from tests.unit.ops.test_status import snapshot
from tests.unit.sinks.test_lineprotocol import _agg, _alert, parse

BY_NAME = {m.name: m for m in schema.MEASUREMENTS}


def _check(line: str, *, all_tags: bool) -> None:
    name, tags, fields, _ = parse(line)
    m = BY_NAME[name]
    if all_tags:  # the bulk measurements carry every tag the schema names
        assert tuple(sorted(tags)) == tuple(sorted(m.tags)), line
    assert set(tags) <= set(m.tags), line
    assert fields and all(m.allows_field(k) for k in fields), line


def test_the_sinks_points_match_the_schema() -> None:
    site = SiteAggregate(
        site="plant-a",
        sensor_type="co2",
        window="1m",
        start=0,
        end=60_000,
        devices=2,
        count=4,
        mean=1.0,
        min=0.0,
        max=2.0,
        std=0.5,
        last=2.0,
    )
    reading = Reading(device_id="d", sensor_type="co2", site="s", ts=1, value=1.0, seq=3)
    out = build_lines([_agg(), site, _alert(), reading])
    assert out.rejected == []
    assert {parse(line)[0] for line in out.lines} == {
        "sensor_agg",
        "site_agg",
        "anomaly",
        "reading",
    }
    for line in out.lines:
        _check(line, all_tags=True)


def test_the_status_record_matches_the_schema() -> None:
    lines = pipeline_lines(snapshot())
    assert lines
    for line in lines:
        _check(line, all_tags=False)


def test_point_line_refuses_names_outside_the_schema() -> None:
    assert point_line(schema.PIPELINE, {"kind": "x", "topic": None}, {"up": 1}, 5) == (
        "pipeline,kind=x up=1i 5"
    )
    assert point_line(schema.PIPELINE, {"kind": "x"}, {"readings_rate": 2.5, "lag": math.nan}, 5)
    with pytest.raises(ValueError, match="no tag"):
        point_line(schema.PIPELINE, {"colour": "red"}, {"up": 1}, 5)
    with pytest.raises(ValueError, match="no field"):
        point_line(schema.PIPELINE, {"kind": "x"}, {"temperature": 1.0}, 5)
    with pytest.raises(ValueError, match="no finite field"):
        point_line(schema.PIPELINE, {"kind": "x"}, {"rate": math.inf}, 5)
