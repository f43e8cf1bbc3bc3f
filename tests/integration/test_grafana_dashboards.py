"""Every query of every provisioned Grafana dashboard returns rows on real demo data.

The demo data is made by the pipeline's own code, end to end on the real
servers: the simulator's fleet (with labelled anomalies) is produced to Kafka,
the real flow (``run_flow``) turns it into ``sensor_agg`` and ``anomaly``
points in a fresh bucket, a real ingester takes good and bad MQTT input, and
``iotpipe status``'s recorder writes two ``pipeline`` snapshots collected from
all of that. Then each dashboard's variables are resolved the way Grafana
does (textbox defaults; query variables by running their own query), its
macros replaced, and each panel query is run against InfluxDB.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from confluent_kafka import Producer
from influxdb_client.client.influxdb_client import InfluxDBClient

from flows.runner import run_flow
from iotpipe.catalogue import load_catalogue
from iotpipe.connectors.kafka import delete_topics, ensure_topics
from iotpipe.settings import Settings
from iotpipe.topics import KafkaTopics
from ops.health import HealthCollector
from ops.pipeline_health import PipelineHealth
from ops.stack import Stack
from ops.status import Recorder
from simulators.anomalies import AnomalyConfig
from simulators.generate import generate_payloads
from tests.integration.pipeline import Publisher, forget_ingest_session, reading
from tests.integration.test_health import (
    health_settings,
    ingester_running,
    topics_ready,
    wait_for,
)
from tests.unit.ops.test_compose import dashboards, panel_queries

CATALOGUE = load_catalogue()
NORMAL_TYPES = tuple(sorted(t.name for t in CATALOGUE.by_priority("normal")))
READINGS = 6000


@dataclass
class Demo:
    settings: Settings
    bucket: str
    produced: int
    snapshots: list[PipelineHealth]


def produce_fleet(settings: Settings, site: str) -> int:
    """The simulator's readings (ending about now), keyed by device like the ingester does."""
    payloads = generate_payloads(
        READINGS,
        devices=30,
        seed=11,
        types=NORMAL_TYPES,
        sites=(site,),
        anomalies=AnomalyConfig(rate=0.02),
    )
    topics = KafkaTopics(settings.kafka.topic_prefix)
    producer = Producer({**settings.kafka.client_config(), "linger.ms": 20})
    for payload in payloads:
        r = msgspec.json.decode(payload)
        producer.produce(topics.readings(r["sensor_type"]), payload, r["device_id"].encode())
        producer.poll(0)
    assert producer.flush(30) == 0
    return len(payloads)


@pytest.fixture
def demo(stack: Stack, unique: str, bucket: str) -> Iterator[Demo]:
    base = health_settings(stack.settings, unique)
    s = base.model_copy(
        update={
            "influx": base.influx.model_copy(update={"bucket": bucket}),
            "flow": base.flow.model_copy(
                update={"windows": "10s,1m", "epoch_interval_s": 0.5, "recovery_dir": None}
            ),
            "alert": base.alert.model_copy(update={"mqtt_enabled": False}),
        }
    )
    names = KafkaTopics(s.kafka.topic_prefix).all_topics(CATALOGUE.names)
    ensure_topics(s.kafka, names)
    try:
        wait_for(lambda: topics_ready(s), 30, "leaders for the new topics")
        site = s.mqtt.sites
        produced = produce_fleet(s, site)
        with ingester_running(s):
            pub = Publisher(s.mqtt, f"pub-{unique}")
            dev = f"dev-{unique}"
            for seq in range(10):
                pub.publish(f"sensors/{site}/temperature/{dev}", reading(dev, seq))
            pub.publish(f"sensors/{site}/temperature/{dev}", b"{not json")
            pub.wait_all()
            pub.close()
            produced += 10
            run_flow(s, tail=False)  # its metrics endpoint stays up (daemon thread)
            with HealthCollector(s) as collector:
                first = collector.collect()
                time.sleep(1.0)
                second = collector.collect(first)
            recorder = Recorder(s)
            try:
                assert recorder.record(first) > 0 and recorder.record(second) > 0
            finally:
                recorder.close()
        yield Demo(s, bucket, produced, [first, second])
    finally:
        forget_ingest_session(s, s.ingest.instance)
        delete_topics(s.kafka, names)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def substitute(text: str, values: dict[str, str], macros: dict[str, str]) -> str:
    """Grafana's interpolation: ``${name}``, ``${name:format}``, ``$name``, and the v.* macros."""
    for macro, value in macros.items():
        text = text.replace(macro, value)

    def one(match: re.Match[str]) -> str:
        return values[match.group(1) or match.group(2)]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", one, text)


def run(influx: InfluxDBClient, flux: str) -> list[dict[str, Any]]:
    return [rec.values for table in influx.query_api().query(flux) for rec in table.records]


