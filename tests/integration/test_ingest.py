"""The MQTT -> Kafka ingester against real Mosquitto and Kafka."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ingest.dlq import DlqFilter, inspect, make_fixup, read_dead_letters, replay
from ingest.ingester import Ingester
from ingest.runner import run_ingester
from iotpipe.catalogue import load_catalogue
from iotpipe.connectors.kafka import delete_topics, ensure_topics
from iotpipe.settings import Settings, with_local_credentials
from iotpipe.topics import KafkaTopics
from ops.stack import Stack
from tests.integration.pipeline import (
    Publisher,
    forget_ingest_session,
    free_port,
    isolated_settings,
    read_topics,
    reading,
    topic_sizes,
)

CATALOGUE = load_catalogue()


@pytest.fixture
def pipeline(stack: Stack, unique: str) -> Iterator[Callable[..., Settings]]:
    """Factory for isolated settings whose topics and MQTT sessions are cleaned up."""
    made: list[Settings] = []

    def make(**ingest: object) -> Settings:
        s = isolated_settings(stack.settings, unique, **ingest)
        ensure_topics(s.kafka, KafkaTopics(s.kafka.topic_prefix).all_topics(CATALOGUE.names))
        made.append(s)
        return s

    yield make
    for s in made:
        for instance in (s.ingest.instance, f"{s.ingest.instance}b"):
            forget_ingest_session(s, instance)
    if made:
        s = made[0]
        delete_topics(s.kafka, KafkaTopics(s.kafka.topic_prefix).all_topics(CATALOGUE.names))


@contextmanager
def running(settings: Settings) -> Iterator[Ingester]:
    ingester = Ingester(settings, CATALOGUE)
    ingester.start()
    try:
        yield ingester
    finally:
        ingester.stop(timeout=30)


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def readings_by_device(
    settings: Settings, expected: int
) -> dict[str, dict[str, list[dict[str, object]]]]:
    """topic -> device -> readings in Kafka order."""
    topics = KafkaTopics(settings.kafka.topic_prefix)
    got = read_topics(settings.kafka, [topics.readings(t) for t in CATALOGUE.names], expected)
    out: dict[str, dict[str, list[dict[str, object]]]] = defaultdict(lambda: defaultdict(list))
    for topic, messages in got.items():
        for key, value in messages:
            obj = json.loads(value)
            assert key is not None and key.decode() == obj["device_id"]
            out[topic][obj["device_id"]].append(obj)
    return out


@pytest.mark.parametrize("transport", ["mqtt", "mqtts"])
def test_every_sensor_type_lands_in_its_topic_in_order(
    pipeline: Callable[..., Settings], unique: str, transport: str
) -> None:
    """Devices and the ingester on the plain listener, or both on the TLS one."""
    s = pipeline()
    if transport == "mqtts":  # the CA comes from the stack, as for any command
        url = f"mqtts://127.0.0.1:{s.mqtt.broker_tls_port}"
        mqtt = s.mqtt.model_copy(update={"url": url})
        s = with_local_credentials(s.model_copy(update={"mqtt": mqtt}), "admin")
        assert s.mqtt.tls_ca_file is not None
    pub = Publisher(s.mqtt, f"pub-{unique}")
    per_device = 30
    devices = {t: [f"{t}-{unique}-{i}" for i in range(3)] for t in sorted(CATALOGUE.names)}
    with running(s) as ingester:
        for seq in range(per_device):
            for sensor_type, devs in devices.items():
                for dev in devs:
                    pub.publish(
                        f"sensors/site-a/{sensor_type}/{dev}", reading(dev, seq, sensor_type)
                    )
        pub.wait_all()
        total = per_device * 3 * len(devices)
        wait_for(lambda: ingester.stats.acked == total, what="all messages acked")
    pub.close()
    got = readings_by_device(s, total)
    topics = KafkaTopics(s.kafka.topic_prefix)
    for sensor_type, devs in devices.items():
        by_dev = got[topics.readings(sensor_type)]
        assert set(by_dev) == set(devs)
        for dev in devs:
            assert [r["seq"] for r in by_dev[dev]] == list(range(per_device))
            assert all(r["site"] == "site-a" and r["ingest_ts"] >= r["ts"] for r in by_dev[dev])


def test_gateway_batch_splits_across_topics(pipeline: Callable[..., Settings], unique: str) -> None:
    s = pipeline()
    pub = Publisher(s.mqtt, f"pub-{unique}")
    batch = [
        json.loads(reading(f"gw-{unique}-{i}", i, t))
        for i, t in enumerate(["gas", "co2", "gas", "humidity"])
    ]
    with running(s) as ingester:
        pub.publish("sensors/site-b", json.dumps(batch))
        pub.wait_all()
        wait_for(lambda: ingester.stats.acked == 1, what="batch acked")
        assert ingester.stats.readings == 4
    pub.close()
    got = readings_by_device(s, 4)
    topics = KafkaTopics(s.kafka.topic_prefix)
    assert {t: sorted(d) for t, d in got.items()} == {
        topics.readings("gas"): [f"gw-{unique}-0", f"gw-{unique}-2"],
        topics.readings("co2"): [f"gw-{unique}-1"],
        topics.readings("humidity"): [f"gw-{unique}-3"],
    }


BAD_PAYLOADS: list[tuple[str, str, bytes]] = [
    ("malformed_json", "temperature", b'{"ts": 1, "value":'),
    ("wrong_type", "temperature", b'{"ts": 1764400000000, "value": "warm"}'),
    ("non_finite_value", "temperature", b'{"ts": 1764400000000, "value": NaN}'),
    ("non_finite_value", "temperature", b'{"ts": 1764400000000, "value": Infinity}'),
    ("payload_too_large", "temperature", b'{"pad": "' + b"x" * 300_000 + b'"}'),
    ("unknown_sensor_type", "radiation", b'{"ts": 1764400000000, "value": 1}'),
    ("bad_id", "temperature", b'{"ts": 1764400000000, "value": 1, "site": "a b"}'),
    ("ts_out_of_bounds", "temperature", b'{"ts": 99999999999999, "value": 1}'),
    ("topic_mismatch", "temperature", b'{"ts": 1764400000000, "value": 1, "sensor_type": "gas"}'),
    ("invalid_utf8", "temperature", b'{"ts": 1764400000000, "value": 1, "site": "\xff\xfe"}'),
    ("empty_payload", "temperature", b""),
]


def test_bad_payloads_are_dead_lettered_while_valid_traffic_flows(
    pipeline: Callable[..., Settings], unique: str
) -> None:
    s = pipeline()
    pub = Publisher(s.mqtt, f"pub-{unique}")
    dev = f"dev-{unique}"
    now = int(time.time() * 1000)
    with running(s) as ingester:
        for seq, (_reason, sensor_type, template) in enumerate(BAD_PAYLOADS):
            payload = template.replace(b"1764400000000", str(now).encode())
            pub.publish(f"sensors/site-c/{sensor_type}/{dev}", payload)
            pub.publish(f"sensors/site-c/temperature/{dev}", reading(dev, seq))
        pub.wait_all()
        total = 2 * len(BAD_PAYLOADS)
        wait_for(lambda: ingester.stats.acked == total, what="every message acked")
        expected_reasons = Counter(reason for reason, _t, _p in BAD_PAYLOADS)
        assert ingester.stats.dead_lettered == expected_reasons
    pub.close()
    topics = KafkaTopics(s.kafka.topic_prefix)
    got = read_topics(s.kafka, [topics.dlq_ingest, topics.readings("temperature")], total)
    dead = [json.loads(v) for _k, v in got[topics.dlq_ingest]]
    assert Counter(d["reason"] for d in dead) == expected_reasons
    for d in dead:
        assert d["mqtt_topic"].startswith("sensors/site-c/") and d["received_at"] >= now
        if d["reason"] == "invalid_utf8":
            assert d["payload_encoding"] == "base64"
    valid = [json.loads(v)["seq"] for _k, v in got[topics.readings("temperature")]]
    assert valid == list(range(len(BAD_PAYLOADS)))


def test_metrics_endpoint_counts(pipeline: Callable[..., Settings], unique: str) -> None:
    import threading

    s = pipeline(metrics_port=19108 + int(unique[:3], 16) % 500)
    stop = threading.Event()
    thread = threading.Thread(target=run_ingester, args=(s, stop))
    thread.start()
    try:
        url = f"http://127.0.0.1:{s.ingest.metrics_port}/metrics"

        def scraped() -> str:
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    return str(resp.read().decode())
            except OSError:
                return ""  # not serving yet

        # Readiness is a metric: 1 once the broker granted the subscription.
        wait_for(lambda: "iotpipe_ingest_subscribed 1.0" in scraped(), 30, "subscribed")
        pub = Publisher(s.mqtt, f"pub-{unique}")
        for seq in range(5):
            pub.publish(f"sensors/s/gas/dev-{unique}", reading(f"dev-{unique}", seq, "gas"))
        pub.publish(f"sensors/s/gas/dev-{unique}", b"{oops")
        pub.wait_all()
        wait_for(lambda: "iotpipe_ingest_acked_total 6.0" in scraped(), 30, "metrics")
        text = scraped()
        assert 'iotpipe_ingest_produced_total{sensor_type="gas"} 5.0' in text
        assert 'iotpipe_ingest_dead_lettered_total{reason="malformed_json"} 1.0' in text
        assert "iotpipe_ingest_kafka_delivery_seconds_count 6.0" in text
        pub.close()
    finally:
        stop.set()
        thread.join(60)


def publish_stream(
    pub: Publisher, devices: list[str], count: int, pause_every: int = 0, pause: float = 0.0
) -> None:
    for seq in range(count):
        for dev in devices:
            pub.publish(f"sensors/s/temperature/{dev}", reading(dev, seq))
        if pause_every and seq % pause_every == 0:
            time.sleep(pause)


def seq_counts(settings: Settings) -> dict[str, Counter[int]]:
    """How often each device's each seq is in the temperature readings topic."""
    topic = KafkaTopics(settings.kafka.topic_prefix).readings("temperature")
    size = topic_sizes(settings.kafka, [topic])[topic]
    seen: dict[str, Counter[int]] = defaultdict(Counter)
    for _k, v in read_topics(settings.kafka, [topic], size)[topic] if size else []:
        obj = json.loads(v)
        seen[obj["device_id"]][obj["seq"]] += 1
    return seen


