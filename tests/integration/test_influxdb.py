"""Real InfluxDB (v2 API): write, query back, overwrite semantics, curl interop."""

from __future__ import annotations

import subprocess

from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS

from ops.stack import Stack


def query_rows(influx: InfluxDBClient, bucket: str, measurement: str) -> list[dict[str, object]]:
    flux = f'''
        from(bucket: "{bucket}")
          |> range(start: 0)
          |> filter(fn: (r) => r._measurement == "{measurement}")
    '''
    tables = influx.query_api().query(flux)
    return [rec.values for table in tables for rec in table.records]


def test_configured_bucket_exists(influx: InfluxDBClient, stack: Stack) -> None:
    assert influx.buckets_api().find_bucket_by_name(stack.settings.influx.bucket) is not None


def test_write_and_query_back_awkward_tags(influx: InfluxDBClient, bucket: str) -> None:
    # A *trailing* backslash does not survive influxdb-client's Point escaping
    # (it escapes the separator after it); the sinks issue owns that case.
    awkward = ["dev,1 =x", 'quote"d', "back\\slash", "ünïcode-温度", "x=1,y=2 z"]
    points = [
        Point("sensor_agg")
        .tag("device_id", dev)
        .tag("sensor_type", "temperature")
        .field("mean", float(i) + 0.5)
        .field("count", 3)
        .time(1_764_400_000_000 + i, WritePrecision.MS)
        for i, dev in enumerate(awkward)
    ]
    influx.write_api(write_options=SYNCHRONOUS).write(bucket=bucket, record=points)
    rows = query_rows(influx, bucket, "sensor_agg")
    means = {r["device_id"]: r["_value"] for r in rows if r["_field"] == "mean"}
    assert means == {dev: float(i) + 0.5 for i, dev in enumerate(awkward)}


def test_same_series_and_time_overwrites(influx: InfluxDBClient, bucket: str) -> None:
    """The property the idempotent sinks rely on: a replay replaces, never duplicates."""
    write = influx.write_api(write_options=SYNCHRONOUS)
    for value in (1.0, 2.0, 3.0):
        write.write(bucket=bucket, record=f"anomaly,device_id=d1 value={value} 1764400000000000000")
    rows = query_rows(influx, bucket, "anomaly")
    assert [r["_value"] for r in rows] == [3.0]


def test_curl_line_protocol_interop(influx: InfluxDBClient, bucket: str, stack: Stack) -> None:
    """A plain HTTP client speaking line protocol is read back by influxdb-client."""
    s = stack.settings.influx
    subprocess.run(
        [
            "curl",
            "-sf",
            "-XPOST",
            f"{s.url}/api/v2/write?org={s.org}&bucket={bucket}&precision=ms",
            "-H",
            f"Authorization: Token {s.token.get_secret_value()}",
            "--data-binary",
            "reading,device_id=curl-dev,site=plant-a value=42.5,seq=7i 1764400000000",
        ],
        check=True,
        timeout=30,
    )
    rows = query_rows(influx, bucket, "reading")
    assert {(r["_field"], r["_value"]) for r in rows} == {("value", 42.5), ("seq", 7)}