def most_anomalous(influx: InfluxDBClient, bucket: str) -> tuple[str, str]:
    """A (device, sensor type) with anomalies, so per-device/type panels have some."""
    rows = run(
        influx,
        f"""from(bucket: "{bucket}") |> range(start: -1d)
          |> filter(fn: (r) => r._measurement == "anomaly" and r._field == "score")
          |> group(columns: ["device_id", "sensor_type"]) |> count()
          |> group() |> sort(columns: ["_value"], desc: true) |> limit(n: 1)""",
    )
    assert rows, "the demo produced no anomalies"
    return str(rows[0]["device_id"]), str(rows[0]["sensor_type"])


def resolve(
    board: dict[str, Any],
    influx: InfluxDBClient,
    prefer: dict[str, str],
    macros: dict[str, str],
) -> dict[str, str]:
    """Variable values in order: textboxes from ``prefer`` or their default, queries run."""
    values: dict[str, str] = {}
    for var in board["templating"]["list"]:
        name = var["name"]
        if var["type"] == "textbox":
            values[name] = prefer.get(name, var["query"])
            continue
        assert var["type"] == "query", f"{name}: unsupported variable type {var['type']}"
        options = [str(r["_value"]) for r in run(influx, substitute(var["query"], values, macros))]
        assert options, f"variable {name} has no values"
        if name in prefer:
            assert prefer[name] in options, (name, prefer[name], options[:20])
        values[name] = prefer.get(name, options[0])
        if name == "device":
            assert all(values["device_filter"] in o for o in options)
            assert len(options) <= 200
    return values


def test_health_of_the_demo_pipeline(demo: Demo) -> None:
    """What the recorder wrote: a running flow and ingester seen through collect_health."""
    s, last = demo.settings, demo.snapshots[-1]
    flow = last.component("flow-normal")
    assert flow is not None and flow.up
    assert flow.total("iotpipe_flow_readings_total") == demo.produced
    assert last.component("flow-high").state == "down"  # type: ignore[union-attr]
    assert flow.rates["readings"] == 0.0  # the bounded run had finished
    lag = last.lag_by_topic()
    group = KafkaTopics(s.kafka.topic_prefix).flow_group("normal")
    for t in NORMAL_TYPES:
        assert lag[(group, KafkaTopics(s.kafka.topic_prefix).readings(t))] == 0, t
    assert last.dead_letters.source == "ingest metrics"
    assert last.dead_letters.by_reason == {"malformed_json": 1}
    assert sum(last.alerts.by_detector.values()) > 0
    assert last.alerts.topic_total is not None and last.alerts.topic_total > 0


def test_every_dashboard_query_returns_rows(demo: Demo, influx: InfluxDBClient) -> None:
    now = datetime.now(UTC)
    macros = {
        "v.timeRangeStart": rfc3339(now - timedelta(hours=3)),
        "v.timeRangeStop": rfc3339(now + timedelta(minutes=5)),
        "v.windowPeriod": "1m",
    }
    device, sensor_type = most_anomalous(influx, demo.bucket)
    prefer = {
        "bucket": demo.bucket,
        "window": "1m",
        "sensor_type": sensor_type,
        "device_filter": device[-4:],
        "device": device,
    }
    failures, ran = [], 0
    for name, board in dashboards().items():
        values = resolve(board, influx, prefer, macros)
        for where, query in panel_queries(board):
            flux = substitute(query, values, macros)
            try:
                rows = run(influx, flux)
            except Exception as exc:  # report every broken query, not just the first
                failures.append(f"{name}: {where}: {type(exc).__name__}: {str(exc)[:300]}")
                continue
            ran += 1
            if not rows:
                failures.append(f"{name}: {where}: no rows\n{flux}")
    assert not failures, "\n".join(failures)
    assert ran == sum(len(panel_queries(b)) for b in dashboards().values())


def test_pipeline_points_match_the_snapshot(demo: Demo, influx: InfluxDBClient) -> None:
    """The recorder's points carry the snapshot's numbers (spot checks per kind)."""
    last = demo.snapshots[-1]
    rows = run(
        influx,
        f"""from(bucket: "{demo.bucket}") |> range(start: -1h, stop: 1m)
          |> filter(fn: (r) => r._measurement == "pipeline")
          |> filter(fn: (r) => r._time == {rfc3339_ms(last.at_ms)})""",
    )
    got = {
        (r["kind"], r.get("topic") or r.get("component") or r.get("reason"), r["_field"]): r[
            "_value"
        ]
        for r in rows
    }
    for t in last.topics:
        assert got[("topic", t.topic, "messages")] == t.messages
    assert got[("dead_letter", "malformed_json", "count")] == 1
    assert got[("component", "flow-normal", "up")] == 1
    assert got[("component", "flow-high", "up")] == 0
    assert json.dumps(last.to_dict())  # and the snapshot itself is JSON-ready


def rfc3339_ms(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
