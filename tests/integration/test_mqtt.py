"""Real Mosquitto: QoS 1 round trips, persistent sessions, standard clients."""

from __future__ import annotations

import queue
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from iotpipe.connectors.mqtt import authenticate
from iotpipe.topics import mqtt_reading_topic
from ops.stack import Stack
from tests.integration.pipeline import mosquitto_cli_env


class Subscriber:
    """A paho v5 client that collects messages into a queue."""

    def __init__(self, stack: Stack, client_id: str, clean_start: bool = True) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        authenticate(self.client, stack.settings.mqtt)
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        mq = stack.settings.mqtt
        self.client.connect(mq.host, mq.port, clean_start=clean_start, properties=props)
        self.client.loop_start()

    def subscribe(self, topic: str, qos: int = 1) -> None:
        self.subscribed.clear()
        self.client.subscribe(topic, qos=qos)
        assert self.subscribed.wait(5), "no SUBACK"

    def take(self, n: int, timeout: float = 10.0) -> list[mqtt.MQTTMessage]:
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            try:
                out.append(self.messages.get(timeout=0.2))
            except queue.Empty:
                continue
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_qos1(stack: Stack, topic: str, payloads: list[bytes]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    mq = stack.settings.mqtt
    authenticate(client, mq)
    client.connect(mq.host, mq.port)
    client.loop_start()
    try:
        for p in payloads:
            client.publish(topic, p, qos=1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


def test_qos1_publish_and_receive_in_order(stack: Stack, unique: str) -> None:
    topic = mqtt_reading_topic("test-site", "temperature", f"dev-{unique}")
    sub = Subscriber(stack, f"sub-{unique}")
    try:
        sub.subscribe(topic)
        payloads = [f'{{"seq": {i}}}'.encode() for i in range(200)]
        publish_qos1(stack, topic, payloads)
        got = sub.take(200)
        assert [m.payload for m in got] == payloads
        assert {m.qos for m in got} == {1}
    finally:
        sub.close()


def test_persistent_session_survives_a_broker_restart(stack: Stack, unique: str) -> None:
    """QoS 1 messages queued for an offline client are kept across a restart."""
    mosquitto = stack.services["mosquitto"]
    if mosquitto.status().state == "external":
        pytest.skip("mosquitto is not ours to restart")
    topic = f"sensors/test-site/gas/dev-{unique}"
    client_id = f"persist-{unique}"
    sub = Subscriber(stack, client_id, clean_start=False)
    sub.subscribe(topic)
    sub.close()  # offline now; the broker queues for the session
    payloads = [f"m{i}".encode() for i in range(50)]
    publish_qos1(stack, topic, payloads)
    time.sleep(0.5)
    mosquitto.down()
    assert mosquitto.status().state == "down"
    mosquitto.up()
    sub = Subscriber(stack, client_id, clean_start=False)
    try:
        got = sub.take(50)
        assert [m.payload for m in got] == payloads
    finally:
        sub.close()


def test_standard_clients_interoperate(stack: Stack, unique: str) -> None:
    """mosquitto_pub/mosquitto_sub (Debian) and paho see each other's messages."""
    mq = stack.settings.mqtt
    topic = f"sensors/test-site/co2/dev-{unique}"
    proc = subprocess.Popen(
        [
            "mosquitto_sub",
            "-h",
            mq.host,
            "-p",
            str(mq.port),
            "-t",
            topic,
            "-q",
            "1",
            "-C",
            "1",
            "-W",
            "10",
            "-V",
            "mqttv5",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=mosquitto_cli_env(mq),
    )
    time.sleep(0.5)  # let mosquitto_sub subscribe
    publish_qos1(stack, topic, [b'{"value": 412.5}'])
    out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0 and out.strip() == '{"value": 412.5}'

    sub = Subscriber(stack, f"paho-{unique}")
    try:
        sub.subscribe(topic)
        subprocess.run(
            [
                "mosquitto_pub",
                "-h",
                mq.host,
                "-p",
                str(mq.port),
                "-t",
                topic,
                "-q",
                "1",
                "-m",
                '{"value": 1.5}',
            ],
            check=True,
            timeout=10,
            env=mosquitto_cli_env(mq),
        )
        (msg,) = sub.take(1)
        assert msg.payload == b'{"value": 1.5}'
    finally:
        sub.close()
