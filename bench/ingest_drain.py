"""Ingester drain rate: a backlog queued in Mosquitto, drained into Kafka.

    python -m bench.ingest_drain [--messages 200000] [--batch 100]

Pre-loads the broker with N QoS 1 messages for the ingester's persistent
session while it is offline, then starts it and times how long it takes until
every message is acknowledged (i.e. confirmed by Kafka). Reported beside a
same-run baseline: a bare paho client draining the same kind of backlog with
no decoding and no Kafka (the ceiling of paho's Python network loop).
Figures go to stdout and ``bench/results/ingest_drain.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.ingester import Ingester
from ingest.mqtt import ingest_client_id
from iotpipe.catalogue import load_catalogue
from iotpipe.connectors.kafka import delete_topics, ensure_topics
from iotpipe.connectors.mqtt import authenticate
from iotpipe.settings import MqttSettings, Settings, load_settings
from iotpipe.topics import KafkaTopics

RESULTS = Path(__file__).parent / "results"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def payloads(count: int, batch: int, run: str) -> list[tuple[str, bytes]]:
    """(topic, payload) for `count` messages of `batch` readings each, 1,000 devices."""
    now = int(time.time() * 1000)
    out = []
    for i in range(count):
        dev = f"b{run}-{i % 1000:04d}"
        if batch == 1:
            body = (
                f'{{"device_id":"{dev}","sensor_type":"temperature","site":"bench",'
                f'"ts":{now + i},"value":{20 + i % 13 * 0.5},"seq":{i // 1000}}}'
            )
            out.append((f"sensors/bench/temperature/{dev}", body.encode()))
        else:
            items = ",".join(
                f'{{"device_id":"b{run}-{(i * batch + j) % 1000:04d}","sensor_type":"temperature",'
                f'"ts":{now + i},"value":{20 + j % 13 * 0.5},"seq":{i}}}'
                for j in range(batch)
            )
            out.append(("sensors/bench", f"[{items}]".encode()))
    return out


def preload(mqtt_settings: MqttSettings, messages: list[tuple[str, bytes]]) -> float:
    """Publish QoS 1 as fast as the broker acknowledges; returns seconds taken."""
    done = threading.Event()
    acked = [0]

    def on_publish(*_a: Any) -> None:
        acked[0] += 1
        if acked[0] == len(messages):
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    authenticate(client, mqtt_settings)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.connect(mqtt_settings.host, mqtt_settings.port)
    client.loop_start()
    start = time.perf_counter()
    for i, (topic, payload) in enumerate(messages):
        # paho rescans its whole outgoing queue on every PUBACK, so keep it short.
        while i - acked[0] > 2000:
            time.sleep(0.001)
        client.publish(topic, payload, qos=1)
    if not done.wait(600):
        raise SystemExit(f"broker acknowledged only {acked[0]} of {len(messages)}")
    elapsed = time.perf_counter() - start
    client.disconnect()
    client.loop_stop()
    return elapsed


def session_subscribe(mqtt_settings: MqttSettings, client_id: str, topic: str) -> None:
    """Create a persistent session with a subscription, then go offline."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    authenticate(client, mqtt_settings)
    subscribed = threading.Event()
    client.on_subscribe = lambda *_a: subscribed.set()
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    client.connect(mqtt_settings.host, mqtt_settings.port, clean_start=True, properties=props)
    client.loop_start()
    client.subscribe(topic, qos=1)
    subscribed.wait(10)
    client.disconnect()
    client.loop_stop()


def drain_bare_paho(mqtt_settings: MqttSettings, client_id: str, expected: int) -> dict[str, float]:
    """Baseline: receive the backlog with auto-ack and do nothing else."""
    received = [0]
    done = threading.Event()

    def on_message(*_a: Any) -> None:
        received[0] += 1
        if received[0] >= expected:
            done.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    authenticate(client, mqtt_settings)
    client.on_message = on_message
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 0
    props.ReceiveMaximum = 10_000
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    client.connect(mqtt_settings.host, mqtt_settings.port, clean_start=False, properties=props)
    client.loop_start()
    done.wait(600)
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    client.disconnect()
    client.loop_stop()
    return {"messages": received[0], "seconds": elapsed, "cpu_seconds": cpu}


