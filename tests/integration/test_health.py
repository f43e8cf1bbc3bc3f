"""collect_health against the real local stack: topic totals, lag, components, dead letters."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from ingest.runner import run_ingester
from iotpipe.catalogue import load_catalogue
from iotpipe.connectors.kafka import delete_topics, ensure_topics
from iotpipe.settings import Settings
from iotpipe.topics import KafkaTopics
from ops.health import HealthCollector, collect_health
from ops.pipeline_health import PipelineHealth
from ops.stack import Stack
from tests.integration.pipeline import (
    Publisher,
    forget_ingest_session,
    free_port,
    free_port_pair,
    isolated_settings,
    reading,
)

CATALOGUE = load_catalogue()


def health_settings(base: Settings, unique: str, **ingest: object) -> Settings:
    """Own topic prefix and MQTT site; metrics ports of nothing that runs."""
    s = isolated_settings(base, unique, **{"metrics_port": free_port(), **ingest})
    return s.model_copy(
        update={
            "mqtt": s.mqtt.model_copy(update={"sites": f"site-{unique}"}),
            "flow": s.flow.model_copy(
                update={"metrics_port": free_port_pair(), "priority": "normal"}
            ),
        }
    )


@pytest.fixture
def isolated(stack: Stack, unique: str) -> Iterator[Settings]:
    """Health settings with the pipeline's topics created under their own prefix."""
    s = health_settings(stack.settings, unique)
    names = KafkaTopics(s.kafka.topic_prefix).all_topics(CATALOGUE.names)
    ensure_topics(s.kafka, names)
    wait_for(lambda: topics_ready(s), 30, "leaders for the new topics")
    yield s
    forget_ingest_session(s, s.ingest.instance)
    delete_topics(s.kafka, names)


def topics_ready(settings: Settings) -> bool:
    """New topics answer offset requests only once their partitions have leaders."""
    return all(t.messages is not None for t in collect_health(settings).topics)


def produce(settings: Settings, counts: dict[str, int]) -> None:
    """``counts[topic]`` messages to each topic, keyed so they spread over partitions."""
    producer = Producer(settings.kafka.client_config())
    for topic, n in counts.items():
        for i in range(n):
            producer.produce(topic, b"{}", key=f"dev-{i}".encode())
    assert producer.flush(30) == 0


@contextmanager
def ingester_running(settings: Settings) -> Iterator[None]:
    """The real ingester (``run_ingester``) in a thread, its metrics on the settings' port."""
    stop = threading.Event()
    thread = threading.Thread(target=run_ingester, args=(settings, stop), daemon=True)
    thread.start()
    try:
        wait_for(lambda: _scrape_ok(settings), 30, "ingester metrics endpoint")
        yield
    finally:
        stop.set()
        thread.join(60)


def _scrape_ok(settings: Settings) -> bool:
    ingest = collect_health(settings).component("ingest")
    return ingest is not None and ingest.up


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_topic_totals_and_rates_count_what_was_produced(isolated: Settings) -> None:
    names = KafkaTopics(isolated.kafka.topic_prefix)
    written = {
        names.readings("temperature"): 7,
        names.readings("gas"): 3,
        names.dlq_ingest: 2,
        names.alerts: 5,
    }
    with HealthCollector(isolated) as collector:
        before = collector.collect()
        assert all(t.exists and t.messages == 0 for t in before.topics)
        produce(isolated, written)
        time.sleep(0.5)
        after = collector.collect(before)
    expected_topics = names.all_topics(CATALOGUE.names)
    assert [t.topic for t in after.topics] == expected_topics
    dt = (after.at_ms - before.at_ms) / 1000
    for t in after.topics:
        want = written.get(t.topic, 0)
        assert t.messages == want, t.topic
        assert t.partitions == isolated.kafka.partitions
        assert t.rate == pytest.approx(want / dt, rel=1e-3), t.topic
    assert after.topic(names.readings("gas")).sensor_type == "gas"  # type: ignore[union-attr]
    assert after.alerts.topic_total == 5
    assert after.dead_letters.ingest_topic == 2 and after.dead_letters.sink_topic == 0
    assert after.kafka_error is None
    assert {s.name: s.up for s in after.services} == {
        "mosquitto": True,
        "kafka": True,
        "influxdb": True,
    }


