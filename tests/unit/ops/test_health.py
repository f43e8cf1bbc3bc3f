"""PipelineHealth arithmetic (rates, lag totals) and the Prometheus scrape, without servers."""

from __future__ import annotations

import socket
from collections import Counter

import pytest
from prometheus_client import CollectorRegistry, start_http_server

from flows.stats import FlowStats, FlowStatsCollector
from ingest.stats import IngestStats, StatsCollector
from iotpipe.settings import load_settings
from ops.health import HealthCollector, _with_rate, _with_rates
from ops.pipeline_health import (
    AlertCounts,
    ComponentMetrics,
    DeadLetters,
    PartitionLag,
    PipelineHealth,
    Sample,
    TopicHealth,
)


def topic(name: str, end: int | None, messages: int | None = None) -> TopicHealth:
    exists = end is not None
    return TopicHealth(name, "readings", "co2", exists, 4 if exists else 0, messages, end, None)


def health(
    topics: tuple[TopicHealth, ...] = (),
    lag: tuple[PartitionLag, ...] = (),
    components: tuple[ComponentMetrics, ...] = (),
    at_ms: int = 1_000_000,
) -> PipelineHealth:
    return PipelineHealth(
        at_ms=at_ms,
        elapsed_s=0.01,
        services=(),
        kafka_error=None,
        topics=topics,
        lag=lag,
        components=components,
        dead_letters=DeadLetters("kafka topics", {}, 0, 0, None),
        alerts=AlertCounts(0, {}, {}),
    )


def test_topic_rate_is_written_messages_per_second() -> None:
    before, after = topic("t", 100, 100), topic("t", 150, 80)  # retention dropped some
    assert _with_rate(after, before, 2.0).rate == 25.0  # from end offsets, not retained totals
    assert _with_rate(after, None, 2.0).rate is None
    assert _with_rate(topic("t", 10), before, 2.0).rate is None  # recreated topic
    assert _with_rate(topic("t", None), before, 2.0).rate is None


def test_lag_by_topic_sums_partitions_and_keeps_unknown_as_none() -> None:
    lag = (
        PartitionLag("g", "a", 0, 5, 10, 5),
        PartitionLag("g", "a", 1, 7, 10, 3),
        PartitionLag("g", "b", 0, None, 10, None),
        PartitionLag("g", "c", 0, None, 10, None),
        PartitionLag("g", "c", 1, 2, 2, 0),
    )
    assert health(lag=lag).lag_by_topic() == {("g", "a"): 8, ("g", "b"): None, ("g", "c"): 0}


def component(state: str, readings: float) -> ComponentMetrics:
    samples = (
        Sample("iotpipe_flow_readings_total", {"flow": "normal"}, readings),
        Sample("iotpipe_flow_alerts_total", {"flow": "normal", "detector": "ewma"}, 2),
        Sample("iotpipe_flow_alerts_total", {"flow": "normal", "detector": "stuck"}, 3),
    )
    return ComponentMetrics("flow-normal", "flow", "u", state, "", samples)  # type: ignore[arg-type]


def test_component_rates_and_totals() -> None:
    prev, now = component("up", 100), component("up", 400)
    rated = _with_rates(now, prev, 3.0)
    assert rated.rates["readings"] == 100.0
    assert rated.rates["alerts"] == 0.0
    assert _with_rates(component("up", 50), prev, 3.0).rates["readings"] is None  # restarted
    assert _with_rates(now, component("down", 0), 3.0).rates["readings"] is None
    assert now.total("iotpipe_flow_alerts_total") == 5
    assert now.total("iotpipe_flow_alerts_total", detector="stuck") == 3
    assert now.by_label("iotpipe_flow_alerts_total", "detector") == {"ewma": 2, "stuck": 3}
    assert component("down", 1).total("iotpipe_flow_readings_total") is None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def exporters() -> tuple[int, int]:
    """The ingester's and a flow's real collectors, served as they are in production."""
    ingest = IngestStats(messages=12, readings=10)
    ingest.dead_lettered = Counter({"malformed_json": 2, "out_of_range": 1})
    flow = FlowStats("normal", readings=10, aggregates=4)
    flow.alerts[("ewma", "raised", "warning")] += 2
    flow.alerts[("threshold", "cleared", "critical")] += 1
    ports = []
    for collector in (StatsCollector(ingest), FlowStatsCollector(flow)):
        registry = CollectorRegistry()
        registry.register(collector)
        port = free_port()
        start_http_server(port, addr="127.0.0.1", registry=registry)
        ports.append(port)
    return ports[0], ports[1]


def test_scrape_parses_the_real_exporters(exporters: tuple[int, int]) -> None:
    ingest_port, flow_port = exporters
    with HealthCollector(load_settings()) as collector:
        ingest = collector._scrape("ingest", "ingest", ingest_port)
        flow = collector._scrape("flow-normal", "flow", flow_port)
        down = collector._scrape("flow-high", "flow", free_port())
        off = collector._scrape("flow-high", "flow", 0)
        topics = (topic("dlq", 3, 3),)
        dead = collector._dead_letters(topics, (ingest, flow))
        alerts = collector._alerts(topics, (ingest, flow, down))
    assert ingest.up and ingest.total("iotpipe_ingest_messages_total") == 12
    assert ingest.by_label("iotpipe_ingest_dead_lettered_total", "reason") == {
        "malformed_json": 2,
        "out_of_range": 1,
    }
    assert flow.total("iotpipe_flow_readings_total", flow="normal") == 10
    assert down.state == "down" and "refused" in down.error.lower()
    assert off.state == "off"
    assert dead.source == "ingest metrics"
    assert dead.by_reason == {"malformed_json": 2, "out_of_range": 1}
    assert dead.sink_from_flows == 0
    assert alerts.by_detector == {"ewma": 2, "threshold": 1}
    assert alerts.by_state == {"cleared": 1, "raised": 2}


def test_alerts_by_severity_when_the_flows_label_it() -> None:
    labels = {"flow": "high", "detector": "threshold", "state": "raised"}
    samples = (
        Sample("iotpipe_flow_alerts_total", {**labels, "severity": "critical"}, 4),
        Sample("iotpipe_flow_alerts_total", {**labels, "severity": "warning"}, 1),
    )
    flow = ComponentMetrics("flow-high", "flow", "u", "up", "", samples)
    with HealthCollector(load_settings()) as collector:
        alerts = collector._alerts((), (flow,))
    assert alerts.by_severity == {"critical": 4, "warning": 1}
    assert alerts.by_detector == {"threshold": 5} and alerts.by_state == {"raised": 5}
