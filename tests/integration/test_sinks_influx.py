"""The InfluxDB sink against the real server: round trips, replays, outages, dead letters."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from bytewax.dataflow import Dataflow
from bytewax.operators import input as bw_input
from bytewax.operators import output as bw_output
from bytewax.testing import TestingSource, run_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from influxdb_client import InfluxDBClient

from iotpipe.connectors.kafka import delete_topics, ensure_topics
from iotpipe.errors import ConfigError
from iotpipe.model import Aggregate, Alert, Reading
from iotpipe.settings import Settings, SinkSettings
from iotpipe.topics import KafkaTopics
from ops.stack import Stack
from sinks.dead_letter import DeadLetterWriter
from sinks.influx import InfluxSink, InfluxWriter
from tests.integration.pipeline import read_topics

T0 = 1_764_400_000_000


@pytest.fixture
def settings_(stack: Stack, unique: str, bucket: str) -> Iterator[Settings]:
    """Own topic prefix (with dlq.sink created) and the test's bucket."""
    base = stack.settings
    kafka = base.kafka.model_copy(update={"topic_prefix": f"t{unique}.", "partitions": 1})
    topics = KafkaTopics(kafka.topic_prefix)
    ensure_topics(kafka, [topics.dlq_sink])
    sink = SinkSettings(retry_initial_s=0.05, retry_max_s=0.5, batch_size=1000)
    yield base.model_copy(
        update={
            "kafka": kafka,
            "influx": base.influx.model_copy(update={"bucket": bucket}),
            "sink": sink,
        }
    )
    delete_topics(kafka, [topics.dlq_sink])


@pytest.fixture
def dlq(settings_: Settings) -> Iterator[DeadLetterWriter]:
    writer = DeadLetterWriter(settings_.kafka, timeout_s=30)
    yield writer
    writer.close()


def influxql(influx: InfluxDBClient, bucket: str, q: str) -> list[list[Any]]:
    """Rows of an InfluxQL query through InfluxDB 2.x's v1-compatible /query."""
    resp = urllib3.request(
        "GET",
        f"{influx.url}/query",
        fields={"db": bucket, "q": q, "epoch": "ms"},
        headers={"Authorization": f"Token {influx.token}"},
    )
    assert resp.status == 200, resp.data
    series = resp.json()["results"][0].get("series") or []
    return [row for s in series for row in s["values"]]


def flux_rows(influx: InfluxDBClient, bucket: str, measurement: str) -> list[dict[str, object]]:
    flux = f'''from(bucket: "{bucket}") |> range(start: 0)
               |> filter(fn: (r) => r._measurement == "{measurement}")'''
    return [rec.values for table in influx.query_api().query(flux) for rec in table.records]


def _agg(i: int, device: str = "dev-1", **kw: object) -> Aggregate:
    base: dict[str, object] = dict(
        device_id=device,
        sensor_type="temperature",
        site="plant-a",
        window="1m",
        start=T0 + 60_000 * i,
        end=T0 + 60_000 * (i + 1),
        count=i + 1,
        mean=float(i),
        min=float(i) - 1,
        max=float(i) + 1,
        std=0.5,
        last=float(i),
    )
    base.update(kw)
    return Aggregate(**base)  # type: ignore[arg-type]


def _alert(i: int) -> Alert:
    return Alert(
        alert_id=f"a{i}",
        device_id=f"dev-{i}",
        sensor_type="gas",
        site="plant-a",
        detector="threshold",
        severity="critical",
        ts=T0 + i,
        value=12.0,
        score=3.0,
        threshold=10.0,
        message=f'gas "high" #{i}',
    )


def _writer(s: Settings, dlq: DeadLetterWriter | None = None) -> InfluxWriter:
    writer = InfluxWriter(s.influx, s.sink, dlq)
    writer.check()
    return writer


