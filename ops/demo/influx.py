"""InfluxDB for the demo: how many readings the flows aggregated in this run."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from influxdb_client.client.influxdb_client import InfluxDBClient

from iotpipe.errors import ConnectorError
from iotpipe.schema import SENSOR_AGG
from iotpipe.settings import InfluxSettings


def aggregated_readings(
    influx: InfluxSettings, window: str, device_prefix: str, start_ms: int, stop_ms: int
) -> int:
    """Sum of ``count`` over ``sensor_agg`` points of one window length for this run's devices.

    Every reading falls in exactly one window of each length, so with the
    shortest window this is the number of readings the flows aggregated.
    """
    start = datetime.fromtimestamp(start_ms / 1000, UTC).isoformat()
    stop = datetime.fromtimestamp(stop_ms / 1000, UTC).isoformat()
    query = f"""
from(bucket: "{influx.bucket}")
  |> range(start: {start}, stop: {stop})
  |> filter(fn: (r) => r._measurement == "{SENSOR_AGG}" and r._field == "count")
  |> filter(fn: (r) => r.window == "{window}")
  |> filter(fn: (r) => r.device_id =~ /^{re.escape(device_prefix)}/)
  |> group()
  |> sum()
"""
    try:
        with InfluxDBClient(
            url=influx.url,
            token=influx.token.get_secret_value(),
            org=influx.org,
            timeout=influx.timeout_ms,
        ) as client:
            tables = client.query_api().query(query)
    except Exception as exc:  # influxdb-client raises many types; translate at the boundary
        raise ConnectorError(f"InfluxDB at {influx.url}: {exc}") from exc
    return int(sum(float(rec.get_value() or 0) for t in tables for rec in t.records))
