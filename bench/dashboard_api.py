"""How long the dashboard's API takes on a large fleet: ``python -m bench.dashboard_api``.

Writes ``--devices`` devices' aggregates (10 s and 1 m windows over
``--minutes``, through the project's own line protocol and InfluxDB writer),
their per-site roll-ups (``site_agg``, as the flows write them) and a few
anomalies into a scratch bucket, then calls every API endpoint in-process (the
real app, the real InfluxDB) and prints the median and worst latency of each.
The scratch bucket is deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import httpx
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.domain.bucket_retention_rules import BucketRetentionRules

from dashboard import create_app, flux
from dashboard.app import Collector
from iotpipe.errors import ConnectorError
from iotpipe.model import Aggregate, Alert, SiteAggregate
from iotpipe.settings import Settings, load_settings
from sinks.influx import InfluxWriter

TYPES = ("temperature", "humidity", "co2")
ENDPOINTS = (
    "/api/overview?range=15m",
    "/api/overview?range=1h",
    "/api/overview?range=24h",
    "/api/alerts?range=1h",
    "/api/alerts?range=1h&severity=critical",
    "/api/devices?prefix=dev-0001",
    "/api/devices?prefix=dev-",
    "/api/device?id=dev-000042&range=1h",
    "/api/device?id=dev-000042&range=24h",
)


def write_fleet(settings: Settings, devices: int, minutes: int) -> int:
    """Aggregates for every device and window, ending now; returns the points written."""
    writer = InfluxWriter(settings.influx, settings.sink)
    end = int(time.time()) // 60 * 60_000
    start = end - minutes * 60_000
    written = 0
    for length, label in ((10_000, "10s"), (60_000, "1m")):
        for t in range(start, end, length):
            batch = [
                Aggregate(
                    device_id=f"dev-{d:06d}",
                    sensor_type=TYPES[d % len(TYPES)],
                    site=f"site-{d % 50:03d}",
                    window=label,
                    start=t,
                    end=t + length,
                    count=length // 10_000,
                    mean=20.0 + d % 7,
                    min=19.0 + d % 7,
                    max=21.0 + d % 7,
                    std=0.5,
                    last=20.0,
                )
                for d in range(devices)
            ]
            writer.write(batch)
            written += len(batch)
            rollups = site_rollups(batch)
            writer.write(rollups)
            written += len(rollups)
    alerts = [
        Alert(
            alert_id=f"bench-{i}",
            device_id=f"dev-{i * 97 % devices:06d}",
            sensor_type="temperature",
            site="site-000",
            detector="threshold",
            severity="critical" if i % 3 == 0 else "warning",
            ts=end - i * 7_000,
            value=80.0,
            score=20.0,
            threshold=60.0,
            message="bench",
        )
        for i in range(500)
    ]
    writer.write(alerts)
    writer.close()
    return written + len(alerts)


def site_rollups(batch: list[Aggregate]) -> list[SiteAggregate]:
    """What the flows' roll-up stage writes for one window of these aggregates."""
    groups: dict[tuple[str, str], list[Aggregate]] = {}
    for a in batch:
        groups.setdefault((a.site, a.sensor_type), []).append(a)
    out = []
    for (site, sensor_type), aggs in groups.items():
        count = sum(a.count for a in aggs)
        out.append(
            SiteAggregate(
                site=site,
                sensor_type=sensor_type,
                window=aggs[0].window,
                start=aggs[0].start,
                end=aggs[0].end,
                devices=len(aggs),
                count=count,
                mean=sum(a.mean * a.count for a in aggs) / count,
                min=min(a.min for a in aggs),
                max=max(a.max for a in aggs),
                std=0.5,
                last=aggs[-1].last,
            )
        )
    return out


def _no_health(_settings: Settings) -> Collector:
    """The bench times the InfluxDB-backed endpoints; /api/pipeline is not among them."""
    raise RuntimeError("the dashboard bench does not collect pipeline health")


async def time_endpoints(settings: Settings, rounds: int) -> list[tuple[str, float, float, int]]:
    """(endpoint, median ms, worst ms, response bytes); cache off so every call queries."""
    app = create_app(settings, _no_health)
    app.state.api.store.cache_s = 0.0
    out = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://127.0.0.1",
        headers={"Authorization": f"Bearer {app.state.token}"},
    ) as client:
        for url in ENDPOINTS:
            took = []
            size = 0
            for _ in range(rounds):
                started = time.perf_counter()
                resp = await client.get(url, timeout=120)
                took.append((time.perf_counter() - started) * 1000)
                resp.raise_for_status()
                size = len(resp.content)
            out.append((url, statistics.median(took), max(took), size))
    return out


def time_overview_queries(settings: Settings, rounds: int) -> None:
    """Print the median time of each query behind ``/api/overview?range=1h``."""
    api = create_app(settings, _no_health).state.api
    span = api.span("1h")
    bucket = settings.influx.bucket
    queries = {
        "readings/s (site_agg)": flux.throughput(bucket, span, flux.SITE_AGG),
        "type stats (site_agg)": flux.type_stats_rollup(bucket, span),
        "devices reporting (sensor_agg last)": flux.devices_reporting(bucket, "10s", 300),
        "alert counts": flux.alert_counts(bucket, 3600),
        "readings/s (sensor_agg fallback)": flux.throughput(bucket, span),
        "type stats (sensor_agg fallback)": flux.type_stats(bucket, span),
    }
    print(f"\n{'query behind /api/overview?range=1h':45} {'median ms':>10} {'rows':>10}")
    for name, query in queries.items():
        took = []
        try:
            for _ in range(rounds):
                started = time.perf_counter()
                rows = api.store.rows_sync(query)
                took.append((time.perf_counter() - started) * 1000)
        except ConnectorError as exc:
            print(f"{name:45} failed: {exc}")
            continue
        print(f"{name:45} {statistics.median(took):10.0f} {len(rows):10,}")
    api.store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=5000)
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    base = load_settings()
    name = f"dash-bench-{uuid.uuid4().hex[:8]}"
    settings = base.model_copy(update={"influx": base.influx.model_copy(update={"bucket": name})})
    s = settings.influx
    with InfluxDBClient(url=s.url, token=s.token.get_secret_value(), org=s.org) as client:
        bucket = client.buckets_api().create_bucket(
            bucket_name=name,
            org=s.org,
            retention_rules=BucketRetentionRules(type="expire", every_seconds=0),  # type: ignore[no-untyped-call]
        )
        try:
            started = time.perf_counter()
            points = write_fleet(settings, args.devices, args.minutes)
            wrote_s = time.perf_counter() - started
            print(
                f"{args.devices} devices, {args.minutes} min: {points:,} points in {wrote_s:.1f}s"
            )
            rows = asyncio.run(time_endpoints(settings, args.rounds))
            print(f"{'endpoint':45} {'median ms':>10} {'worst ms':>10} {'bytes':>9}")
            for url, median, worst, size in rows:
                print(f"{url:45} {median:10.0f} {worst:10.0f} {size:9,}")
            time_overview_queries(settings, args.rounds)
        finally:
            client.buckets_api().delete_bucket(bucket)


if __name__ == "__main__":
    main()