def test_write_query_back_and_replay_does_not_duplicate(
    settings_: Settings, influx: InfluxDBClient, bucket: str
) -> None:
    aggs = [_agg(i, device=f"dev-{i % 7}") for i in range(2500)]
    alerts = [_alert(i) for i in range(10)]
    readings = [
        Reading(device_id="d", sensor_type="t", site="s", ts=T0 + i, value=float(i), seq=i)
        for i in range(100)
    ]
    writer = _writer(settings_)
    batch: list[object] = [aggs, *alerts, readings]
    writer.write(batch)
    writer.write(batch)  # at-least-once replay
    assert writer.stats.points_written == 2 * 2610
    assert writer.stats.requests == 2 * 3  # 2610 points in requests of <= 1000
    assert influxql(influx, bucket, "SELECT count(mean) FROM sensor_agg")[0][1] == 2500
    assert influxql(influx, bucket, "SELECT count(value) FROM anomaly")[0][1] == 10
    assert influxql(influx, bucket, "SELECT count(seq) FROM reading")[0][1] == 100
    row = influxql(influx, bucket, "SELECT * FROM sensor_agg WHERE device_id='dev-3' LIMIT 1")[0]
    assert row[0] == T0 + 3 * 60_000  # the window start, to the millisecond
    types = influxql(influx, bucket, "SHOW FIELD KEYS FROM sensor_agg")
    assert dict(types) == {
        "count": "integer",
        "last": "float",
        "max": "float",
        "mean": "float",
        "min": "float",
        "std": "float",
    }
    msgs = {
        r["device_id"]: r["_value"]
        for r in flux_rows(influx, bucket, "anomaly")
        if r["_field"] == "message"
    }
    assert msgs["dev-4"] == 'gas "high" #4'


_awkward = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=20,
)