def assert_every_seq_arrived(settings: Settings, devices: list[str], count: int) -> int:
    """Every (device, seq) is in Kafka at least once; returns the duplicate count."""
    seen = seq_counts(settings)
    for dev in devices:
        missing = set(range(count)) - set(seen[dev])
        assert not missing, f"{dev} lost {len(missing)} readings, e.g. {sorted(missing)[:5]}"
    return sum(n - 1 for c in seen.values() for n in c.values())


def ingester_process(settings: Settings, metrics_port: int = 0) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "IOTPIPE_KAFKA_TOPIC_PREFIX": settings.kafka.topic_prefix,
        "IOTPIPE_MQTT_SHARED_GROUP": settings.mqtt.shared_group,
        "IOTPIPE_INGEST_INSTANCE": settings.ingest.instance,
        "IOTPIPE_INGEST_METRICS_PORT": str(metrics_port),
        "IOTPIPE_INGEST_LOG_INTERVAL_S": "1",
        "IOTPIPE_INGEST_SESSION_EXPIRY_S": "600",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "ops", "ingest"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def wait_subscribed(proc: subprocess.Popen[bytes], metrics_port: int) -> None:
    """Readiness is a metric: wait for it rather than for a fixed time."""
    url = f"http://127.0.0.1:{metrics_port}/metrics"

    def ready() -> bool:
        assert proc.poll() is None, f"ingester exited {proc.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return "iotpipe_ingest_subscribed 1.0" in resp.read().decode()
        except OSError:
            return False

    wait_for(ready, 60, "ingester subscribed")


