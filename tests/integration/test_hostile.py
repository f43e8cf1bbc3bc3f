"""A corpus of hostile payloads and topics through real Mosquitto, ingester, Kafka, flow, InfluxDB.

One ingester (in this process) and one flow (``iotpipe flow run``, 1 s windows,
quick idle close) serve the whole module, on their own topics and bucket. Each
case (tests/integration/hostile_corpus.py) is published, then a canary
reading; the case passes when the canary is on the readings topic (the
ingester is alive) and the case's dead letter is on ``dlq.ingest`` with the
expected reason, rejections and payload, exactly once, and any reading it
means to be forwarded is there exactly once. The last test checks the whole
run: nothing but canaries and intended readings on the readings topics and in
InfluxDB, and every one of them aggregated there.

The ingester subscribes to this run's sites only (``IOTPIPE_MQTT_SITES``), so
other traffic on the shared broker cannot reach its topics. Cases whose topic
is outside any site (``sensors``, ``sensors//...``) go to a second ingester on
the default subscription (``sensors/#``), started for them at the end; its
dead letters are told apart from foreign ones by the case marker.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from influxdb_client import BucketRetentionRules, InfluxDBClient

from ingest.ingester import Ingester
from iotpipe.catalogue import load_catalogue
from iotpipe.connectors.kafka import delete_topics, ensure_topics
from iotpipe.settings import KafkaSettings, Settings
from iotpipe.topics import KafkaTopics
from ops.stack import Stack
from tests.integration.hostile_corpus import (
    CASES,
    GATEWAY_T,
    LONG_SITE,
    MARK_RE,
    RUN,
    SITE,
    Case,
    Good,
)
from tests.integration.pipeline import (
    Publisher,
    forget_ingest_session,
    forget_session,
    isolated_settings,
    reading,
    share_credentials,
)

CATALOGUE = load_catalogue()
CASE_TIMEOUT_S = 20.0
CANARY_VALUE = 21.0  # reading(canary, 1)


class Tap:
    """Every record of some Kafka topics from their beginning, read as it arrives."""

    def __init__(self, kafka: KafkaSettings, topics: KafkaTopics, readings: list[str]) -> None:
        self.dlq = topics.dlq_ingest
        self.readings_topics = set(readings)
        self.consumer = Consumer(
            {
                **kafka.client_config(),
                "group.id": f"hostile-tap-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
            }
        )
        names = [*readings, self.dlq, topics.late, topics.dlq_sink]
        meta = self.consumer.list_topics(timeout=10).topics
        self.consumer.assign(
            [TopicPartition(t, p, OFFSET_BEGINNING) for t in names for p in meta[t].partitions]
        )
        self.values: dict[str, list[bytes]] = defaultdict(list)
        self.letters: list[tuple[set[str], dict]] = []  # (case names marked in it, letter)

    def pump(self, timeout: float = 0.1) -> None:
        for msg in self.consumer.consume(num_messages=10_000, timeout=timeout):
            if msg.error():
                continue
            value = msg.value() or b""
            self.values[msg.topic()].append(value)
            if msg.topic() == self.dlq:
                letter = json.loads(value)
                self.letters.append((case_marks(letter), letter))

    def until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        return pump_until([self], predicate, timeout)

    def readings_of(self, device_id: str) -> list[dict]:
        needle = json.dumps(device_id).encode()
        return [
            r
            for topic in self.readings_topics
            for v in self.values[topic]
            if needle in v and (r := json.loads(v))["device_id"] == device_id
        ]

    def all_readings(self) -> list[dict]:
        return [json.loads(v) for t in self.readings_topics for v in self.values[t]]

    def letters_for(self, name: str) -> list[dict]:
        return [letter for names, letter in self.letters if name in names]

    def close(self) -> None:
        self.consumer.close()


def pump_until(taps: list[Tap], predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        for tap in taps:
            tap.pump(0.05)
    return True


def case_marks(letter: dict) -> set[str]:
    """The cases whose marker is in a dead letter's MQTT topic or (kept) payload."""
    text = letter.get("payload", "")
    if letter.get("payload_encoding") == "base64":
        try:
            text = base64.b64decode(text).decode("utf-8", "replace")
        except ValueError:
            text = ""
    return set(MARK_RE.findall(letter.get("mqtt_topic", "") + "\n" + text))


