"""InfluxDB sink throughput: points/s per batch size, and Python cost per point.

Run against the local stack (``iotpipe stack up``)::

    python -m bench.sink_influx [--points 200000] [--devices 20000]

Writes into a fresh bucket (deleted afterwards) and prints a table; the JSON
goes to ``bench/results/sink_influx.json``. Line building is compared with
influxdb-client ``Point`` objects in the same run, as the baseline.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import uuid
from pathlib import Path
from typing import Any

import urllib3
from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision

from iotpipe.model import Aggregate
from iotpipe.schema import SENSOR_AGG
from iotpipe.settings import InfluxSettings, SinkSettings, load_settings
from sinks import lineprotocol
from sinks.influx import InfluxWriter

RESULTS = Path(__file__).parent / "results" / "sink_influx.json"
T0 = 1_764_400_000_000


def make_aggregates(n: int, devices: int, offset: int = 0) -> list[Aggregate]:
    return [
        Aggregate(
            device_id=f"dev-{i % devices:06d}",
            sensor_type="temperature",
            site=f"plant-{i % 7}",
            window="1m",
            start=T0 + 60_000 * (offset + i // devices),
            end=T0 + 60_000 * (offset + i // devices + 1),
            count=12,
            mean=20.0 + (i % 97) / 10,
            min=19.5,
            max=23.25,
            std=0.75,
            last=21.0,
        )
        for i in range(n)
    ]


def via_points(aggs: list[Aggregate]) -> list[str]:
    """The baseline: one influxdb-client Point per aggregate."""
    point: Any = Point  # influxdb-client is untyped
    return [
        point(SENSOR_AGG.name)
        .tag("device_id", a.device_id)
        .tag("sensor_type", a.sensor_type)
        .tag("site", a.site)
        .tag("window", a.window)
        .field("count", a.count)
        .field("mean", a.mean)
        .field("min", a.min)
        .field("max", a.max)
        .field("std", a.std)
        .field("last", a.last)
        .time(a.start, WritePrecision.MS)
        .to_line_protocol()
        for a in aggs
    ]


def timed(fn: Any, *args: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def bucket_api(influx: InfluxSettings, method: str, path: str, body: Any = None) -> Any:
    resp = urllib3.request(
        method,
        f"{influx.url}{path}",
        json=body,
        headers={"Authorization": f"Token {influx.token.get_secret_value()}"},
    )
    if resp.status >= 300:
        raise SystemExit(f"InfluxDB {method} {path}: HTTP {resp.status} {resp.data[:200]!r}")
    return resp.json() if resp.data else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200_000, help="points per measurement")
    parser.add_argument("--devices", type=int, default=20_000)
    args = parser.parse_args()
    settings = load_settings()
    influx = settings.influx
    org_id = bucket_api(influx, "GET", f"/api/v2/orgs?org={influx.org}")["orgs"][0]["id"]
    name = f"bench-{uuid.uuid4().hex[:8]}"
    bucket = bucket_api(influx, "POST", "/api/v2/buckets", {"orgID": org_id, "name": name})
    try:
        result = run(settings.influx, settings.sink, name, args.points, args.devices)
    finally:
        bucket_api(influx, "DELETE", f"/api/v2/buckets/{bucket['id']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {RESULTS}")


def run(
    influx: InfluxSettings, sink: SinkSettings, bucket: str, n: int, devices: int
) -> dict[str, Any]:
    aggs = make_aggregates(n, devices)
    lineprotocol._agg_series.cache_clear()
    cold_s, built = timed(lineprotocol.aggregate_lines, aggs)
    warm_s, _ = timed(lineprotocol.aggregate_lines, aggs)
    base_n = min(n, 50_000)
    point_s, point_lines = timed(via_points, aggs[:base_n])
    assert len(point_lines) == base_n
    build = {
        "lines_us_per_point_cold_cache": cold_s / n * 1e6,
        "lines_us_per_point_warm_cache": warm_s / n * 1e6,
        "point_objects_us_per_point": point_s / base_n * 1e6,
        "speedup_vs_point_warm": (point_s / base_n) / (warm_s / n),
        "speedup_vs_point_cold": (point_s / base_n) / (cold_s / n),
    }
    print(f"line protocol for {n:,} aggregates ({devices:,} devices), Python side per point:")
    print(
        f"  sinks.lineprotocol, cold series cache  {build['lines_us_per_point_cold_cache']:6.2f} us"
    )
    print(
        f"  sinks.lineprotocol, warm series cache  {build['lines_us_per_point_warm_cache']:6.2f} us"
    )
    print(f"  influxdb-client Point (baseline)       {build['point_objects_us_per_point']:6.2f} us")
    print(
        f"  ratio Point / ours: {build['speedup_vs_point_warm']:.1f}x warm, "
        f"{build['speedup_vs_point_cold']:.1f}x cold"
    )
    writes = []
    print(
        f"\n{'batch':>7} {'gzip':>5} {'write pts/s':>12} {'build+write pts/s':>18} {'requests':>9}"
    )
    offset = 1000
    for gzip_on in (True, False):
        for batch in (1_000, 5_000, 10_000):
            conf = sink.model_copy(update={"batch_size": batch, "gzip": gzip_on})
            writer = InfluxWriter(influx, conf, bucket=bucket)
            writer.check()
            offset += n // devices + 1
            lines = lineprotocol.aggregate_lines(make_aggregates(n, devices, offset)).lines
            write_s, _ = timed(writer.write_lines, lines)
            offset += n // devices + 1
            fresh = make_aggregates(n, devices, offset)
            e2e_s, _ = timed(writer.write, fresh)
            row = {
                "batch_size": batch,
                "gzip": gzip_on,
                "write_points_per_s": n / write_s,
                "build_and_write_points_per_s": n / e2e_s,
                "requests": writer.stats.requests,
            }
            writes.append(row)
            writer.close()
            print(
                f"{batch:>7,} {gzip_on!s:>5} {row['write_points_per_s']:>12,.0f}"
                f" {row['build_and_write_points_per_s']:>18,.0f} {row['requests']:>9}"
            )
    assert len(built.lines) == n
    return {
        "points": n,
        "devices": devices,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "build": build,
        "writes": writes,
        "note": "local InfluxDB 2.7.12 on the same machine; gzip level "
        f"{sink.gzip_level}; writes of measurement sensor_agg (6 fields, 4 tags)",
    }


if __name__ == "__main__":
    main()