def distinct_seqs(settings: Settings) -> int:
    """(device, seq) pairs in the readings topic: a redelivered copy counts once."""
    return sum(len(c) for c in seq_counts(settings).values())


def test_kill_9_mid_stream_loses_nothing(pipeline: Callable[..., Settings], unique: str) -> None:
    s = pipeline()
    devices = [f"k9-{unique}-{i}" for i in range(5)]
    count = 2000
    port = free_port()
    proc = ingester_process(s, port)
    pub = Publisher(s.mqtt, f"pub-{unique}")
    try:
        wait_subscribed(proc, port)
        # About 4 s of publishing, so the kill lands mid-stream on any machine.
        publisher = threading.Thread(target=publish_stream, args=(pub, devices, count, 10, 0.02))
        publisher.start()
        time.sleep(1.0)
        assert publisher.is_alive(), "the stream ended before the kill"
        proc.send_signal(signal.SIGKILL)  # mid-stream, no chance to flush or ack
        proc.wait(10)
        time.sleep(1.0)
        port = free_port()
        proc = ingester_process(s, port)  # same instance: resumes the persistent session
        wait_subscribed(proc, port)
        publisher.join(120)
        pub.wait_all()
        wait_for(lambda: distinct_seqs(s) >= count * len(devices), 90, "every reading in Kafka")
    finally:
        pub.close()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out.decode()[-2000:]
    duplicates = assert_every_seq_arrived(s, devices, count)
    print(f"kill -9: {duplicates} duplicates (at-least-once)")


