"""Mosquitto with the stack's authentication on, as an attacker on the same network meets it.

Anonymous clients, wrong passwords, devices reaching beyond their own topic,
stage accounts beyond their stage, and an impostor after the ingester's
persistent session: each is refused by a real broker (the stack's Mosquitto
service with ``auth=True``, on its own port and state directory), and
readings sent during an attempted session takeover still all reach Kafka.
"""

from __future__ import annotations

import json
import queue
import ssl
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import SecretStr

from ingest.mqtt import ingest_client_id
from iotpipe.catalogue import load_catalogue
from iotpipe.connectors.kafka import delete_topics, ensure_topics
from iotpipe.connectors.mqtt import authenticate
from iotpipe.credentials import credentials_path, local_ca_file
from iotpipe.settings import MqttSettings, Settings
from iotpipe.topics import KafkaTopics
from ops.stack import Stack
from ops.stack.mosquitto import Mosquitto
from ops.stack.tls import issue_device_cert
from tests.integration.pipeline import (
    Publisher,
    as_role,
    forget_ingest_session,
    free_port,
    isolated_settings,
    read_topics,
    reading,
    topic_sizes,
)

CATALOGUE = load_catalogue()


class Client:
    """A v5 paho client that records what the broker answered."""

    def __init__(self, mq: MqttSettings, client_id: str = "") -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=5)
        authenticate(self.client, mq)
        self.connack: queue.Queue[Any] = queue.Queue()
        self.suback: queue.Queue[list[Any]] = queue.Queue()
        self.puback: queue.Queue[Any] = queue.Queue()
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.client.on_connect = lambda _c, _u, _f, rc, _p: self.connack.put(rc)
        self.client.on_subscribe = lambda _c, _u, _m, rcs, _p: self.suback.put(list(rcs))
        self.client.on_publish = lambda _c, _u, _m, rc, _p: self.puback.put(rc)
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.client.connect(mq.host, mq.port, keepalive=10)
        self.client.loop_start()

    def connected(self) -> bool:
        """Whether the CONNACK accepted us (raises if none came)."""
        return not self.connack.get(timeout=5).is_failure

    def subscribe(self, topic: str) -> Any:
        self.client.subscribe(topic, qos=1)
        (code,) = self.suback.get(timeout=5)
        return code

    def publish(self, topic: str, payload: bytes) -> Any:
        self.client.publish(topic, payload, qos=1)
        return self.puback.get(timeout=5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def hung_up(mq: MqttSettings) -> bool:
    """The broker ends the connection before any CONNACK (no TLS, no client certificate).

    Depending on when the TLS alert lands, that shows as a failed handshake or
    as a connection that closes with no answer.
    """
    try:
        client = Client(mq)
    except OSError:  # ssl.SSLError, a reset connection
        return True
    try:
        client.connack.get(timeout=3)
    except queue.Empty:
        return True
    finally:
        client.close()
    return False


def account(mq: MqttSettings, username: str, password: str) -> MqttSettings:
    return mq.model_copy(update={"username": username, "password": SecretStr(password)})


def anonymous(mq: MqttSettings) -> MqttSettings:
    return mq.model_copy(update={"username": None, "password": None})


def over_tls(mq: MqttSettings, broker: Mosquitto, port: int) -> MqttSettings:
    """``mq`` on one of the broker's TLS listeners, pinning the stack's CA."""
    ca = local_ca_file(broker.state_dir)
    return mq.model_copy(update={"url": f"mqtts://127.0.0.1:{port}", "tls_ca_file": ca})


@dataclass
class Secure:
    broker: Mosquitto
    settings: Settings  # the stack's settings, MQTT pointed at the secure broker


@pytest.fixture(scope="module")
def secure(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    state = tmp_path_factory.mktemp("secure-mqtt")
    port = free_port()
    broker = Mosquitto(
        state,
        "127.0.0.1",
        port,
        stack.credentials,
        auth=True,
        tls_port=free_port(),
        cert_port=free_port(),
    )
    broker.up()
    mq = stack.settings.mqtt.model_copy(update={"url": f"mqtt://127.0.0.1:{port}"})
    yield Secure(broker, stack.settings.model_copy(update={"mqtt": mq}))
    broker.down()


@pytest.fixture
def device(secure: Secure, unique: str) -> Iterator[MqttSettings]:
    """A device account made as `iotpipe devices add` makes one, removed afterwards."""
    device_id = f"dev-{unique}"
    password = secure.broker.devices.add(device_id)
    assert secure.broker.reload_auth()
    time.sleep(0.3)  # SIGHUP is asynchronous
    yield account(secure.settings.mqtt, device_id, password)
    secure.broker.devices.remove(device_id)
    secure.broker.reload_auth()


@pytest.fixture
def watcher(secure: Secure, unique: str) -> Iterator[Client]:
    """The admin account watching everything this test's site and alerts could carry."""
    client = Client(secure.settings.mqtt, f"watch-{unique}")
    assert client.connected()
    assert not client.subscribe(f"sensors/{unique}/#").is_failure
    assert not client.subscribe(f"alerts/{unique}/#").is_failure
    yield client
    client.close()


def reads_nothing(client: Client, subscription: str, sender: Client, topic: str) -> bool:
    """Mosquitto grants the SUBACK but delivers nothing the ACL does not let it read."""
    client.subscribe(subscription)
    assert not sender.publish(topic, b"probe").is_failure
    return nothing_arrives(client) == []


def nothing_arrives(client: Client, within: float = 1.0) -> list[str]:
    time.sleep(within)
    got = []
    while not client.messages.empty():
        got.append(client.messages.get().topic)
    return got


def test_anonymous_and_wrong_password_are_refused(secure: Secure) -> None:
    mq = secure.settings.mqtt
    for settings in (anonymous(mq), account(mq, mq.username or "", "not-the-password")):
        client = Client(settings)
        try:
            assert not client.connected(), settings.username
        finally:
            client.close()


def test_tls_listener_takes_passwords_under_the_stacks_ca(
    secure: Secure, watcher: Client, unique: str
) -> None:
    broker = secure.broker
    tls = over_tls(secure.settings.mqtt, broker, broker.tls_port)
    client = Client(tls, f"tls-{unique}")
    try:
        assert client.connected()
        assert not client.publish(f"sensors/{unique}/t/d", b"over tls").is_failure
        assert watcher.messages.get(timeout=5).payload == b"over tls"
    finally:
        client.close()
    refused = Client(anonymous(tls))
    try:
        assert not refused.connected()
    finally:
        refused.close()
    # Plain MQTT on the TLS port gets no CONNACK; a client that trusts only the
    # system's CAs refuses the broker's certificate.
    plain = secure.settings.mqtt.model_copy(update={"url": tls.url.replace("mqtts", "mqtt")})
    assert hung_up(plain)
    with pytest.raises(ssl.SSLCertVerificationError):
        Client(tls.model_copy(update={"tls_ca_file": None}))


def test_a_device_logs_in_with_its_certificate_until_removed(
    secure: Secure, watcher: Client, unique: str, tmp_path: Path
) -> None:
    broker = secure.broker
    me = f"cert-{unique}"
    broker.devices.add(me)
    assert broker.reload_auth()
    time.sleep(0.3)  # SIGHUP is asynchronous
    key, crt = issue_device_cert(broker.state_dir, me, tmp_path)
    by_cert = anonymous(over_tls(secure.settings.mqtt, broker, broker.cert_port))
    by_cert = by_cert.model_copy(update={"tls_cert_file": crt, "tls_key_file": key})
    own = f"sensors/{unique}/temperature/{me}"
    client = Client(by_cert, f"{me}-c")
    try:
        assert client.connected()  # no password: the certificate's CN is the account
        assert not client.publish(own, b"signed in").is_failure
        assert watcher.messages.get(timeout=5).payload == b"signed in"
        assert client.publish(f"sensors/{unique}/temperature/other", b"x").is_failure
    finally:
        client.close()
    # Without a certificate the listener hangs up, even with the device's password.
    assert hung_up(over_tls(secure.settings.mqtt, broker, broker.cert_port))
    # Removed: the certificate still completes TLS, but the account may do nothing.
    broker.devices.remove(me)
    assert broker.reload_auth()
    time.sleep(0.3)
    client = Client(by_cert, f"{me}-c2")
    try:
        if client.connected():
            assert client.publish(own, b"after removal").is_failure
        assert nothing_arrives(watcher) == []
    finally:
        client.close()


def test_a_device_publishes_only_its_own_topic(
    device: MqttSettings, watcher: Client, unique: str
) -> None:
    me = device.username
    client = Client(device, f"{me}-c")
    try:
        assert client.connected()
        own = f"sensors/{unique}/temperature/{me}"
        assert not client.publish(own, b"ok").is_failure
        msg = watcher.messages.get(timeout=5)
        assert (msg.topic, msg.payload) == (own, b"ok")
        # Another device's topic, a gateway topic, and the alerts tree: refused.
        for topic in (
            f"sensors/{unique}/temperature/someone-else",
            f"sensors/{unique}/temperature",
            f"alerts/{unique}/temperature/{me}",
        ):
            assert client.publish(topic, b"forged").is_failure, topic
        assert nothing_arrives(watcher) == []
        # And it reads nothing, not even its own topic.
        assert reads_nothing(client, "sensors/#", watcher, own)
        assert reads_nothing(client, "#", watcher, f"alerts/{unique}/temperature/{me}")
    finally:
        client.close()


def test_stage_accounts_get_only_what_their_stage_needs(
    secure: Secure, watcher: Client, unique: str
) -> None:
    base = secure.settings
    ingest = Client(as_role(base, "ingest").mqtt, f"ingest-probe-{unique}")
    alerts = Client(as_role(base, "alerts").mqtt, f"alerts-probe-{unique}")
    fleet = Client(as_role(base, "fleet").mqtt, f"fleet-probe-{unique}")
    try:
        assert ingest.connected() and alerts.connected() and fleet.connected()
        assert not ingest.subscribe("sensors/#").is_failure
        assert ingest.publish(f"alerts/{unique}/t/d", b"x").is_failure
        assert ingest.publish(f"sensors/{unique}/t/d", b"x").is_failure
        assert alerts.publish(f"sensors/{unique}/t/d", b"x").is_failure
        assert not alerts.publish(f"alerts/{unique}/t/d", b"alert").is_failure
        assert fleet.publish(f"alerts/{unique}/t/d", b"x").is_failure
        assert not fleet.publish(f"sensors/{unique}/t/d", b"reading").is_failure
        got = sorted(watcher.messages.get(timeout=5).payload for _ in range(2))
        assert got == [b"alert", b"reading"]
        assert nothing_arrives(watcher) == []
        # The ingester reads readings; the alert emitter and the fleet read nothing.
        assert not reads_nothing(ingest, "sensors/#", watcher, f"sensors/{unique}/t/d")
        assert reads_nothing(alerts, "#", watcher, f"sensors/{unique}/t/d")
        assert reads_nothing(fleet, "#", watcher, f"alerts/{unique}/t/d")
    finally:
        for c in (ingest, alerts, fleet):
            c.close()


def test_credentials_are_generated_private_and_not_repository_defaults(stack: Stack) -> None:
    path = credentials_path(stack.settings.core.state_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    passwd = stack.mosquitto.home / "passwd"
    assert passwd.exists(), "rendered even with broker authentication off"
    assert stat.S_IMODE(passwd.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert stored["influx_token"] not in passwd.read_text()  # hashes only
    assert len(set(stored["mqtt"].values())) == len(stored["mqtt"])  # one per account
    # The token the repository used to ship opens nothing.
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        f"{stack.settings.influx.url}/api/v2/buckets",
        headers={"Authorization": "Token iotpipe-dev-token"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=5)
    assert refused.value.code == 401


def test_an_impostor_cannot_take_the_ingesters_session(secure: Secure, unique: str) -> None:
    """Today's attack: connect with the ingester's client id and swallow its readings."""
    from ingest.ingester import Ingester

    s: Settings = isolated_settings(as_role(secure.settings, "ingest"), unique)
    s = s.model_copy(update={"mqtt": s.mqtt.model_copy(update={"sites": f"imp{unique}"})})
    names = KafkaTopics(s.kafka.topic_prefix).all_topics(CATALOGUE.names)
    ensure_topics(s.kafka, names)
    ingester = Ingester(s, CATALOGUE)
    ingester.start()
    device_id = f"imp-{unique}"
    pub = Publisher(as_role(secure.settings, "fleet").mqtt, f"pub-{unique}")
    refused: list[str] = []
    try:
        assert ingester.session.connected.wait(10)
        # The id is keyed by the ingest account's password: not the guessable one.
        secret_id = ingest_client_id(s.mqtt, s.ingest)
        assert secret_id != f"{s.mqtt.client_id_prefix}-ingest-{s.ingest.instance}"
        stop = threading.Event()

        def attack() -> None:
            while not stop.is_set():  # keep trying for the whole stream
                for mq in (anonymous(s.mqtt), account(s.mqtt, "iotpipe-ingest", "guess")):
                    impostor = Client(mq, secret_id)
                    if not impostor.connected():
                        refused.append(mq.username or "anonymous")
                    impostor.close()
                time.sleep(0.1)

        attacker = threading.Thread(target=attack)
        attacker.start()
        for seq in range(20):
            pub.publish(f"sensors/imp{unique}/temperature/{device_id}", reading(device_id, seq))
            time.sleep(0.1)
        stop.set()
        attacker.join(30)
        pub.wait_all()
        topic = KafkaTopics(s.kafka.topic_prefix).readings("temperature")
        deadline = time.monotonic() + 30
        while topic_sizes(s.kafka, [topic])[topic] < 20 and time.monotonic() < deadline:
            time.sleep(0.2)
        got = read_topics(s.kafka, [topic], 20, timeout=20)[topic]
        seqs = sorted({json.loads(v)["seq"] for _k, v in got})
        assert seqs == list(range(20)), f"readings lost during the takeover attempt: {seqs}"
        assert set(refused) == {"anonymous", "iotpipe-ingest"}
    finally:
        pub.close()
        ingester.stop(timeout=10)
        forget_ingest_session(secure.settings, s.ingest.instance)
        delete_topics(s.kafka, names)
