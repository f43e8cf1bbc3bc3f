"""The dataflow against real Kafka and InfluxDB, including a kill -9 and resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from influxdb_client import BucketRetentionRules, InfluxDBClient
from prometheus_client.parser import text_string_to_metric_families

from flows.runner import run_flow
from iotpipe.catalogue import load_catalogue
from iotpipe.codec import encode
from iotpipe.connectors.kafka import delete_topics, ensure_topics, produce_waiting
from iotpipe.model import Reading
from iotpipe.settings import Settings
from iotpipe.topics import KafkaTopics
from ops.stack import Stack
from tests.integration.pipeline import free_port, topic_sizes

CATALOGUE = load_catalogue()


@pytest.fixture
def flow_settings(stack: Stack, unique: str) -> Iterator[Settings]:
    """Own topics, own bucket, all sensor types, 10 s windows."""
    base = stack.settings
    s = base.model_copy(
        update={
            "kafka": base.kafka.model_copy(update={"topic_prefix": f"t{unique}.", "partitions": 3}),
            "influx": base.influx.model_copy(update={"bucket": f"flow-{unique}"}),
            "flow": base.flow.model_copy(
                update={
                    "priority": "all",
                    "windows": "10s",
                    "allowed_lateness_s": 1.0,
                    "epoch_interval_s": 0.5,
                    "metrics_port": 0,
                }
            ),
        }
    )
    names = KafkaTopics(s.kafka.topic_prefix).all_topics(CATALOGUE.names)
    ensure_topics(s.kafka, names)
    influx = s.influx
    with InfluxDBClient(url=influx.url, token=influx.token.get_secret_value(), org=influx.org) as c:
        bucket = c.buckets_api().create_bucket(
            bucket_name=influx.bucket,
            org=influx.org,
            retention_rules=BucketRetentionRules(type="expire", every_seconds=0),
        )
        yield s
        c.buckets_api().delete_bucket(bucket)
    delete_topics(s.kafka, names)


def produce(settings: Settings, readings: list[Reading]) -> None:
    topics = KafkaTopics(settings.kafka.topic_prefix)
    producer = Producer({**settings.kafka.client_config(), "linger.ms": 20})
    for r in readings:
        produce_waiting(producer, topics.readings(r.sensor_type), encode(r), r.device_id.encode())
        producer.poll(0)
    assert producer.flush(30) == 0


def fleet(devices: int, seconds: int, t0: int, seed: int = 7) -> list[Reading]:
    rng = np.random.default_rng(seed)
    out = []
    types = ["temperature", "humidity", "pressure", "co2"]
    for step in range(seconds):
        for d in range(devices):
            t = types[d % len(types)]
            out.append(
                Reading(
                    device_id=f"dev-{d}",
                    sensor_type=t,
                    site=f"site-{d % 2}",
                    ts=t0 + step * 1000 + int(rng.integers(0, 1000)),
                    value=float(
                        {"temperature": 21, "humidity": 45, "pressure": 1013, "co2": 600}[t]
                        + rng.normal(0, 0.2)
                    ),
                    seq=step,
                )
            )
    return out


def expected(readings: list[Reading], length: int = 10_000) -> dict[tuple[str, int], tuple]:
    groups: dict[tuple[str, int], list[float]] = defaultdict(list)
    for r in readings:
        groups[(r.device_id, r.ts - r.ts % length)].append(r.value)
    return {k: (len(v), float(np.mean(v)), min(v), max(v)) for k, v in groups.items()}


def stored_aggregates(
    settings: Settings, measurement: str = "sensor_agg", key: tuple[str, ...] = ("device_id",)
) -> dict[tuple[str, int], dict[str, float]]:
    influx = settings.influx
    flux = f'''
      from(bucket: "{influx.bucket}") |> range(start: 0)
        |> filter(fn: (r) => r._measurement == "{measurement}" and r.window == "10s")
        |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")
    '''
    out = {}
    with InfluxDBClient(url=influx.url, token=influx.token.get_secret_value(), org=influx.org) as c:
        for table in c.query_api().query(flux):
            for rec in table.records:
                start = int(rec.get_time().timestamp() * 1000)
                out[("/".join(rec.values[k] for k in key), start)] = rec.values
    return out


def assert_matches(stored: dict, want: dict) -> None:
    assert set(stored) == set(want), (len(stored), len(want))
    for key, (count, mean, lo, hi) in want.items():
        row = stored[key]
        assert row["count"] == count
        assert row["mean"] == pytest.approx(mean, abs=1e-9)
        assert (row["min"], row["max"]) == (lo, hi)


def test_readings_in_aggregates_out(flow_settings: Settings) -> None:
    t0 = (int(time.time() * 1000) // 60_000 - 30) * 60_000
    readings = fleet(devices=40, seconds=45, t0=t0)
    produce(flow_settings, readings)
    run_flow(flow_settings, tail=False)
    assert_matches(stored_aggregates(flow_settings), expected(readings))
    # per-site roll-ups: every device of a site (and type) across the 3 partitions
    by_site = defaultdict(list)
    for r in readings:
        by_site[(f"{r.site}/{r.sensor_type}", r.ts - r.ts % 10_000)].append(r.value)
    sites = stored_aggregates(flow_settings, "site_agg", ("site", "sensor_type"))
    assert set(sites) == set(by_site)
    for key, values in by_site.items():
        assert sites[key]["count"] == len(values)
        assert sites[key]["mean"] == pytest.approx(float(np.mean(values)), abs=1e-9)
        assert (sites[key]["min"], sites[key]["max"]) == (min(values), max(values))


def test_metrics_and_committed_progress(flow_settings: Settings) -> None:
    """The flow's Prometheus counters and its consumer group's offsets say what it did."""
    t0 = (int(time.time() * 1000) // 60_000 - 30) * 60_000
    readings = fleet(devices=20, seconds=30, t0=t0)
    produce(flow_settings, readings)
    port = free_port()
    s = flow_settings.model_copy(
        update={"flow": flow_settings.flow.model_copy(update={"metrics_port": port})}
    )
    run_flow(s, tail=False)  # the metrics server outlives the run (daemon thread)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    metrics = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    flow = (("flow", "all"),)
    assert metrics[("iotpipe_flow_readings_total", flow)] == len(readings)
    windows = len(expected(readings))
    assert metrics[("iotpipe_flow_aggregates_total", flow)] == windows
    assert metrics[("iotpipe_sink_points_total", flow)] >= windows
    assert metrics[("iotpipe_sink_dead_lettered_total", flow)] == 0
    names = KafkaTopics(s.kafka.topic_prefix)
    topics = [names.readings(t) for t in CATALOGUE.names]
    consumer = Consumer({**s.kafka.client_config(), "group.id": names.flow_group(s.flow.priority)})
    try:
        meta = consumer.list_topics(timeout=10).topics
        parts = [TopicPartition(t, p) for t in topics for p in meta[t].partitions]
        committed = consumer.committed(parts, timeout=10)
        ends = {(p.topic, p.partition): consumer.get_watermark_offsets(p)[1] for p in parts}
    finally:
        consumer.close()
    behind = {(c.topic, c.partition): ends[(c.topic, c.partition)] - c.offset for c in committed}
    assert sum(ends.values()) == len(readings)
    assert all(lag == 0 for key, lag in behind.items() if ends[key] > 0), behind


def test_kill_9_and_resume_gives_the_uninterrupted_result(
    flow_settings: Settings, tmp_path: Path
) -> None:
    t0 = (int(time.time() * 1000) // 60_000 - 60) * 60_000
    readings = fleet(devices=300, seconds=600, t0=t0)  # 180k readings: a few seconds of work
    produce(flow_settings, readings)
    s = flow_settings
    env = {
        **os.environ,
        "IOTPIPE_KAFKA_TOPIC_PREFIX": s.kafka.topic_prefix,
        "IOTPIPE_KAFKA_PARTITIONS": "3",
        "IOTPIPE_INFLUX_BUCKET": s.influx.bucket,
        "IOTPIPE_FLOW_PRIORITY": "all",
        "IOTPIPE_FLOW_WINDOWS": "10s",
        "IOTPIPE_FLOW_ALLOWED_LATENESS_S": "1",
        "IOTPIPE_FLOW_EPOCH_INTERVAL_S": "0.5",
        "IOTPIPE_FLOW_BATCH_SIZE": "500",
        "IOTPIPE_FLOW_RECOVERY_DIR": str(tmp_path / "recovery"),
        "IOTPIPE_FLOW_METRICS_PORT": "0",
    }
    argv = [sys.executable, "-m", "ops", "flow", "run", "--to-end"]
    first = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not stored_aggregates(s) and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.1)  # kill as soon as the first windows are written
    assert first.poll() is None, "the flow finished before it could be killed; add readings"
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    partial = len(stored_aggregates(s))
    second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    want = expected(readings)
    assert 0 < partial < len(want), "the kill did not land mid-stream"
    assert_matches(stored_aggregates(s), want)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_flow_busy_emitting_alerts_stops_at_once(
    flow_settings: Settings, signum: int, tmp_path: Path
) -> None:
    """2,000 devices fall silent at once (a newer batch moves the watermark past them);
    the flow is stopped while it is emitting their alerts, and exits cleanly."""
    now = int(time.time() * 1000)
    # Silent for longer than the first-reading timeout (10 min): one reading teaches no interval.
    quiet = [
        Reading(device_id=f"q{i}", sensor_type="gas", ts=now - 900_000, value=1.0)
        for i in range(2000)
    ]
    # Three times as many devices on time: the watermark follows the median device.
    fresh = [Reading(device_id=f"f{i}", sensor_type="gas", ts=now, value=1.0) for i in range(6000)]
    produce(flow_settings, quiet)
    produce(flow_settings, fresh)
    s = flow_settings
    env = {
        **os.environ,
        "IOTPIPE_KAFKA_TOPIC_PREFIX": s.kafka.topic_prefix,
        "IOTPIPE_INFLUX_BUCKET": s.influx.bucket,
        "IOTPIPE_FLOW_PRIORITY": "all",
        "IOTPIPE_FLOW_METRICS_PORT": "0",
    }
    argv = [sys.executable, "-m", "ops", "flow", "run"]
    log = tmp_path / "flow.log"  # a file, not a pipe: 2,000 alert log lines would fill a pipe
    proc = subprocess.Popen(argv, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    alerts = KafkaTopics(s.kafka.topic_prefix).alerts
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if topic_sizes(s.kafka, [alerts])[alerts] > 0:
            break
        time.sleep(0.2)
    if not topic_sizes(s.kafka, [alerts])[alerts]:
        proc.kill()
        raise AssertionError(f"no alerts came:\n{log.read_text()[-3000:]}")
    stopped = time.monotonic()
    proc.send_signal(signum)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGUSR1)  # every thread's stack into the log
        time.sleep(1.0)
        proc.kill()
        tail = log.read_text()[-12000:]
        raise AssertionError(f"running 30 s after the signal:\n{tail}") from None
    took = time.monotonic() - stopped
    out = log.read_text()
    assert proc.returncode == 0, out[-12000:]  # a stuck stop prints every thread's stack
    assert "stopped by a signal" in out
    assert took < 10, f"took {took:.1f} s to stop"