class PeakInflight:
    """Samples an ingester's in-flight count on a thread for the whole test."""

    def __init__(self, ingester: Ingester) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ingester,), daemon=True)
        self._thread.start()

    def _run(self, ingester: Ingester) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, ingester.stats.inflight)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def test_kafka_outage_loses_nothing_and_bounds_inflight(
    pipeline: Callable[..., Settings], stack: Stack, unique: str
) -> None:
    kafka = stack.services["kafka"]
    if kafka.status().state == "external":
        pytest.skip("kafka is not ours to stop")
    s = pipeline(max_inflight=300)
    devices = [f"ko-{unique}-{i}" for i in range(4)]
    count = 3000
    pub = Publisher(s.mqtt, f"pub-{unique}")
    with running(s) as ingester:
        sampler = PeakInflight(ingester)
        publisher = threading.Thread(target=publish_stream, args=(pub, devices, count, 10, 0.02))
        publisher.start()
        time.sleep(0.5)
        kafka.down()
        time.sleep(3)
        kafka.up()
        publisher.join(120)
        pub.wait_all(120)
        wait_for(lambda: ingester.stats.acked == count * len(devices), 120, "all acked")
        peak = sampler.stop()
    pub.close()
    # The broker never has more than Receive Maximum messages out to us, so
    # memory is bounded however long Kafka is away.
    assert 0 < peak <= 300, f"inflight peaked at {peak}"
    assert_every_seq_arrived(s, devices, count)


@pytest.mark.parametrize("shared", [False, True], ids=["plain-subscription", "shared-group"])
def test_mosquitto_restart_mid_stream(
    pipeline: Callable[..., Settings], stack: Stack, unique: str, shared: bool
) -> None:
    """The ingester reconnects by itself. With a plain subscription nothing is
    lost; with a shared one Mosquitto 2.0.11 forgets the subscription over the
    restart, so only readings published after the re-subscribe are guaranteed."""
    mosquitto = stack.services["mosquitto"]
    if mosquitto.status().state == "external":
        pytest.skip("mosquitto is not ours to restart")
    s = pipeline()
    if shared:
        s = s.model_copy(update={"mqtt": s.mqtt.model_copy(update={"shared_group": f"g{unique}"})})
    devices = [f"mr-{unique}-{i}" for i in range(4)]
    count, after = 1500, 200
    pub = Publisher(s.mqtt, f"pub-{unique}")
    with running(s) as ingester:
        publisher = threading.Thread(target=publish_stream, args=(pub, devices, count, 20, 0.02))
        publisher.start()
        time.sleep(0.5)
        mosquitto.down()
        time.sleep(1.0)
        mosquitto.up()
        publisher.join(120)
        pub.wait_all(120)
        wait_for(ingester.session.connected.is_set, 60, "the ingester to resubscribe")
        assert ingester.session.connects >= 2, "the ingester never reconnected"
        for seq in range(count, count + after):
            for dev in devices:
                pub.publish(f"sensors/s/temperature/{dev}", reading(dev, seq))
        pub.wait_all(60)
        topic = KafkaTopics(s.kafka.topic_prefix).readings("temperature")
        sent = (count + after) * len(devices)
        if not shared:
            wait_for(lambda: topic_sizes(s.kafka, [topic])[topic] >= sent, 90, "every reading")
        else:
            time.sleep(3)
    pub.close()
    if not shared:
        assert_every_seq_arrived(s, devices, count + after)
        return
    got = read_topics(s.kafka, [topic], topic_sizes(s.kafka, [topic])[topic])[topic]
    seen = {(json.loads(v)["device_id"], json.loads(v)["seq"]) for _k, v in got}
    late = {(d, q) for d in devices for q in range(count, count + after)}
    assert late <= seen, "readings published after the re-subscribe were lost"
    lost = len({(d, q) for d in devices for q in range(count)} - seen)
    print(f"shared subscription over a broker restart: {lost} of {count * len(devices)} lost")