def drain_ingester(settings: Settings, expected: int, readings: int) -> dict[str, float]:
    ingester = Ingester(settings, load_catalogue(settings.core.sensors_file))
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    ingester.start()
    while ingester.stats.acked < expected and time.perf_counter() - t0 < 600:
        time.sleep(0.05)
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    ingester.stop()
    stats = ingester.stats
    return {
        "messages": stats.acked,
        "readings": sum(stats.produced.values()),
        "expected_readings": readings,
        "dead_lettered": sum(stats.dead_lettered.values()),
        "seconds": elapsed,
        "cpu_seconds": cpu,
    }


def run_case(
    base: Settings,
    messages: int,
    batch: int,
    around_drain: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> dict[str, Any]:
    """One payload shape; ``around_drain`` wraps the ingester's drain alone (e.g. a profiler)."""
    run = uuid.uuid4().hex[:6]
    settings = base.model_copy(
        update={
            "kafka": base.kafka.model_copy(update={"topic_prefix": f"bench{run}."}),
            "ingest": base.ingest.model_copy(
                update={"instance": f"bench{run}", "metrics_port": 0, "log_interval_s": 0}
            ),
        }
    )
    topics = KafkaTopics(settings.kafka.topic_prefix)
    names = topics.all_topics(load_catalogue().names)
    ensure_topics(settings.kafka, names)
    data = payloads(messages, batch, run)
    try:
        # Baseline: bare paho on the same backlog.
        bare_id = f"bench-bare-{run}"
        session_subscribe(
            settings.mqtt, bare_id, "sensors/bench/#" if batch == 1 else "sensors/bench"
        )
        preload(settings.mqtt, data)
        bare = drain_bare_paho(settings.mqtt, bare_id, messages)
        # The ingester: create its session, go offline, preload, drain.
        client_id = ingest_client_id(settings.mqtt, settings.ingest)
        session_subscribe(settings.mqtt, client_id, "sensors/#")
        publish_s = preload(settings.mqtt, data)
        with around_drain():
            result = drain_ingester(settings, messages, messages * batch)
        session_subscribe(settings.mqtt, client_id, "none")  # leave a tidy broker
    finally:
        delete_topics(settings.kafka, names)
    case = {
        "readings_per_message": batch,
        "messages": messages,
        "preload_publish_msgs_per_s": messages / publish_s,
        "ingester": result,
        "ingester_msgs_per_s": result["messages"] / result["seconds"],
        "ingester_readings_per_s": result["readings"] / result["seconds"],
        "ingester_cpu_s_per_10k_msgs": result["cpu_seconds"] / messages * 10_000,
        "bare_paho": bare,
        "bare_paho_msgs_per_s": bare["messages"] / bare["seconds"],
    }
    case["ratio_to_bare_paho"] = (
        result["messages"] / result["seconds"] / (bare["messages"] / bare["seconds"])
    )
    return case


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000, help="single-reading messages")
    parser.add_argument("--batch", type=int, default=100, help="readings per gateway batch")
    parser.add_argument("--batch-messages", type=int, default=5_000)
    args = parser.parse_args()
    settings = load_settings()
    cases = [
        run_case(settings, args.messages, 1),
        run_case(settings, args.batch_messages, args.batch),
    ]
    report = {
        "command": "python -m bench.ingest_drain "
        f"--messages {args.messages} --batch {args.batch} --batch-messages {args.batch_messages}",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cases": cases,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ingest_drain.json").write_text(json.dumps(report, indent=2))
    print(
        f"{'payload':>22} {'msgs/s':>10} {'readings/s':>11} {'CPU s/10k msgs':>15} "
        f"{'bare paho msgs/s':>17} {'ratio':>6}"
    )
    for c in cases:
        label = (
            "1 reading/msg"
            if c["readings_per_message"] == 1
            else (f"{c['readings_per_message']} readings/msg")
        )
        rates = f"{c['ingester_msgs_per_s']:>10,.0f} {c['ingester_readings_per_s']:>11,.0f}"
        print(
            f"{label:>22} {rates} {c['ingester_cpu_s_per_10k_msgs']:>15.2f} "
            f"{c['bare_paho_msgs_per_s']:>17,.0f} {c['ratio_to_bare_paho']:>6.2f}"
        )


if __name__ == "__main__":
    main()
