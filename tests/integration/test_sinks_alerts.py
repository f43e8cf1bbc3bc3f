"""Alert emitters against real servers: Kafka, Mosquitto (mosquitto_sub), an HTTP receiver."""

from __future__ import annotations

import json
import logging
import queue
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import paho.mqtt.client as mqtt
import pytest
from bytewax.dataflow import Dataflow
from bytewax.operators import input as bw_input
from bytewax.operators import output as bw_output
from bytewax.testing import TestingSource, run_main
from confluent_kafka import Consumer, Producer
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import SecretStr

from iotpipe.connectors.kafka import delete_topics, ensure_topics
from iotpipe.connectors.mqtt import authenticate
from iotpipe.model import Alert, alert_id
from iotpipe.settings import Settings
from iotpipe.topics import KafkaTopics
from ops.stack import Stack
from sinks.alert_policy import ALERT_SIGNATURE, SIGNATURE_HEADER, sign, verify
from sinks.alert_targets import alert_json
from sinks.alerts import AlertEmitter, AlertSink
from sinks.dead_letter import DeadLetterWriter
from tests.integration.pipeline import mosquitto_cli_env, read_topics

SECRET = "webhook-s3cret"
T0 = 1_764_400_000_000


@dataclass
class Receiver:
    """A webhook endpoint on 127.0.0.1 that checks every signature."""

    url: str = ""
    bodies: list[dict[str, object]] = field(default_factory=list)
    bad_signatures: int = 0
    fail_next: int = 0  # answer 503 to this many requests first
    requests: int = 0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                rec.requests += 1
                if rec.fail_next:
                    rec.fail_next -= 1
                    self.send_response(503)
                    self.send_header("Retry-After", "0")
                    self.end_headers()
                    return
                if not verify(body, SECRET, self.headers.get(SIGNATURE_HEADER, "")):
                    rec.bad_signatures += 1
                rec.bodies.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


@pytest.fixture
def settings_(stack: Stack, unique: str, receiver: Receiver) -> Iterator[Settings]:
    base = stack.settings
    kafka = base.kafka.model_copy(update={"topic_prefix": f"t{unique}.", "partitions": 2})
    topics = KafkaTopics(kafka.topic_prefix)
    ensure_topics(kafka, [topics.alerts, topics.dlq_sink])
    alert = base.alert.model_copy(
        update={
            "webhook_url": receiver.url,
            "webhook_secret": SecretStr(SECRET),
            "webhook_timeout_s": 2.0,
            "rate_limit_burst": 5,
        }
    )
    yield base.model_copy(update={"kafka": kafka, "alert": alert})
    delete_topics(kafka, [topics.alerts, topics.dlq_sink])


def _alert(n: int, *, site: str, severity: str = "critical", state: str = "raised") -> Alert:
    device = f"dev-{n % 3}"
    return Alert(
        alert_id=alert_id(device, "gas", "threshold", T0 + n),
        device_id=device,
        sensor_type="gas",
        site=site,
        detector="threshold",
        severity=severity,  # type: ignore[arg-type]
        ts=T0 + n,
        value=12.5,
        score=2.5,
        threshold=10.0,
        message=f"gas {n} above 10",
        state=state,  # type: ignore[arg-type]
    )


