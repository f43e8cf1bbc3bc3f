"""No single message, retained replay or dead network loop can silence the ingester."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from ingest.ingester import Ingester
from ingest.redelivery import message_key
from ingest.runner import LoopDiedError, run_ingester
from iotpipe.catalogue import load_catalogue
from iotpipe.connectors.kafka import delete_topics, ensure_topics
from iotpipe.settings import Settings
from iotpipe.topics import KafkaTopics
from ops.stack import Stack
from tests.integration.pipeline import (
    Publisher,
    forget_ingest_session,
    isolated_settings,
    read_topics,
    reading,
    share_credentials,
)

CATALOGUE = load_catalogue()


@pytest.fixture
def pipeline(
    stack: Stack, unique: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Settings]]:
    made: list[Settings] = []
    state = share_credentials(stack.settings, tmp_path_factory.mktemp("ingest-state"))

    def make(**ingest: object) -> Settings:
        s = isolated_settings(stack.settings, unique, **ingest)
        s = s.model_copy(update={"core": s.core.model_copy(update={"state_dir": state})})
        ensure_topics(s.kafka, KafkaTopics(s.kafka.topic_prefix).all_topics(CATALOGUE.names))
        made.append(s)
        return s

    yield make
    for s in made:
        forget_ingest_session(s, s.ingest.instance)
    if made:
        delete_topics(
            made[0].kafka, KafkaTopics(made[0].kafka.topic_prefix).all_topics(CATALOGUE.names)
        )


@contextmanager
def running(settings: Settings) -> Iterator[Ingester]:
    ingester = Ingester(settings, CATALOGUE)
    ingester.start()
    try:
        yield ingester
    finally:
        ingester.stop(timeout=5)


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def dead_letters(s: Settings, at_least: int) -> list[dict]:
    topic = KafkaTopics(s.kafka.topic_prefix).dlq_ingest
    return [json.loads(v) for _k, v in read_topics(s.kafka, [topic], at_least, timeout=20)[topic]]


def readings_of(s: Settings, at_least: int, timeout: float = 20) -> list[dict]:
    topic = KafkaTopics(s.kafka.topic_prefix).readings("temperature")
    got = read_topics(s.kafka, [topic], at_least, timeout=timeout)[topic]
    return [json.loads(v) for _k, v in got]


def test_poison_payloads_are_dead_lettered_and_the_loop_goes_on(
    pipeline: Callable[..., Settings], unique: str
) -> None:
    s = pipeline()
    pub = Publisher(s.mqtt, f"pub-{unique}")
    dev = f"dev-{unique}"
    control = b'{"device_id":"' + b"\x01" * 200_000 + b'"}'  # a 1.2 MB dead letter once escaped
    # (A topic with a control character never gets here: Mosquitto drops the publisher.)
    cases = [
        ("malformed_json", f"sensors/s/temperature/{dev}", b"[" * 100_000),
        ("malformed_json", f"sensors/s/temperature/{dev}", b'{"a":' * 50_000),
        ("malformed_json", f"sensors/s/temperature/{dev}", control),
        ("bad_id", "sensors/s/temperature", reading(f"{dev}\n", 1)),
        ("wrong_type", f"sensors/s/temperature/{dev}", reading(dev, 2**53)),
    ]
    with running(s) as ingester:
        for _reason, topic, payload in cases:
            pub.publish(topic, payload)
        pub.publish(f"sensors/s/temperature/{dev}", reading(dev, 7))  # the canary
        pub.wait_all()
        wait_for(lambda: ingester.stats.acked == len(cases) + 1, what="every message acked")
        assert ingester.session.alive()
    pub.close()
    letters = dead_letters(s, len(cases))
    assert sorted(d["reason"] for d in letters) == sorted(r for r, _t, _p in cases)
    (big,) = [d for d in letters if d.get("payload_truncated")]
    assert big["payload_truncated"] is True
    assert big["payload_size"] == len(control)
    assert big["payload_sha256"] == hashlib.sha256(control).hexdigest()
    assert len(big["payload"]) <= 4096
    assert [r["seq"] for r in readings_of(s, 1)] == [7]


def test_retained_publishes_are_forwarded_once_never_replayed(
    pipeline: Callable[..., Settings], unique: str
) -> None:
    s = pipeline()
    dev = f"dev-{unique}"
    topic = f"sensors/s/temperature/{dev}"
    pub = Publisher(s.mqtt, f"pub-{unique}")
    with running(s):
        pub.client.publish(topic, reading(dev, 1), qos=1, retain=True).wait_for_publish(10)
        pub.publish(topic, reading(dev, 2))
        pub.wait_all()
        assert [r["seq"] for r in readings_of(s, 2)] == [1, 2]
    with running(s) as again:  # the same session resubscribes
        pub.publish(topic, reading(dev, 3))
        pub.wait_all()
        wait_for(lambda: again.stats.acked >= 1, what="the new reading")
    fresh = s.model_copy(update={"ingest": s.ingest.model_copy(update={"instance": f"n{unique}"})})
    with running(fresh) as other:  # a new session: MQTT v5 asks for no retained replay
        pub.publish(topic, reading(dev, 4))
        pub.wait_all()
        wait_for(lambda: other.stats.acked >= 1, what="the fresh session's reading")
        assert other.stats.dead_lettered["retained"] == 0
    old = s.model_copy(
        update={
            "mqtt": s.mqtt.model_copy(update={"protocol": "3.1.1"}),
            "ingest": s.ingest.model_copy(update={"instance": f"o{unique}"}),
        }
    )
    with running(old) as v311:  # 3.1.1 cannot refuse the replay: it is dead-lettered
        wait_for(lambda: v311.stats.acked >= 1, what="the retained replay")
        assert v311.stats.dead_lettered["retained"] == 1
    pub.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(10)  # clear it
    pub.close()
    for extra in (fresh, old):
        forget_ingest_session(extra, extra.ingest.instance)
    seqs = sorted(r["seq"] for r in readings_of(s, 5, timeout=10))
    assert seqs == [1, 2, 3, 4]
    assert [d["reason"] for d in dead_letters(s, 1)] == ["retained"]


def test_a_message_that_keeps_killing_the_ingester_is_dead_lettered_as_poison(
    pipeline: Callable[..., Settings], unique: str
) -> None:
    """The broker redelivers (DUP) a message that killed two ingesters while they handled
    it (their deaths are in the redelivery log, as a crash leaves it); the third
    ingester dead-letters it as poison instead of dying too."""
    s = pipeline(poison_after=2)
    cut_off = s.model_copy(
        update={"kafka": s.kafka.model_copy(update={"bootstrap_servers": "127.0.0.1:1"})}
    )
    dev = f"dev-{unique}"
    topic, payload = f"sensors/s/temperature/{dev}", reading(dev, 1)
    pub = Publisher(s.mqtt, f"pub-{unique}")
    with running(cut_off) as ingester:  # handles it, cannot write it: left unacknowledged
        pub.publish(topic, payload)
        pub.wait_all()
        wait_for(lambda: ingester.stats.messages == 1, what="the message in flight")
    log = s.core.state_dir / f"ingest-{s.ingest.instance}.redeliveries"
    key = message_key(topic.encode(), payload)
    with log.open("a") as f:
        f.write(f"+{key}\n+{key}\n")  # two processes died inside the handler
    with running(s) as ingester:
        wait_for(lambda: ingester.stats.acked == 1, what="the poison dead-lettered")
        assert ingester.stats.dead_lettered["poison"] == 1
    pub.close()
    letters = dead_letters(s, 1)
    assert [d["reason"] for d in letters] == ["poison"]
    assert json.loads(letters[0]["payload"])["seq"] == 1
    assert readings_of(s, 1, timeout=3) == []


def test_a_message_that_only_waited_for_kafka_is_never_poison(
    pipeline: Callable[..., Settings], unique: str
) -> None:
    """Redelivered to three ingesters that could not reach Kafka: it killed none of them,
    so it is forwarded when Kafka is back."""
    s = pipeline(poison_after=1)
    cut_off = s.model_copy(
        update={"kafka": s.kafka.model_copy(update={"bootstrap_servers": "127.0.0.1:1"})}
    )
    dev = f"dev-{unique}"
    pub = Publisher(s.mqtt, f"pub-{unique}")
    for attempt in range(3):
        with running(cut_off) as ingester:
            if attempt == 0:
                pub.publish(f"sensors/s/temperature/{dev}", reading(dev, 1))
                pub.wait_all()
            wait_for(lambda: ingester.stats.messages == 1, what="the message in flight")
    with running(s) as ingester:
        wait_for(lambda: ingester.stats.acked == 1, what="the reading forwarded")
    pub.close()
    assert [r["seq"] for r in readings_of(s, 1)] == [1]


def test_a_dead_network_loop_ends_the_run_with_an_error(
    pipeline: Callable[..., Settings],
) -> None:
    s = pipeline()
    started = threading.Event()
    holder: list[Ingester] = []

    def kill_loop(ingester: Ingester) -> None:
        holder.append(ingester)
        ingester.session._client._thread_terminate = True  # what an escaped exception does
        started.set()

    with pytest.raises(LoopDiedError):
        run_ingester(s, threading.Event(), on_start=kill_loop)
    assert started.is_set() and holder[0].stats.loop_alive is False
