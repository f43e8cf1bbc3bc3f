"""Helpers shared by integration tests that drive pipeline stages end to end."""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import paho.mqtt.client as mqtt
from confluent_kafka import Consumer, TopicPartition
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from iotpipe.connectors.mqtt import authenticate, session_client_id
from iotpipe.credentials import (
    Role,
    credentials_path,
    load_local_credentials,
    write_private,
)
from iotpipe.settings import KafkaSettings, MqttSettings, Settings, role_account


def free_port() -> int:
    """A loopback port nothing listens on now (for a child's metrics endpoint)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_pair() -> int:
    """A port whose successor is free too (a flow pair's metrics, Kafka's controller)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two consecutive free ports")


class Publisher:
    """A QoS 1 device-side publisher that survives broker restarts (paho resends)."""

    def __init__(self, settings: MqttSettings, client_id: str, qos: int = 1) -> None:
        self.qos = qos
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=False,
        )
        authenticate(self.client, settings)
        self.client.max_inflight_messages_set(200)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(min_delay=0.2, max_delay=2)
        self.connected = threading.Event()
        self.client.on_connect = lambda *_a: self.connected.set()
        self.client.on_publish = self._on_publish
        self.published = 0
        self.acked = 0
        self.client.connect(settings.host, settings.port, keepalive=30)
        self.client.loop_start()
        assert self.connected.wait(10), "publisher could not connect"

    def _on_publish(self, *_args: object) -> None:
        self.acked += 1  # paho's network thread only

    def publish(self, topic: str, payload: bytes | str) -> None:
        """Queue a message; while disconnected paho keeps it and sends it on reconnect."""
        info = self.client.publish(topic, payload, qos=self.qos)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise AssertionError(f"publish refused: {mqtt.error_string(info.rc)}")
        self.published += 1

    def wait_all(self, timeout: float = 60) -> None:
        """Until the broker has acknowledged every message published so far."""
        deadline = time.monotonic() + timeout
        while self.acked < self.published:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {self.acked} of {self.published} PUBACKs in time")
            time.sleep(0.01)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def reading(device: str, seq: int, sensor_type: str = "temperature", **extra: object) -> bytes:
    obj: dict[str, object] = {
        "device_id": device,
        "sensor_type": sensor_type,
        "ts": int(time.time() * 1000),
        "value": 20.0 + seq % 7,
        "seq": seq,
    }
    obj.update(extra)
    return json.dumps(obj).encode()


def read_topics(
    kafka: KafkaSettings, topics: Iterable[str], until: int, timeout: float = 60.0
) -> dict[str, list[tuple[bytes | None, bytes]]]:
    """Read topics from the beginning until ``until`` messages (or timeout)."""
    consumer = Consumer(
        {
            **kafka.client_config(),
            "group.id": f"reader-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    topics = list(topics)
    consumer.subscribe(topics)
    out: dict[str, list[tuple[bytes | None, bytes]]] = defaultdict(list)
    total = 0
    deadline = time.monotonic() + timeout
    try:
        while total < until and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=5000, timeout=0.5):
                if msg.error():
                    continue
                out[msg.topic()].append((msg.key(), msg.value()))
                total += 1
    finally:
        consumer.close()
    return out


def topic_sizes(kafka: KafkaSettings, topics: Iterable[str]) -> dict[str, int]:
    """Messages in each topic (sum of high watermarks), without consuming."""
    consumer = Consumer({**kafka.client_config(), "group.id": "sizes"})
    sizes = {}
    try:
        for topic in topics:
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            total = 0
            for p in meta.partitions:
                _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                total += high
            sizes[topic] = total
    finally:
        consumer.close()
    return sizes


def forget_session(settings: MqttSettings, client_id: str) -> None:
    """Remove a persistent session from the broker (clean start, expiry 0)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    authenticate(client, settings)
    done = threading.Event()
    client.on_connect = lambda *_a: done.set()
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    client.connect(settings.host, settings.port, clean_start=True, properties=props)
    client.loop_start()
    done.wait(5)
    client.disconnect()
    client.loop_stop()


def isolated_settings(base: Settings, unique: str, **ingest: object) -> Settings:
    """Settings isolated per test: own topic prefix and short-lived sessions."""
    return base.model_copy(
        update={
            "kafka": base.kafka.model_copy(update={"topic_prefix": f"t{unique}."}),
            "ingest": base.ingest.model_copy(
                update={
                    "instance": f"t{unique}",  # own persistent session, never a leftover one
                    "metrics_port": 0,
                    "log_interval_s": 0,
                    "session_expiry_s": 600,
                    **ingest,
                }
            ),
        }
    )


def as_role(settings: Settings, role: Role) -> Settings:
    """The same settings with the local stack's account of ``role`` (what a child uses)."""
    local = load_local_credentials(settings.core.state_dir)
    assert local is not None, "the stack has not generated its credentials"
    return settings.model_copy(update={"mqtt": role_account(settings.mqtt, local, role)})


def share_credentials(source: Settings, state_dir: Path) -> Path:
    """A test's own state directory, with the stack's generated credentials in it.

    Every command reads its account from ``<state_dir>/credentials.json``, so a
    child given another state directory needs the same file there.
    """
    local = credentials_path(source.core.state_dir)
    write_private(credentials_path(state_dir), local.read_text())
    return state_dir


def mosquitto_cli_env(settings: MqttSettings) -> dict[str, str]:
    """Environment for mosquitto_pub/_sub with the settings' account, kept out of ``ps``.

    Debian's clients read default options from ``$XDG_CONFIG_HOME/mosquitto_pub``
    (and ``mosquitto_sub``), so the password never goes on a command line.
    """
    assert settings.username and settings.password, "no MQTT account in the settings"
    home = Path(tempfile.gettempdir()) / f"iotpipe-mqtt-cli-{os.getuid()}-{settings.username}"
    options = f"-u {settings.username}\n-P {settings.password.get_secret_value()}\n"
    for tool in ("mosquitto_pub", "mosquitto_sub"):
        write_private(home / tool, options)
    return {**os.environ, "XDG_CONFIG_HOME": str(home)}


def forget_ingest_session(settings: Settings, instance: str) -> None:
    """Forget an ingester instance's session, run in-process or as an ``iotpipe ingest`` child.

    The client id is keyed by the account's password: the tests' own account
    in-process, the ingest account in a child process.
    """
    name = f"ingest-{instance}"
    for s in (settings, as_role(settings, "ingest")):
        forget_session(settings.mqtt, session_client_id(s.mqtt, name))