class MqttWatcher:
    """A real ``mosquitto_sub`` on ``alerts/<site>/#`` (QoS 1), line-buffered."""

    def __init__(self, stack: Stack, site: str) -> None:
        m = stack.settings.mqtt
        self.proc = subprocess.Popen(
            [
                *("stdbuf", "-oL", "mosquitto_sub", "-h", m.host, "-p", str(m.port)),
                *("-q", "1", "-v", "-t", f"alerts/{site}/#", "-W", "30", "-d"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=mosquitto_cli_env(m),
        )
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # -d prints the SUBACK once subscribed
            if "SUBACK" in line:
                break

    def messages(self, count: int) -> list[tuple[str, dict[str, object]]]:
        out: list[tuple[str, dict[str, object]]] = []
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("alerts/"):
                topic, _, payload = line.rstrip("\n").partition(" ")
                out.append((topic, json.loads(payload)))
                if len(out) == count:
                    break
        self.proc.terminate()
        self.proc.wait(10)
        return out


def _kafka_alerts(s: Settings, until: int, timeout: float = 15) -> list[tuple[bytes | None, Alert]]:
    import msgspec

    topic = KafkaTopics(s.kafka.topic_prefix).alerts
    got = read_topics(s.kafka, [topic], until=until, timeout=timeout)[topic]
    return [(k, msgspec.json.decode(v, type=Alert)) for k, v in got]


def test_alert_goes_everywhere_once(
    settings_: Settings,
    stack: Stack,
    receiver: Receiver,
    unique: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    site = f"site-{unique}"
    watcher = MqttWatcher(stack, site)
    critical, info = _alert(1, site=site), _alert(2, site=site, severity="info")
    emitter = AlertEmitter(settings_.alert, settings_.kafka, settings_.mqtt)
    emitter.start()
    with caplog.at_level(logging.INFO, logger="iotpipe.alerts"):
        emitter.emit([critical, critical, info])
        emitter.emit([critical])  # the same alert again, in a later batch
    emitter.close()

    got = _kafka_alerts(settings_, until=3)
    assert sorted(a.alert_id for _k, a in got) == sorted([critical.alert_id, info.alert_id])
    assert {k for k, _a in got} == {critical.device_id.encode(), info.device_id.encode()}
    (topic, payload), *rest = watcher.messages(1)
    assert topic == f"alerts/{site}/gas/{critical.device_id}"
    assert payload["alert_id"] == critical.alert_id
    assert rest == []
    assert [b["alert_id"] for b in receiver.bodies] == [critical.alert_id]
    assert receiver.bad_signatures == 0
    logged = [r for r in caplog.records if r.name == "iotpipe.alerts"]
    assert len(logged) == 1
    assert logged[0].levelno == logging.ERROR
    assert (
        json.loads(logged[0].getMessage().removeprefix("alert "))["alert_id"] == critical.alert_id
    )
    assert emitter.gate.stats.duplicates == 2
    assert (emitter.stats.to_kafka, emitter.stats.to_mqtt, emitter.stats.to_webhook) == (2, 1, 1)


def test_raised_escalated_cleared_all_flow(
    settings_: Settings, stack: Stack, receiver: Receiver, unique: str
) -> None:
    site = f"site-{unique}"
    watcher = MqttWatcher(stack, site)
    raised = _alert(5, site=site, severity="warning")
    events = [
        raised,
        Alert(**{**_asdict(raised), "severity": "critical", "state": "escalated"}),
        Alert(**{**_asdict(raised), "severity": "critical", "state": "cleared"}),
    ]
    emitter = AlertEmitter(settings_.alert, settings_.kafka, settings_.mqtt)
    emitter.start()
    emitter.emit(events)
    emitter.close()
    states = [p["state"] for _t, p in watcher.messages(3)]
    assert states == ["raised", "escalated", "cleared"]
    assert [a.state for _k, a in _kafka_alerts(settings_, until=3)] == states
    # warning does not go to the webhook by default; the critical follow-ups do
    assert [b["state"] for b in receiver.bodies] == ["escalated", "cleared"]


def test_replay_after_restart_does_not_notify_twice(
    settings_: Settings, receiver: Receiver, unique: str
) -> None:
    s = settings_.model_copy(
        update={"alert": settings_.alert.model_copy(update={"mqtt_enabled": False})}
    )
    batch = [_alert(n, site=f"site-{unique}") for n in range(3)]
    first = AlertEmitter(s.alert, s.kafka, s.mqtt)
    first.start()
    first.emit(batch)
    first.close()
    second = AlertEmitter(s.alert, s.kafka, s.mqtt)  # a restarted process: empty memory
    second.start()  # ...seeded from the alerts topic
    second.emit(batch)
    second.close()
    assert len(receiver.bodies) == 3
    assert second.gate.stats.duplicates == 3
    assert len(_kafka_alerts(s, until=6, timeout=5)) == 3


def test_a_forged_record_on_the_alerts_topic_cannot_suppress_an_alert(
    settings_: Settings, receiver: Receiver, unique: str
) -> None:
    """Anyone who can write to Kafka used to pre-seed de-duplication with a future id."""
    s = settings_.model_copy(
        update={"alert": settings_.alert.model_copy(update={"mqtt_enabled": False})}
    )
    assert s.alert.signing_key is not None, "the stack generates the alert key"
    real = _alert(7, site=f"site-{unique}")
    topic = KafkaTopics(s.kafka.topic_prefix).alerts
    forger = Producer(s.kafka.client_config())
    body = alert_json(real)  # alert ids are predictable; the forger knows the next one
    forger.produce(topic, body, real.device_id.encode())
    forger.produce(
        topic, body, real.device_id.encode(), headers=[(ALERT_SIGNATURE, sign(body, "guess"))]
    )
    assert forger.flush(10) == 0
    emitter = AlertEmitter(s.alert, s.kafka, s.mqtt)
    emitter.start()
    emitter.emit([real])
    emitter.close()
    assert [b["alert_id"] for b in receiver.bodies] == [real.alert_id]
    assert emitter.stats.forged_seen == 2
    assert emitter.gate.stats.duplicates == 0


def test_kafka_and_mqtt_alerts_carry_a_signature_a_consumer_can_verify(
    settings_: Settings, stack: Stack, unique: str
) -> None:
    site = f"site-{unique}"
    key = settings_.alert.signing_key
    assert key is not None
    got: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    subscribed = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    authenticate(sub, stack.settings.mqtt)
    sub.on_message = lambda _c, _u, msg: got.put(msg)
    sub.on_subscribe = lambda *_a: subscribed.set()
    sub.on_connect = lambda c, *_a: c.subscribe(f"alerts/{site}/#", qos=1)
    sub.connect(stack.settings.mqtt.host, stack.settings.mqtt.port)
    sub.loop_start()
    try:
        assert subscribed.wait(10)
        alert = _alert(8, site=site)
        emitter = AlertEmitter(settings_.alert, settings_.kafka, settings_.mqtt)
        emitter.start()
        emitter.emit([alert])
        emitter.close()
        msg = got.get(timeout=10)
        props = dict(msg.properties.UserProperty)  # type: ignore[union-attr]
        assert verify(msg.payload, key.get_secret_value(), props[ALERT_SIGNATURE])
        assert not verify(msg.payload + b" ", key.get_secret_value(), props[ALERT_SIGNATURE])
    finally:
        sub.disconnect()
        sub.loop_stop()
    consumer_topic = KafkaTopics(settings_.kafka.topic_prefix).alerts
    records = read_records(settings_, consumer_topic, 1)
    (value, headers) = records[0]
    assert verify(value, key.get_secret_value(), headers[ALERT_SIGNATURE].decode())


def read_records(s: Settings, topic: str, until: int) -> list[tuple[bytes, dict[str, bytes]]]:
    """Values with their headers (``read_topics`` keeps only key and value)."""
    consumer = Consumer(
        {
            **s.kafka.client_config(),
            "group.id": f"sig-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    out: list[tuple[bytes, dict[str, bytes]]] = []
    deadline = time.monotonic() + 20
    try:
        while len(out) < until and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            out.append((msg.value() or b"", dict(msg.headers() or [])))
    finally:
        consumer.close()
    return out


def test_webhook_retries_then_dead_letters(
    settings_: Settings, receiver: Receiver, unique: str
) -> None:
    s = settings_.model_copy(
        update={"alert": settings_.alert.model_copy(update={"mqtt_enabled": False})}
    )
    dlq = DeadLetterWriter(s.kafka, timeout_s=30)
    emitter = AlertEmitter(s.alert, s.kafka, s.mqtt, dlq)
    emitter.start()
    receiver.fail_next = 2  # two 503s, then success
    emitter.emit([_alert(1, site=f"site-{unique}")])
    assert len(receiver.bodies) == 1
    assert receiver.requests == 3
    receiver.fail_next = 100  # keeps failing: gives up after webhook_max_attempts
    lost = _alert(2, site=f"site-{unique}")
    emitter.emit([lost])
    emitter.close()
    dlq.close()
    assert emitter.stats.webhook_failed == 1
    assert dlq.sent == 1
    letters = read_topics(s.kafka, [dlq.topic], until=1, timeout=15)[dlq.topic]
    record = json.loads(letters[0][1])
    assert record["sink"] == "webhook"
    assert record["reason"] == "retries_exhausted"
    assert json.loads(record["payload"])["alert_id"] == lost.alert_id
    # the record of the alert itself is still on the alerts topic
    assert len(_kafka_alerts(s, until=2)) == 2


def test_storm_is_rate_limited_but_recorded(
    settings_: Settings, receiver: Receiver, unique: str
) -> None:
    s = settings_.model_copy(
        update={"alert": settings_.alert.model_copy(update={"mqtt_enabled": False})}
    )
    storm = [_alert(3 * n, site=f"site-{unique}") for n in range(40)]  # all dev-0
    emitter = AlertEmitter(s.alert, s.kafka, s.mqtt)
    emitter.start()
    emitter.emit(storm)
    emitter.close()
    assert len(receiver.bodies) == 5  # the burst
    assert emitter.gate.stats.suppressed == 35
    assert emitter.gate.stats.suppressed_by_device == {"dev-0": 35}
    assert len(_kafka_alerts(s, until=40)) == 40


def test_bytewax_alert_sink(settings_: Settings, receiver: Receiver, unique: str) -> None:
    s = settings_.model_copy(
        update={"alert": settings_.alert.model_copy(update={"rate_limit_per_minute": 0})}
    )
    alerts = [_alert(n, site=f"site-{unique}") for n in range(12)]
    items: list[object] = [alerts[:4], *alerts[4:], alerts[0]]  # lists, singles, a duplicate
    flow = Dataflow("alert-sink")
    bw_output("alerts", bw_input("in", flow, TestingSource(items, batch_size=3)), AlertSink(s))
    run_main(flow)
    assert sorted(b["alert_id"] for b in receiver.bodies) == sorted(a.alert_id for a in alerts)
    assert len(_kafka_alerts(s, until=13, timeout=5)) == 12


def _asdict(alert: Alert) -> dict[str, object]:
    import msgspec

    return msgspec.structs.asdict(alert)


def test_an_alert_mqtt_cannot_carry_is_dead_lettered_for_mqtt_only(
    settings_: Settings, stack: Stack, unique: str
) -> None:
    """A device id that cannot be a topic level (written around the ingester, say):
    MQTT dead-letters that alert, the others still go out, and Kafka records all."""
    site = f"s{unique}"
    watcher = MqttWatcher(stack, site)
    bad = msgspec_replace(_alert(1, site=site, severity="warning"), device_id="dev/1\n")
    good = _alert(2, site=site, severity="warning")
    dead = DeadLetterWriter(settings_.kafka)
    emitter = AlertEmitter(settings_.alert, settings_.kafka, settings_.mqtt, dead)
    emitter.start()
    emitter.emit([bad, good])
    emitter.close()
    dead.close()
    assert [a["device_id"] for _t, a in watcher.messages(1)] == [good.device_id]
    assert emitter.stats.undelivered["mqtt"] == 1
    assert sorted(a.device_id for _k, a in _kafka_alerts(settings_, 2)) == sorted(
        [bad.device_id, good.device_id]
    )
    topic = KafkaTopics(settings_.kafka.topic_prefix).dlq_sink
    letters = [json.loads(v) for _k, v in read_topics(settings_.kafka, [topic], 1)[topic]]
    assert [(d["sink"], json.loads(d["payload"])["device_id"]) for d in letters] == [
        ("alerts-mqtt", bad.device_id)
    ]


def msgspec_replace(alert: Alert, **changes: object) -> Alert:
    import msgspec

    return msgspec.structs.replace(alert, **changes)