def test_lag_follows_the_offsets_a_flow_group_commits(isolated: Settings) -> None:
    names = KafkaTopics(isolated.kafka.topic_prefix)
    temperature, gas = names.readings("temperature"), names.readings("gas")
    produce(isolated, {temperature: 40, gas: 4})
    names = KafkaTopics(isolated.kafka.topic_prefix)
    normal, high = names.flow_group("normal"), names.flow_group("high")

    health = collect_health(isolated)
    lag = health.lag_by_topic()
    # Every readings topic of each priority is watched; nothing is committed yet.
    normal_types = {t.name for t in CATALOGUE.by_priority("normal")}
    assert {t for g, t in lag if g == normal} == {names.readings(t) for t in normal_types}
    assert {t for g, t in lag if g == high} == {gas}
    assert all(v is None for v in lag.values())

    # Commit as the flow does: one behind the end of each non-empty partition.
    ends = {(p.topic, p.partition): p.end for p in health.lag if p.topic == temperature}
    consumer = Consumer({**isolated.kafka.client_config(), "group.id": normal})
    try:
        offsets = [TopicPartition(t, p, max(0, end - 1)) for (t, p), end in ends.items()]
        consumer.commit(offsets=offsets, asynchronous=False)
    finally:
        consumer.close()

    health = collect_health(isolated)
    lag = health.lag_by_topic()
    assert lag[(normal, temperature)] == sum(1 for end in ends.values() if end > 0)
    assert sum(ends.values()) == 40
    for p in health.lag:
        if p.group == normal and p.topic == temperature:
            assert p.committed == max(0, p.end - 1) and p.lag == (1 if p.end else 0)
    assert lag[(high, gas)] is None
    assert lag[(normal, names.readings("humidity"))] is None


def test_components_that_are_not_running_are_reported_fast(stack: Stack, unique: str) -> None:
    s = health_settings(stack.settings, unique)
    started = time.monotonic()
    health = collect_health(s)
    assert time.monotonic() - started < 2.0
    for name in ("ingest", "flow-normal", "flow-high"):
        c = health.component(name)
        assert c is not None and c.state == "down" and c.error, name
        assert all(v is None for v in c.rates.values())
    assert health.dead_letters.source == "kafka topics"
    assert health.dead_letters.by_reason == {}
    assert health.alerts.by_detector == {}

    off = s.model_copy(
        update={
            "ingest": s.ingest.model_copy(update={"metrics_port": 0}),
            "flow": s.flow.model_copy(update={"metrics_port": 0}),
        }
    )
    assert {c.state for c in collect_health(off).components} == {"off"}


def test_kafka_down_is_reported_not_raised(stack: Stack, unique: str) -> None:
    s = health_settings(stack.settings, unique)
    nowhere = s.model_copy(
        update={
            "kafka": s.kafka.model_copy(update={"bootstrap_servers": f"127.0.0.1:{free_port()}"})
        }
    )
    started = time.monotonic()
    health = collect_health(nowhere)
    assert time.monotonic() - started < 2.0
    assert health.kafka_error
    kafka = next(x for x in health.services if x.name == "kafka")
    assert not kafka.up
    assert health.topics and all(not t.exists and t.messages is None for t in health.topics)
    assert health.lag == ()
    assert health.to_dict()["kafka_error"] == health.kafka_error


def test_real_ingester_metrics_give_dead_letters_by_reason_and_rates(
    isolated: Settings, unique: str
) -> None:
    site = isolated.mqtt.sites
    dev = f"dev-{unique}"
    pub = Publisher(isolated.mqtt, f"pub-{unique}")
    try:
        with ingester_running(isolated), HealthCollector(isolated) as collector:
            for seq in range(5):
                pub.publish(f"sensors/{site}/temperature/{dev}", reading(dev, seq))
            pub.publish(f"sensors/{site}/temperature/{dev}", b"{oops")
            pub.publish(f"sensors/{site}/temperature/{dev}", b"{nope")
            pub.publish(f"sensors/{site}/nosuchtype/{dev}", reading(dev, 9, "nosuchtype"))
            pub.wait_all()

            def settled() -> bool:
                ingest = collector.collect().component("ingest")
                return ingest is not None and ingest.total("iotpipe_ingest_acked_total") == 8

            wait_for(settled, 30, "8 messages acked")
            first = collector.collect()
            assert first.dead_letters.source == "ingest metrics"
            assert first.dead_letters.by_reason == {"malformed_json": 2, "unknown_sensor_type": 1}
            for seq in range(5, 25):
                pub.publish(f"sensors/{site}/temperature/{dev}", reading(dev, seq))
            pub.wait_all()
            wait_for(
                lambda: (
                    collector.collect()
                    .topic(  # type: ignore[union-attr]
                        KafkaTopics(isolated.kafka.topic_prefix).readings("temperature")
                    )
                    .messages
                    == 25
                ),
                30,
                "25 readings in Kafka",
            )
            second = collector.collect(first)
    finally:
        pub.close()
    ingest = second.component("ingest")
    assert ingest is not None and ingest.up
    assert ingest.total("iotpipe_ingest_readings_total") == 25
    dt = (second.at_ms - first.at_ms) / 1000
    assert ingest.rates["readings"] == pytest.approx(20 / dt, rel=1e-3)
    assert ingest.rates["dead_lettered"] == 0
    assert second.dead_letters.ingest_topic == 3


def test_to_dict_is_json_ready(isolated: Settings) -> None:
    import json

    health: PipelineHealth = collect_health(isolated)
    data = json.loads(json.dumps(health.to_dict()))
    assert set(data) >= {
        "at_ms",
        "services",
        "topics",
        "lag",
        "lag_by_topic",
        "components",
        "dead_letters",
        "alerts",
    }
    assert len(data["topics"]) == len(KafkaTopics().all_topics(CATALOGUE.names))
