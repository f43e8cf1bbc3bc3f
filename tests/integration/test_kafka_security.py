"""Kafka with SASL/SCRAM over TLS and ACLs, as the stack runs it with
``IOTPIPE_KAFKA_SECURITY_PROTOCOL=SASL_SSL``.

A second broker (the stack's Kafka service, own state directory and ports,
the stack's credentials) refuses plaintext, wrong passwords and clients that
do not trust its CA; the ACLs let only the ingester write ``readings.*``;
and the pipeline's own commands (ingester, flow with its Kafka and InfluxDB
sinks, status, the dead-letter tool, the dashboard's health) run against it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from influxdb_client import InfluxDBClient
from pydantic import SecretStr

from iotpipe.catalogue import load_catalogue
from iotpipe.connectors.kafka import ensure_topics
from iotpipe.credentials import Role, load_local_credentials, local_ca_file
from iotpipe.settings import KafkaSettings, Settings, with_local_credentials
from iotpipe.topics import KafkaTopics
from ops.health import HealthCollector
from ops.stack import Stack
from ops.stack.kafka import Kafka
from ops.stack.tls import LocalCA
from tests.integration.pipeline import (
    Publisher,
    forget_ingest_session,
    free_port,
    free_port_pair,
    reading,
    share_credentials,
    topic_sizes,
)

CATALOGUE = load_catalogue()


@dataclass
class Secure:
    broker: Kafka
    base: Settings  # credentials unset: each role fills in its own, as a command does

    def as_role(self, role: Role) -> Settings:
        return with_local_credentials(self.base, role)

    def env(self) -> dict[str, str]:
        """What selects this broker for a child command."""
        return {
            **os.environ,
            "IOTPIPE_STATE_DIR": str(self.base.core.state_dir),
            "IOTPIPE_KAFKA_BOOTSTRAP_SERVERS": self.base.kafka.bootstrap_servers,
            "IOTPIPE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        }


@pytest.fixture(scope="module")
def secure(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secure]:
    state = share_credentials(stack.settings, tmp_path_factory.mktemp("secure-kafka"))
    LocalCA(local_ca_file(state).parent).ensure()  # as the stack does before any client
    (state / "kafka").mkdir()
    (state / "kafka" / "libs").symlink_to(stack.services["kafka"].home / "libs")  # jars once
    port = free_port_pair()
    kafka = KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}", security_protocol="SASL_SSL")
    base = stack.settings.model_copy(
        update={
            "core": stack.settings.core.model_copy(update={"state_dir": state}),
            "kafka": kafka,
            "mqtt": stack.settings.mqtt.model_copy(update={"username": None, "password": None}),
            "influx": stack.settings.influx.model_copy(update={"token": SecretStr("")}),
        }
    )
    admin = with_local_credentials(base, "admin")
    local = load_local_credentials(state)
    assert local is not None
    broker = Kafka(state, "127.0.0.1", port, admin.kafka, local)
    broker.up()
    ensure_topics(admin.kafka, KafkaTopics("").all_topics(CATALOGUE.names))
    yield Secure(broker, base)
    broker.down()


def subscribed(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            return "iotpipe_ingest_subscribed 1.0" in resp.read().decode()
    except OSError:
        return False


def metadata(kafka: KafkaSettings) -> object:
    conf = {**kafka.client_config(), "socket.timeout.ms": 3000}
    return AdminClient(conf).list_topics(timeout=5)


def produce(kafka: KafkaSettings, topic: str) -> str | None:
    """Deliver one record; the error name, or None."""
    errors: list[object] = []
    producer = Producer({**kafka.client_config(), "message.timeout.ms": 8000})
    producer.produce(topic, b"probe", on_delivery=lambda err, _m: errors.append(err))
    producer.flush(15)
    assert errors, "no delivery report"
    return None if errors[0] is None else errors[0].name()  # type: ignore[attr-defined]


def test_plaintext_wrong_password_and_an_untrusted_ca_are_refused(secure: Secure) -> None:
    admin = secure.as_role("admin").kafka
    assert metadata(admin)  # the real account gets in
    for bad in (
        admin.model_copy(update={"security_protocol": "PLAINTEXT"}),
        admin.model_copy(update={"sasl_password": SecretStr("guess")}),
        admin.model_copy(update={"security_protocol": "SASL_PLAINTEXT"}),
        admin.model_copy(update={"ssl_ca_location": local_ca_file(Path("/nonexistent-state"))}),
    ):
        with pytest.raises(KafkaException):
            metadata(bad)


def test_only_the_ingester_writes_readings(secure: Secure) -> None:
    topics = KafkaTopics("")
    readings = topics.readings("temperature")
    assert produce(secure.as_role("ingest").kafka, readings) is None
    denied = "TOPIC_AUTHORIZATION_FAILED"
    assert produce(secure.as_role("alerts").kafka, readings) == denied
    assert produce(secure.as_role("fleet").kafka, readings) == denied
    assert produce(secure.as_role("ingest").kafka, topics.alerts) == denied
    assert produce(secure.as_role("alerts").kafka, topics.alerts) is None
    # The flow's account reads readings; the ingester's reads nothing.
    for role, allowed in (("alerts", True), ("ingest", False)):
        conf = {
            **secure.as_role(role).kafka.client_config(),
            "group.id": f"iotpipe-flow-probe-{role}",
            "enable.auto.commit": False,
        }
        consumer = Consumer(conf)
        try:
            consumer.assign([TopicPartition(readings, p, 0) for p in range(4)])
            got = consumer.consume(num_messages=1, timeout=10)
            errors = [m.error() for m in got if m.error()]
            if allowed:
                assert got and not errors, errors
            else:
                assert not [m for m in got if not m.error()]
        finally:
            consumer.close()


def the_admin_tools_see_it(secure: Secure, topics: KafkaTopics) -> None:
    """`iotpipe status`, `iotpipe dlq inspect` and the dashboard's health, as the admin."""

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "ops", *args],
            env=secure.env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    totals = {t["topic"]: t["messages"] for t in json.loads(cli("status", "--json"))["topics"]}
    assert totals[topics.readings("temperature")] >= 40
    cli("dlq", "inspect", "--json")
    # The dashboard's pipeline health reads the same broker as the admin account.
    with HealthCollector(secure.as_role("admin")) as collector:
        health = collector.collect()
    temperature = health.topic(topics.readings("temperature"))
    assert temperature is not None and temperature.messages >= 40


