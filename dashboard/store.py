"""Runs the dashboard's Flux queries without ever blocking the web server.

influxdb-client's query API is synchronous, so each query runs in a worker
thread (Starlette's threadpool); the event loop keeps serving other requests
while a slow query waits. At most ``max_concurrent`` queries run at once, and
identical queries within ``cache_s`` share one answer, so many open browser
tabs cost InfluxDB no more than one. InfluxDB's own load from us is bounded by
the queries themselves (see ``flux``), and the writes of the pipeline never
go through this process.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from typing import Any

from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.rest import ApiException
from starlette.concurrency import run_in_threadpool
from urllib3.exceptions import HTTPError

from iotpipe.errors import ConnectorError
from iotpipe.settings import InfluxSettings

log = logging.getLogger(__name__)

Row = dict[str, Any]


class BucketMissingError(ConnectorError):
    """The bucket does not exist (yet): pages show their empty state."""


def to_ms(value: object) -> object:
    """Datetimes from Flux as epoch milliseconds (JSON- and chart-friendly)."""
    if isinstance(value, dt.datetime):
        return int(value.timestamp() * 1000)
    return value


class FluxStore:
    """Flux in, rows out (plain dicts, times in epoch ms)."""

    def __init__(
        self, influx: InfluxSettings, *, cache_s: float = 2.0, max_concurrent: int = 4
    ) -> None:
        self.influx = influx
        self.bucket = influx.bucket
        self.cache_s = cache_s
        self._client = InfluxDBClient(
            url=influx.url,
            token=influx.token.get_secret_value(),
            org=influx.org,
            timeout=influx.timeout_ms,
        )
        self._query_api = self._client.query_api()
        self._cache: dict[str, tuple[float, list[Row]]] = {}
        self._limit = asyncio.Semaphore(max_concurrent)
        self.queries_run = 0

    async def rows(self, flux: str) -> list[Row]:
        """The query's records as dicts; cached for ``cache_s``."""
        hit = self._cache.get(flux)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        async with self._limit:
            rows = await run_in_threadpool(self.rows_sync, flux)
        if len(self._cache) > 512:
            self._cache.clear()
        self._cache[flux] = (time.monotonic() + self.cache_s, rows)
        return rows

    def rows_sync(self, flux: str) -> list[Row]:
        """Blocking query (runs in a worker thread)."""
        started = time.perf_counter()
        try:
            tables = self._query_api.query(flux, org=self.influx.org)
        except ApiException as exc:
            if exc.status == 404:
                raise BucketMissingError(f"InfluxDB: {_reason(exc)}") from exc
            raise ConnectorError(f"InfluxDB query failed ({exc.status}): {_reason(exc)}") from exc
        except (HTTPError, OSError) as exc:
            raise ConnectorError(f"InfluxDB at {self.influx.url}: {exc}", retryable=True) from exc
        self.queries_run += 1
        rows = [
            {k: to_ms(v) for k, v in rec.values.items() if k not in {"result", "table"}}
            for table in tables
            for rec in table.records
        ]
        log.debug("query %.3fs, %d rows", time.perf_counter() - started, len(rows))
        return rows

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


def _reason(exc: ApiException) -> str:
    body = exc.body.decode() if isinstance(exc.body, bytes) else str(exc.body or exc.reason)
    return body[:300]
