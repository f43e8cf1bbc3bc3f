"""``iotpipe status`` end to end through the CLI, against the real local stack."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest
from influxdb_client.client.influxdb_client import InfluxDBClient
from typer.testing import CliRunner

from iotpipe.catalogue import load_catalogue
from iotpipe.connectors.kafka import delete_topics, ensure_topics
from iotpipe.settings import Settings
from iotpipe.topics import KafkaTopics
from ops.cli import app
from ops.stack import Stack
from tests.integration.test_health import health_settings, produce, topics_ready, wait_for

CATALOGUE = load_catalogue()


@pytest.fixture
def isolated(stack: Stack, unique: str) -> Iterator[Settings]:
    s = health_settings(stack.settings, unique)
    names = KafkaTopics(s.kafka.topic_prefix).all_topics(CATALOGUE.names)
    ensure_topics(s.kafka, names)
    wait_for(lambda: topics_ready(s), 30, "leaders for the new topics")
    yield s
    delete_topics(s.kafka, names)


def env_of(s: Settings) -> dict[str, str]:
    """The environment that selects these settings for a CLI run."""
    return {
        "IOTPIPE_KAFKA_TOPIC_PREFIX": s.kafka.topic_prefix,
        "IOTPIPE_INGEST_METRICS_PORT": str(s.ingest.metrics_port),
        "IOTPIPE_FLOW_METRICS_PORT": str(s.flow.metrics_port),
    }


def test_status_json_reports_the_topics(isolated: Settings) -> None:
    names = KafkaTopics(isolated.kafka.topic_prefix)
    produce(isolated, {names.readings("humidity"): 9, names.dlq_sink: 2})
    result = CliRunner().invoke(app, ["status", "--json"], env=env_of(isolated))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    totals = {t["topic"]: t["messages"] for t in data["topics"]}
    assert totals[names.readings("humidity")] == 9
    assert totals[names.dlq_sink] == 2
    assert sum(totals.values()) == 11
    assert data["dead_letters"]["sink_topic"] == 2
    assert {c["name"]: c["state"] for c in data["components"]} == {
        "ingest": "down",
        "flow-normal": "down",
        "flow-high": "down",
    }


def test_watch_json_gives_one_line_per_snapshot_with_rates(isolated: Settings) -> None:
    args = ["status", "--watch", "--json", "--count", "2", "--interval", "0.5"]
    result = CliRunner().invoke(app, args, env=env_of(isolated))
    assert result.exit_code == 0, result.output
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert all(t["rate"] is None for t in first["topics"])
    assert all(t["rate"] == 0.0 for t in second["topics"])
    assert second["at_ms"] - first["at_ms"] >= 450


def test_screen_shows_every_section(isolated: Settings) -> None:
    """The real console script, as a user runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "ops", "status"],
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", **env_of(isolated)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for heading in ("Services", "Throughput", "Kafka topics", "Dead letters", "Alerts"):
        assert heading in done.stdout, heading
    assert KafkaTopics(isolated.kafka.topic_prefix).readings("co2") in done.stdout
    assert "not running" in done.stdout


def test_record_quiet_writes_pipeline_points(
    isolated: Settings, bucket: str, influx: InfluxDBClient
) -> None:
    names = KafkaTopics(isolated.kafka.topic_prefix)
    produce(isolated, {names.readings("power"): 4})
    args = ["status", "--watch", "--record", "--quiet", "--count", "2", "--interval", "0.5"]
    result = CliRunner().invoke(app, [*args, "--bucket", bucket], env=env_of(isolated))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # --quiet: no screen
    flux = f"""from(bucket: "{bucket}") |> range(start: -10m, stop: 1m)
      |> filter(fn: (r) => r._measurement == "pipeline" and r.kind == "topic")
      |> filter(fn: (r) => r.topic == "{names.readings("power")}")"""
    rows = [r.values for t in influx.query_api().query(flux) for r in t.records]
    messages = [r["_value"] for r in rows if r["_field"] == "messages"]
    rates = [r["_value"] for r in rows if r["_field"] == "rate"]
    assert messages == [4, 4]  # two snapshots
    assert rates == [0.0]  # only the second has a previous one
    assert {r["role"] for r in rows} == {"readings"} and {r["sensor_type"] for r in rows} == {
        "power"
    }


def test_record_to_a_missing_bucket_fails_clearly(isolated: Settings) -> None:
    result = CliRunner().invoke(
        app, ["status", "--record", "--bucket", "no-such-bucket-xyz"], env=env_of(isolated)
    )
    assert result.exit_code == 1
    assert "no-such-bucket-xyz" in result.output and "Traceback" not in result.output
