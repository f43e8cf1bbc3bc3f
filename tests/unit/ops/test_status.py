"""The status screen and the ``pipeline`` line protocol, from a made-up snapshot."""

from __future__ import annotations

import re

from rich.console import Console

from iotpipe.settings import load_settings
from ops.pipeline_health import (
    AlertCounts,
    ComponentMetrics,
    DeadLetters,
    PartitionLag,
    PipelineHealth,
    ServiceHealth,
    TopicHealth,
)
from ops.status import pipeline_lines, render

LINE = re.compile(r"^pipeline(,(?:[^ \\]|\\.)+)? [^ ]+ \d+$")  # tags may hold escaped spaces


def snapshot() -> PipelineHealth:
    return PipelineHealth(
        at_ms=1_795_000_000_123,
        elapsed_s=0.05,
        services=(
            ServiceHealth("kafka", "up", True, "127.0.0.1:9092", "1 broker(s)"),
            ServiceHealth("influxdb", "down", False, "127.0.0.1:8086", "refused"),
        ),
        kafka_error=None,
        topics=(
            TopicHealth("readings.co2", "readings", "co2", True, 4, 120, 130, 2.5),
            TopicHealth("alerts", "alerts", None, True, 4, 7, 7, None),
            TopicHealth("late", "late", None, False, 0, None, None, None),
        ),
        lag=(
            PartitionLag("iotpipe-flow-normal", "readings.co2", 0, 60, 65, 5),
            PartitionLag("iotpipe-flow-normal", "readings.co2", 1, 60, 65, 5),
            PartitionLag("iotpipe-flow-high", "readings.gas", 0, None, 3, None),
        ),
        components=(
            ComponentMetrics("ingest", "ingest", "u", "up", "", (), {"messages": 10.0}),
            ComponentMetrics("flow-normal", "flow", "u", "down", "refused"),
        ),
        dead_letters=DeadLetters("ingest metrics", {"bad value, really": 3}, 3, 0, None),
        alerts=AlertCounts(7, {"ewma": 5}, {"raised": 5}),
    )


def test_pipeline_lines() -> None:
    lines = pipeline_lines(snapshot())
    assert all(LINE.match(line) and line.endswith(" 1795000000123") for line in lines), lines
    assert (
        "pipeline,kind=topic,role=readings,sensor_type=co2,topic=readings.co2"
        " messages=120i,end_offset=130i,rate=2.5 1795000000123"
    ) in lines
    assert (
        "pipeline,kind=topic,role=alerts,topic=alerts messages=7i,end_offset=7i 1795000000123"
        in lines
    )
    assert not any("topic=late" in line for line in lines)  # missing topic: nothing to say
    assert (
        "pipeline,group=iotpipe-flow-normal,kind=lag,topic=readings.co2 lag=10i 1795000000123"
    ) in lines
    assert not any("iotpipe-flow-high" in line for line in lines)  # nothing committed yet
    assert "pipeline,kind=service,service=influxdb up=0i 1795000000123" in lines
    assert (
        "pipeline,component=ingest,kind=component up=1i,messages_rate=10.0 1795000000123" in lines
    )
    assert "pipeline,component=flow-normal,kind=component up=0i 1795000000123" in lines
    assert r"pipeline,kind=dead_letter,reason=bad\ value\,\ really count=3i 1795000000123" in lines
    assert "pipeline,detector=ewma,kind=alert count=5i 1795000000123" in lines
    assert "pipeline,kind=snapshot collect_s=0.05 1795000000123" in lines


def test_screen_has_every_section() -> None:
    console = Console(record=True, width=200)
    console.print(render(snapshot(), load_settings()))
    text = console.export_text()
    for part in (
        "Services",
        "Throughput",
        "Kafka topics",
        "Dead letters",
        "Alerts",
        "not running",
        "readings.co2",
        "missing",
        "bad value, really",
        "detector ewma",
    ):
        assert part in text, part
    co2 = next(line for line in text.splitlines() if "readings.co2" in line)
    assert "120" in co2 and "2.5" in co2 and "10" in co2  # messages, rate, lag