def test_awkward_tag_values_round_trip_exactly(
    settings_: Settings, influx: InfluxDBClient, bucket: str, dlq: DeadLetterWriter
) -> None:
    fixed = [
        "dev,1 =x",
        'quote"d',
        "back\\slash",
        "ünïcode-温度",
        "x=1,y=2 z",
        'a\\"b',
        "tab\tcr\r",
    ]
    bad = ["trailing\\", "sp\\ ace", "new\nline"]
    writer = _writer(settings_, dlq)
    expected: dict[str, set[float]] = {}
    refused: list[str] = []

    @settings(
        max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(st.lists(_awkward, min_size=1, max_size=40, unique=True))
    def write_some(devices: list[str]) -> None:
        for dev in devices:
            i = len(expected) + len(refused)
            agg = _agg(i, device=dev, site=dev, window=dev)
            before = writer.stats.dead_lettered
            writer.write([agg])
            if writer.stats.dead_lettered > before:
                refused.append(dev)
            else:
                expected.setdefault(dev, set()).add(agg.mean)

    write_some()
    for i, dev in enumerate(fixed + bad):
        writer.write([_agg(10_000 + i, device=dev, site="s", window="w")])
    for i, dev in enumerate(fixed):
        expected.setdefault(dev, set()).add(float(10_000 + i))
    refused += bad
    # InfluxQL's JSON, not Flux: Flux answers in CSV, and the client's CSV reader
    # turns a "\r" inside a value into "\n", which is not the server's doing.
    rows = influxql(influx, bucket, 'SELECT mean, device_id, site, "window" FROM sensor_agg')
    got: dict[str, set[float]] = {}
    for _time, mean, device, site, window in rows:
        got.setdefault(device, set()).add(mean)
        if window != "w":
            assert site == window == device
    assert got == expected  # every value exactly, and nothing extra (no injected series)
    letters = read_topics(settings_.kafka, [dlq.topic], until=len(refused), timeout=30)
    reasons = [json.loads(v)["reason"] for _k, v in letters[dlq.topic]]
    assert reasons == ["unrepresentable_tag"] * len(refused)


def test_influxdb_down_mid_stream_every_point_arrives_once(
    settings_: Settings, influx: InfluxDBClient, bucket: str, stack: Stack, dlq: DeadLetterWriter
) -> None:
    s = settings_.model_copy(
        update={"sink": settings_.sink.model_copy(update={"retry_max_attempts": 0})}
    )
    writer = _writer(s, dlq)
    batches = [[_agg(b * 500 + i, device=f"dev-{i % 50}") for i in range(500)] for b in range(40)]
    done = threading.Event()
    progress: list[int] = []

    def run() -> None:
        for n, batch in enumerate(batches):
            writer.write(batch)
            progress.append(n)
            time.sleep(0.05)
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    while len(progress) < 5:
        time.sleep(0.05)
    service = stack.services["influxdb"]
    service.down()
    try:
        stopped_at = len(progress)
        time.sleep(3)
        assert len(progress) <= stopped_at + 1, "the writer did not hold back while down"
        assert not done.is_set()
    finally:
        service.up()
    assert done.wait(120), "writer did not finish after InfluxDB came back"
    thread.join()
    assert writer.stats.retries > 0
    assert writer.stats.dead_lettered == 0
    rows = influxql(influx, bucket, "SELECT count(mean) FROM sensor_agg")
    assert rows[0][1] == 40 * 500
    per_series = influxql(influx, bucket, "SELECT count(mean) FROM sensor_agg GROUP BY device_id")
    assert sum(int(r[1]) for r in per_series) == 20_000  # type: ignore[call-overload]


def test_rejected_points_are_dead_lettered_and_the_rest_written(
    settings_: Settings, influx: InfluxDBClient, bucket: str, dlq: DeadLetterWriter
) -> None:
    writer = _writer(settings_, dlq)
    good = [f"reading,device_id=d{i} value={i}.5 {T0 + i}" for i in range(200)]
    conflict = f"reading,device_id=bad value=7i {T0}"  # value is a float field
    broken = "reading,device_id=x value="  # not line protocol at all
    writer.write_lines([*good[:100], conflict, *good[100:150], broken, *good[150:]])
    assert writer.stats.dead_lettered == 2
    assert influxql(influx, bucket, "SELECT count(value) FROM reading")[0][1] == 200
    letters = read_topics(settings_.kafka, [dlq.topic], until=2, timeout=30)[dlq.topic]
    records = sorted((json.loads(v) for _k, v in letters), key=lambda r: r["payload"] != broken)
    assert [r["payload"] for r in records] == [broken, conflict]
    assert all(r["reason"] == "rejected_by_server" and r["sink"] == "influx" for r in records)
    assert "unable to parse" in records[0]["error"]
    assert "field type conflict" in records[1]["error"]
    assert records[0]["target"] == bucket


def test_gives_up_after_max_attempts_to_dead_letter(
    settings_: Settings, dlq: DeadLetterWriter
) -> None:
    s = settings_.model_copy(
        update={
            "influx": settings_.influx.model_copy(update={"url": "http://127.0.0.1:9"}),
            "sink": settings_.sink.model_copy(update={"retry_max_attempts": 3}),
        }
    )
    writer = InfluxWriter(s.influx, s.sink, dlq)
    writer.write([_agg(i) for i in range(5)])
    assert writer.stats.retries == 2
    assert writer.stats.batches_given_up == 1
    assert writer.stats.dead_lettered == 5
    letters = read_topics(s.kafka, [dlq.topic], until=5, timeout=30)[dlq.topic]
    assert {json.loads(v)["reason"] for _k, v in letters} == {"retries_exhausted"}


def test_missing_bucket_is_a_clear_error_at_start(settings_: Settings) -> None:
    s = settings_.model_copy(
        update={"influx": settings_.influx.model_copy(update={"bucket": "no-such-bucket"})}
    )
    with pytest.raises(ConfigError, match="IOTPIPE_INFLUX_BUCKET: bucket 'no-such-bucket'"):
        InfluxWriter(s.influx, s.sink).check()
    flow = Dataflow("missing-bucket")
    bw_output("influx", bw_input("in", flow, TestingSource([_agg(0)])), InfluxSink(s))
    with pytest.raises(Exception) as info:  # Bytewax wraps the cause
        run_main(flow)
    causes: list[BaseException] = []
    exc: BaseException | None = info.value
    while exc is not None:
        causes.append(exc)
        exc = exc.__cause__
    assert any(isinstance(c, ConfigError) and "no-such-bucket" in str(c) for c in causes)


def test_bytewax_sink_writes_batches_and_lists(
    settings_: Settings, influx: InfluxDBClient, bucket: str
) -> None:
    items: list[object] = [[_agg(i, device=f"d{j}") for j in range(10)] for i in range(20)]
    items += [_alert(i) for i in range(5)]
    flow = Dataflow("influx-sink")
    bw_output(
        "influx", bw_input("in", flow, TestingSource(items, batch_size=7)), InfluxSink(settings_)
    )
    run_main(flow)
    assert influxql(influx, bucket, "SELECT count(mean) FROM sensor_agg")[0][1] == 200
    assert influxql(influx, bucket, "SELECT count(score) FROM anomaly")[0][1] == 5


def test_v1_write_api(settings_: Settings, influx: InfluxDBClient, bucket: str) -> None:
    s = settings_.model_copy(
        update={"sink": settings_.sink.model_copy(update={"influx_api": "v1", "gzip": False})}
    )
    writer = _writer(s)
    writer.write([_agg(i) for i in range(10)])
    assert influxql(influx, bucket, "SELECT count(mean) FROM sensor_agg")[0][1] == 10