def test_two_ingesters_share_the_load(pipeline: Callable[..., Settings], unique: str) -> None:
    s = pipeline()
    s = s.model_copy(update={"mqtt": s.mqtt.model_copy(update={"shared_group": f"g{unique}"})})
    s2 = s.model_copy(
        update={"ingest": s.ingest.model_copy(update={"instance": f"{s.ingest.instance}b"})}
    )
    devices = [f"sh-{unique}-{i}" for i in range(10)]
    count = 300
    pub = Publisher(s.mqtt, f"pub-{unique}")
    with running(s) as first, running(s2) as second:
        publish_stream(pub, devices, count)
        pub.wait_all()
        total = count * len(devices)
        wait_for(lambda: first.stats.acked + second.stats.acked >= total, 60, "all acked")
        shares = (first.stats.messages, second.stats.messages)
    pub.close()
    assert min(shares) > 0.2 * total, f"uneven split {shares}"
    assert_every_seq_arrived(s, devices, count)


def test_dlq_inspect_and_replay_after_a_fix(
    pipeline: Callable[..., Settings], unique: str, tmp_path: Path
) -> None:
    """Refused for an unknown type and a wrong unit; replayed once the catalogue
    knows the type and with the unit fixed up. Accepted batch items are not replayed."""
    s = pipeline()
    pub = Publisher(s.mqtt, f"pub-{unique}")
    dev = f"dl-{unique}"
    now = int(time.time() * 1000)
    batch = [
        {"device_id": dev, "sensor_type": "radon", "ts": now, "value": 80.0, "seq": 0},
        {"device_id": dev, "sensor_type": "gas", "ts": now, "value": 1.0, "seq": 1},
        {"device_id": dev, "sensor_type": "gas", "ts": now, "value": 2.0, "seq": 2, "unit": "ppb"},
    ]
    with running(s) as ingester:
        pub.publish("sensors/site-d", json.dumps(batch))
        pub.publish(f"sensors/site-d/co2/{dev}", b"{garbage")
        pub.wait_all()
        wait_for(lambda: ingester.stats.acked == 2, what="acks")
    pub.close()

    result = inspect(read_dead_letters(s), DlqFilter(device=dev))
    assert result.records == 2
    assert result.items_by_reason == Counter(
        {"unknown_sensor_type": 1, "bad_unit": 1, "malformed_json": 1}
    )
    assert inspect(read_dead_letters(s), DlqFilter(reason="bad_unit")).records == 1
    future = DlqFilter(since_ms=now + 3_600_000)
    assert inspect(read_dead_letters(s), future).records == 0

    catalogue_file = tmp_path / "sensors.yaml"
    catalogue_file.write_text(
        (Path(__file__).parents[2] / "iotpipe" / "sensors.yaml").read_text()
        + "  radon:\n    unit: Bq/m3\n    range: [0, 10000]\n"
    )
    catalogue = load_catalogue(catalogue_file)
    topics = KafkaTopics(s.kafka.topic_prefix)
    ensure_topics(s.kafka, [topics.readings("radon")])
    dry = replay(s, catalogue, read_dead_letters(s), DlqFilter(device=dev), dry_run=True)
    assert (dry.replayed, dry.still_refused) == (1, Counter({"bad_unit": 1, "malformed_json": 1}))
    radon_only = replay(
        s, catalogue, read_dead_letters(s), DlqFilter(reason="unknown_sensor_type", device=dev)
    )
    assert radon_only.replayed == 1 and not radon_only.still_refused
    unit_fixed = replay(
        s,
        catalogue,
        read_dead_letters(s),
        DlqFilter(reason="bad_unit", device=dev),
        fixup=make_fixup(["unit=ppm"], []),
    )
    assert unit_fixed.replayed == 1 and not unit_fixed.still_refused
    got = read_topics(s.kafka, [topics.readings("radon"), topics.readings("gas")], 3)
    gas = sorted(json.loads(v)["seq"] for _k, v in got[topics.readings("gas")])
    assert gas == [1, 2]  # seq 1 from the original ingest, seq 2 from the replay
    (radon,) = [json.loads(v) for _k, v in got[topics.readings("radon")]]
    assert radon["value"] == 80.0 and radon["site"] == "site-d"
    delete_topics(s.kafka, [topics.readings("radon")])
