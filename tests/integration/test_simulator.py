"""The simulator against real Mosquitto (read back by mosquitto_sub) and Kafka."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import pytest

from iotpipe.catalogue import load_catalogue
from iotpipe.codec import ReadingDecoder
from iotpipe.connectors.kafka import delete_topics
from iotpipe.errors import ConnectorError
from iotpipe.settings import Settings, SimulatorSettings
from iotpipe.topics import KafkaTopics, parse_mqtt_reading_topic
from ops.stack import Stack
from simulators.cli import run_simulation
from tests.integration.pipeline import mosquitto_cli_env, read_topics

CATALOGUE = load_catalogue()


def sim(**options: object) -> SimulatorSettings:
    return SimulatorSettings.model_validate({"speed": 0, "seed": 1, **options})


@pytest.fixture
def subscriber(stack: Stack, unique: str) -> Iterator[subprocess.Popen[str]]:
    """mosquitto_sub on this test's own site only, printing topic and payload."""
    mqtt = stack.settings.mqtt
    proc = subprocess.Popen(
        [
            "mosquitto_sub",
            "-h",
            mqtt.host,
            "-p",
            str(mqtt.port),
            "-q",
            "1",
            "-v",
            "-t",
            f"sensors/sim{unique}/#",
            "-W",
            "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=mosquitto_cli_env(mqtt),
    )
    time.sleep(1.0)  # let it subscribe before anything is published
    yield proc
    proc.kill()
    proc.wait()


def received(proc: subprocess.Popen[str], readings: int, timeout: float = 60) -> list[str]:
    """Lines ``topic payload`` until ``readings`` readings have arrived."""
    assert proc.stdout is not None
    lines: list[str] = []
    seen = 0
    deadline = time.monotonic() + timeout
    while seen < readings and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        payload = line.split(" ", 1)[1]
        seen += len(json.loads(payload)) if payload.startswith("[") else 1
    return lines


@pytest.mark.parametrize(
    ("options", "per_message"),
    [({"qos": 1, "connections": 2}, 1), ({"qos": 0, "batch_size": 40}, 40)],
    ids=["single-qos1", "gateway-batches-qos0"],
)
def test_mqtt_readings_all_arrive_valid(
    stack: Stack, unique: str, subscriber: subprocess.Popen[str], options: dict[str, object],
    per_message: int,
) -> None:  # fmt: skip
    n = 3000
    summary = run_simulation(
        stack.settings,
        sim(output="mqtt", count=n, devices=300, sites=1, site_prefix=f"sim{unique}", **options),
        progress=False,
    )
    assert summary.sent == n and summary.failed == 0
    lines = received(subscriber, n)
    decoder = ReadingDecoder(CATALOGUE, stack.settings.validation)
    seqs: dict[str, list[int]] = {}
    for line in lines:
        topic, payload = line.split(" ", 1)
        result = decoder.decode(payload.encode(), parse_mqtt_reading_topic(topic))
        assert not result.rejections, (line, result.rejections)
        assert len(result.readings) <= per_message
        for r in result.readings:
            seqs.setdefault(r.device_id, []).append(r.seq or 0)
    assert sum(map(len, seqs.values())) == n
    for device_seqs in seqs.values():  # nothing lost or duplicated, in order per device
        assert device_seqs == list(range(len(device_seqs)))


def test_kafka_output_lands_in_type_topics_keyed_by_device(stack: Stack, unique: str) -> None:
    kafka = stack.settings.kafka.model_copy(update={"topic_prefix": f"t{unique}."})
    settings: Settings = stack.settings.model_copy(update={"kafka": kafka})
    topics = KafkaTopics(kafka.topic_prefix)
    names = [topics.readings(t) for t in CATALOGUE.types]
    n = 2100
    try:
        summary = run_simulation(settings, sim(output="kafka", count=n, devices=70), progress=False)
        assert summary.sent == n and summary.failed == 0
        got = read_topics(kafka, names, until=n)
        assert sum(len(v) for v in got.values()) == n
        assert set(got) == set(names)  # round-robin types: every topic has readings
        for topic, messages in got.items():
            sensor_type = topics.sensor_type_of(topic)
            for key, value in messages:
                reading = json.loads(value)
                assert reading["sensor_type"] == sensor_type
                assert key == reading["device_id"].encode()
    finally:
        delete_topics(kafka, names)


def test_broker_down_is_a_clear_error(stack: Stack) -> None:
    mqtt = stack.settings.mqtt.model_copy(update={"url": "mqtt://127.0.0.1:1"})
    settings = stack.settings.model_copy(update={"mqtt": mqtt})
    with pytest.raises(ConnectorError, match="cannot connect"):
        run_simulation(settings, sim(output="mqtt", count=10), progress=False)