def test_the_pipelines_commands_run_against_it(
    secure: Secure, stack: Stack, influx: InfluxDBClient, bucket: str, unique: str
) -> None:
    """MQTT -> ingester -> Kafka (SASL_SSL) -> flow -> InfluxDB and signed alerts; status.

    Each stage is the real command, as a user starts it, with its own account.
    """
    state = Path(secure.base.core.state_dir)
    metrics = free_port()
    ingest_env = {
        **secure.env(),
        "IOTPIPE_INGEST_INSTANCE": f"k{unique}",
        "IOTPIPE_INGEST_METRICS_PORT": str(metrics),
        "IOTPIPE_INGEST_LOG_INTERVAL_S": "0",
        "IOTPIPE_MQTT_SITES": f"k{unique}",
    }
    flow_env = {
        **secure.env(),
        "IOTPIPE_INFLUX_BUCKET": bucket,
        "IOTPIPE_FLOW_PRIORITY": "all",
        "IOTPIPE_FLOW_METRICS_PORT": "0",
        "IOTPIPE_FLOW_WINDOWS": "10s",
        "IOTPIPE_FLOW_ALLOWED_LATENESS_S": "1",
        "IOTPIPE_FLOW_IDLE_CLOSE_S": "2",
        "IOTPIPE_FLOW_EPOCH_INTERVAL_S": "0.5",
    }
    logs = {name: state / f"{name}-{unique}.log" for name in ("ingest", "flow")}
    procs = {}
    for name, argv, env in (
        ("ingest", ["ingest"], ingest_env),
        ("flow", ["flow", "run"], flow_env),
    ):
        with logs[name].open("wb") as out:
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", "ops", *argv], env=env, stdout=out, stderr=out
            )
    flow = procs["flow"]

    def tails() -> str:
        return "\n".join(f"--- {n}:\n{p.read_text()[-3000:]}" for n, p in logs.items())

    pub = Publisher(stack.settings.mqtt, f"kpub-{unique}")
    device = f"kdev-{unique}"
    try:
        deadline = time.monotonic() + 60
        while not subscribed(metrics):
            assert time.monotonic() < deadline, f"the ingester never subscribed:\n{tails()}"
            assert procs["ingest"].poll() is None, tails()
            time.sleep(0.3)
        now = int(time.time() * 1000)
        for seq in range(40):  # 20 s of normal readings, then far beyond critical
            value = 21.0 if seq < 30 else 140.0
            pub.publish(
                f"sensors/k{unique}/temperature/{device}",
                reading(device, seq, ts=now - 20_000 + seq * 500, value=value),
            )
        pub.wait_all()
        topics = KafkaTopics("")
        admin = secure.as_role("admin").kafka
        deadline = time.monotonic() + 90
        stored = 0
        while time.monotonic() < deadline and flow.poll() is None:
            alerts = topic_sizes(admin, [topics.alerts])[topics.alerts]
            q = (
                f'from(bucket: "{bucket}") |> range(start: 0)'
                f' |> filter(fn: (r) => r.device_id == "{device}")'
            )
            stored = sum(len(t.records) for t in influx.query_api().query(q))
            if alerts and stored:
                break
            time.sleep(1)
        assert flow.poll() is None, tails()
        assert stored, f"nothing reached InfluxDB:\n{tails()}"
        assert topic_sizes(admin, [topics.alerts])[topics.alerts], tails()
        the_admin_tools_see_it(secure, topics)
    finally:
        pub.close()
        for proc in procs.values():
            proc.terminate()
            proc.wait(30)
        forget_ingest_session(secure.as_role("admin"), f"k{unique}")


def test_no_kafka_secret_in_its_logs_or_on_ps(secure: Secure) -> None:
    local = load_local_credentials(secure.base.core.state_dir)
    assert local is not None
    secrets = [*local.kafka.values(), local.kafka_controller]
    home = secure.broker.home
    logs = [*home.glob("logs/*"), *(secure.base.core.state_dir / "run").glob("*")]
    assert logs
    for path in logs:
        text = path.read_text(errors="replace")
        assert not any(s in text for s in secrets), path
    ps = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True, check=True)
    ps_text = ps.stdout
    assert "kafka.Kafka" in ps_text and not any(s in ps_text for s in secrets)
    assert not (home / "format.args").exists()  # the argument file is gone after use
    assert (home / "server.properties").stat().st_mode & 0o077 == 0