class Rig:
    """The module's servers and processes, and what every case sent.

    Everything started registers its own clean-up on ``cleanup`` (run in reverse).
    """

    def __init__(
        self, stack: Stack, work: Path, influx: InfluxDBClient, bucket: str, cleanup: ExitStack
    ) -> None:
        s = isolated_settings(stack.settings, RUN)
        self.settings = s.model_copy(
            update={
                "core": s.core.model_copy(
                    update={"state_dir": share_credentials(s, work / "state")}
                ),
                "mqtt": s.mqtt.model_copy(update={"sites": f"{SITE},{LONG_SITE}"}),
                "influx": s.influx.model_copy(update={"bucket": bucket}),
            }
        )
        self.influx = influx
        self.flow_log = work / "flow.log"
        self.cleanup = cleanup
        self.topics = KafkaTopics(self.settings.kafka.topic_prefix)
        self.ran: list[Case] = []
        self._own_topics(self.settings)
        self.flow = self._start_flow()
        self.ingester = self._start_ingester(self.settings)
        readings = [self.topics.readings(t) for t in sorted(CATALOGUE.names)]
        self.tap = Tap(self.settings.kafka, self.topics, readings)
        cleanup.callback(self.tap.close)
        client_id = f"pub-hostile-{RUN}"
        cleanup.callback(forget_session, self.settings.mqtt, client_id)
        self.publisher = Publisher(self.settings.mqtt, client_id)
        cleanup.callback(self.publisher.close)
        cleanup.callback(self._clear_retained)
        self._wide: tuple[Ingester, Tap] | None = None

    def _own_topics(self, s: Settings) -> None:
        names = KafkaTopics(s.kafka.topic_prefix).all_topics(CATALOGUE.names)
        ensure_topics(s.kafka, names)
        self.cleanup.callback(delete_topics, s.kafka, names)

    def _start_ingester(self, s: Settings) -> Ingester:
        self.cleanup.callback(forget_ingest_session, s, s.ingest.instance)
        ingester = Ingester(s, CATALOGUE)
        ingester.start()
        self.cleanup.callback(ingester.stop, timeout=5)
        return ingester

    def _start_flow(self) -> subprocess.Popen[bytes]:
        s = self.settings
        env = {
            **os.environ,
            "IOTPIPE_KAFKA_TOPIC_PREFIX": s.kafka.topic_prefix,
            "IOTPIPE_INFLUX_BUCKET": s.influx.bucket,
            "IOTPIPE_FLOW_PRIORITY": "all",
            "IOTPIPE_FLOW_WINDOWS": "1s",
            "IOTPIPE_FLOW_ALLOWED_LATENESS_S": "2",
            "IOTPIPE_FLOW_IDLE_CLOSE_S": "2",
            "IOTPIPE_FLOW_EPOCH_INTERVAL_S": "0.5",
            "IOTPIPE_FLOW_METRICS_PORT": "0",
        }
        argv = [sys.executable, "-m", "ops", "flow", "run"]
        with self.flow_log.open("wb") as out:
            flow = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.cleanup.callback(stop_process, flow)
        return flow

    def wide(self) -> tuple[Ingester, Tap]:
        """An ingester on the default subscription (sensors/#), for topics outside any site."""
        if self._wide is None:
            base = isolated_settings(self.settings, f"{RUN}w")
            s = base.model_copy(update={"mqtt": base.mqtt.model_copy(update={"sites": ""})})
            self._own_topics(s)
            ingester = self._start_ingester(s)
            topics = KafkaTopics(s.kafka.topic_prefix)
            tap = Tap(s.kafka, topics, [topics.readings("temperature")])
            self.cleanup.callback(tap.close)
            self._wide = (ingester, tap)
        return self._wide

    @property
    def wide_tap(self) -> Tap | None:
        return self._wide[1] if self._wide else None

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        info = self.publisher.client.publish(topic, payload, qos=qos, retain=retain)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, mqtt.error_string(info.rc)
        info.wait_for_publish(15)
        assert info.is_published(), f"broker never took {topic!r}"

    def send(self, case: Case) -> bytes:
        """Publish the case (and its follow-ups), then its canary; the bytes dead-lettered."""
        self.ran.append(case)
        body = case.body(int(time.time() * 1000))
        self.publish(case.topic, body, case.qos, case.retain)
        for topic, payload, retain in case.then:
            self.publish(topic, payload, 1, retain)
            body = payload
        canary = reading(case.canary, 1, site=SITE)
        self.publish(f"{GATEWAY_T}/{case.canary}", canary)
        return body

    def _clear_retained(self) -> None:
        """Never leave a retained message on the shared broker, whatever a case did."""
        for case in self.ran:
            if case.retain:
                self.publish(case.topic, b"", 1, True)

    def flow_output(self) -> str:
        return self.flow_log.read_text(errors="replace")[-3000:]


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@pytest.fixture(scope="module")
def rig(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    # A module-wide bucket, made as conftest's (function-scoped) `bucket` fixture makes one.
    s = stack.settings.influx
    with (
        InfluxDBClient(
            url=s.url, token=s.token.get_secret_value(), org=s.org, timeout=s.timeout_ms
        ) as influx,
        ExitStack() as cleanup,
    ):
        api = influx.buckets_api()
        bucket = api.create_bucket(
            bucket_name=f"test-hostile-{RUN}",
            org=s.org,
            retention_rules=BucketRetentionRules(type="expire", every_seconds=0),
        )
        cleanup.callback(api.delete_bucket, bucket)
        yield Rig(stack, tmp_path_factory.mktemp("hostile"), influx, bucket.name, cleanup)


def dead_lettered_bytes(letter: dict) -> bytes:
    if letter.get("payload_encoding") == "base64":
        return base64.b64decode(letter["payload"])
    return letter["payload"].encode("utf-8", "surrogatepass")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_case(rig: Rig, case: Case) -> None:
    taps = [rig.tap, rig.wide()[1]] if case.wide else [rig.tap]
    where = taps[-1]  # the ingester that gets the case's topic
    want = 1 if case.reason else 0
    body = rig.send(case)

    def arrived() -> bool:
        return (
            all(tap.readings_of(case.canary) for tap in taps)
            and len(where.letters_for(case.name)) >= want
            and all(rig.tap.readings_of(g.device_id) for g in case.good)
        )

    pump_until(taps, arrived, CASE_TIMEOUT_S)
    for tap in taps:  # (1) alive: the canary behind it came through
        assert len(tap.readings_of(case.canary)) == 1, f"canary after {case.name} not forwarded"
    # (2) dead-lettered once, with the reason, every refused item, the payload
    letters = where.letters_for(case.name)
    assert [d["reason"] for d in letters] == ([case.reason] if case.reason else []), letters
    if case.wide and where is not rig.tap:
        assert rig.tap.letters_for(case.name) == []
    if letters:
        (letter,) = letters
        assert letter["mqtt_topic"] == (case.then[-1][0] if case.then else case.topic)
        got = [(r.get("index"), r["reason"]) for r in letter["rejections"]]
        assert got == case.rejections()
        if case.truncated:
            assert letter["payload_truncated"] is True
            assert letter["payload_size"] == len(body)
            assert letter["payload_sha256"] == hashlib.sha256(body).hexdigest()
            assert len(letter["payload"]) <= 4096
        else:
            assert not letter.get("payload_truncated", False)
            assert dead_lettered_bytes(letter) == body
    # (3) forwarded: exactly the readings it means to, once each
    for g in case.good:
        got_good = rig.tap.readings_of(g.device_id)
        assert len(got_good) == 1, (g.device_id, got_good)
        (r,) = got_good
        assert (r["sensor_type"], r["site"], r["value"]) == (g.sensor_type, g.site, g.value)
    assert rig.ingester.session.alive()
    if case.wide:
        assert rig.wide()[0].session.alive()


def expected_readings(rig: Rig) -> list[Good]:
    canaries = [Good(c.canary, "temperature", SITE, CANARY_VALUE) for c in rig.ran]
    return canaries + [g for c in rig.ran for g in c.good]


def stored_aggregates(rig: Rig) -> dict[str, list[dict]]:
    flux = f'''
      from(bucket: "{rig.settings.influx.bucket}") |> range(start: 0)
        |> filter(fn: (r) => r._measurement == "sensor_agg")
        |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
    '''
    out: dict[str, list[dict]] = defaultdict(list)
    for table in rig.influx.query_api().query(flux):
        for rec in table.records:
            out[rec.values["device_id"]].append(rec.values)
    return out


def site_counts(rig: Rig) -> Counter[tuple[str, str]]:
    flux = f'''
      from(bucket: "{rig.settings.influx.bucket}") |> range(start: 0)
        |> filter(fn: (r) => r._measurement == "site_agg" and r._field == "count")
    '''
    out: Counter[tuple[str, str]] = Counter()
    for table in rig.influx.query_api().query(flux):
        for rec in table.records:
            out[(rec.values["site"], rec.values["sensor_type"])] += int(rec.get_value())
    return out


def measurements(rig: Rig) -> set[str]:
    flux = f'''
      import "influxdata/influxdb/schema"
      schema.measurements(bucket: "{rig.settings.influx.bucket}")
    '''
    return {rec.get_value() for table in rig.influx.query_api().query(flux) for rec in table}


def test_only_canaries_and_intended_readings_reach_influxdb(rig: Rig) -> None:
    assert rig.ran, "run the cases first"
    tap = rig.tap
    tap.until(lambda: False, 1.0)  # anything still in flight
    # Kafka: each case's dead letters exactly as expected, nothing unattributed
    counts = Counter(name for names, _letter in tap.letters for name in names)
    if rig.wide_tap is not None:
        rig.wide_tap.until(lambda: False, 0.5)
        counts.update(name for names, _l in rig.wide_tap.letters for name in names)
    want_counts = {c.name: 1 for c in rig.ran if c.reason}
    assert dict(counts) == want_counts
    assert [d for names, d in tap.letters if len(names) != 1] == []
    want = expected_readings(rig)
    forwarded = Counter(r["device_id"] for r in tap.all_readings())
    assert forwarded == Counter(g.device_id for g in want)
    # InfluxDB: every one aggregated (1 s windows close ~4 s after input stops)
    deadline = time.monotonic() + 60
    stored = stored_aggregates(rig)
    while not {g.device_id for g in want} <= set(stored) and time.monotonic() < deadline:
        assert rig.flow.poll() is None, f"flow exited:\n{rig.flow_output()}"
        time.sleep(1)
        stored = stored_aggregates(rig)
    missing = sorted({g.device_id for g in want} - set(stored))
    assert missing == [], f"{len(missing)} never aggregated; flow log:\n{rig.flow_output()}"
    assert sorted(set(stored) - {g.device_id for g in want}) == []
    for g in want:
        (row,) = stored[g.device_id]
        assert (row["sensor_type"], row["site"], row["window"]) == (g.sensor_type, g.site, "1s")
        assert (row["count"], row["mean"]) == (1, g.value)
    # per-site roll-ups count exactly the same readings (they may trail the device windows)
    per_site = Counter((g.site, g.sensor_type) for g in want)
    deadline = time.monotonic() + 20
    while site_counts(rig) != per_site and time.monotonic() < deadline:
        time.sleep(1)
    assert site_counts(rig) == per_site
    assert measurements(rig) <= {"sensor_agg", "site_agg"}  # no anomaly from any of it
    assert tap.values[rig.topics.late] == []
    assert tap.values[rig.topics.dlq_sink] == []
    assert rig.flow.poll() is None, f"flow exited:\n{rig.flow_output()}"
    assert rig.ingester.session.alive()
