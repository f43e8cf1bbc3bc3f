"""Topic helpers for MQTT and Kafka."""

from __future__ import annotations

import pytest

from iotpipe.topics import (
    KafkaTopics,
    TopicContext,
    TopicError,
    mqtt_alert_topic,
    mqtt_reading_topic,
    mqtt_subscription,
    parse_mqtt_reading_topic,
)


def test_mqtt_topics_round_trip() -> None:
    topic = mqtt_reading_topic("plant-a", "gas", "dev-1")
    assert topic == "sensors/plant-a/gas/dev-1"
    assert parse_mqtt_reading_topic(topic) == TopicContext("plant-a", "gas", "dev-1")
    assert mqtt_alert_topic("plant-a", "gas", "dev-1") == "alerts/plant-a/gas/dev-1"


def test_gateway_topics_carry_less_context() -> None:
    assert parse_mqtt_reading_topic("sensors/plant-a") == TopicContext("plant-a")
    assert parse_mqtt_reading_topic("sensors/plant-a/co2") == TopicContext("plant-a", "co2")


@pytest.mark.parametrize(
    "topic",
    [
        "sensors",
        "other/a/b/c",
        "sensors/a/b/c/d",
        "sensors//gas/d",
        "sensors/a/GAS/d",
        "sensors/a/gas/dev 1",
        "sensors/a/gas/",
    ],
)
def test_bad_mqtt_topics(topic: str) -> None:
    with pytest.raises(TopicError):
        parse_mqtt_reading_topic(topic)


def test_subscriptions() -> None:
    assert mqtt_subscription() == "sensors/#"
    assert mqtt_subscription("ingest") == "$share/ingest/sensors/#"
    assert mqtt_subscription(site="plant-a") == "sensors/plant-a/#"
    assert mqtt_subscription("ingest", "plant-a") == "$share/ingest/sensors/plant-a/#"


def test_kafka_topics_with_prefix() -> None:
    t = KafkaTopics("prod.")
    assert t.readings("gas") == "prod.readings.gas"
    assert t.sensor_type_of("prod.readings.gas") == "gas"
    assert t.sensor_type_of("readings.gas") is None
    assert (t.alerts, t.aggregates, t.dlq_ingest, t.dlq_sink) == (
        "prod.alerts",
        "prod.aggregates",
        "prod.dlq.ingest",
        "prod.dlq.sink",
    )
    assert t.all_topics(["gas", "co2"]) == [
        "prod.readings.co2",
        "prod.readings.gas",
        "prod.alerts",
        "prod.aggregates",
        "prod.dlq.ingest",
        "prod.dlq.sink",
        "prod.late",
    ]
