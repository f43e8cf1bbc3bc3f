"""The dashboard's web app: static pages plus a small JSON API.

Pages are plain HTML + JS (uPlot vendored under ``static/vendor``), so the
server needs no build step and the browser no internet. Pages poll the API
every ``settings.dashboard.refresh_s``. Every API handler is ``async`` and
hands blocking work (Flux queries, the Kafka/Prometheus health snapshot) to
worker threads, so one slow query never stalls the others.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Protocol

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from dashboard import flux, shaping
from dashboard.access import allowed_hosts, install_access
from dashboard.store import BucketMissingError, FluxStore
from iotpipe import __version__
from iotpipe.catalogue import load_catalogue
from iotpipe.durations import format_duration
from iotpipe.errors import ConnectorError
from iotpipe.settings import Settings

STATIC = Path(__file__).parent / "static"
PAGES = {
    "/": "overview.html",
    "/alerts": "alerts.html",
    "/device": "device.html",
    "/pipeline": "pipeline.html",
}
RECENT_S = 300  # "devices reporting" looks this far back
SEARCH_RANGE_S = 7 * 86_400
HISTORY_POINTS = 360

RangeParam = Annotated[str, Query(pattern=r"^[0-9]+[mhd]$", description="15m, 1h, 6h, 24h, 7d")]
TextParam = Annotated[str | None, Query(max_length=128)]


class Collector(Protocol):
    """Pipeline health (``ops.health.HealthCollector``), handed in by whoever serves the app."""

    def collect(self, previous: Any) -> Any: ...  # a snapshot with ``to_dict()``
    def close(self) -> None: ...


class Health:
    """The pipeline-health snapshot, shared by every open page.

    One collector (one Kafka admin client, one HTTP pool) for the app's life;
    a snapshot younger than half the refresh period is reused, and the
    previous snapshot turns counters into rates.
    """

    def __init__(self, settings: Settings, collector: Callable[[Settings], Collector]) -> None:
        self.settings = settings
        self.make_collector = collector
        self.max_age_s = settings.dashboard.refresh_s / 2
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY_POINTS)
        self._lock = asyncio.Lock()
        self._collector: Collector | None = None
        self._previous: Any = None
        self._view: dict[str, Any] | None = None
        self._at = 0.0

    async def view(self) -> dict[str, Any]:
        async with self._lock:
            if self._view is None or time.monotonic() - self._at > self.max_age_s:
                self._view = await run_in_threadpool(self._collect)
                self._at = time.monotonic()
                self.history.append(shaping.rate_point(self._view))
            return {**self._view, "history": list(self.history)}

    def _collect(self) -> dict[str, Any]:
        if self._collector is None:  # a Kafka admin client: only when asked
            self._collector = self.make_collector(self.settings)
        snapshot = self._collector.collect(self._previous)
        self._previous = snapshot
        return shaping.pipeline_view(snapshot.to_dict())

    def close(self) -> None:
        if self._collector is not None:
            self._collector.close()


class Api:
    """The JSON endpoints; one instance per app, holding its store and health snapshot."""

    def __init__(self, settings: Settings, collector: Callable[[Settings], Collector]) -> None:
        self.settings = settings
        self.store = FluxStore(settings.influx, cache_s=min(2.0, settings.dashboard.refresh_s / 2))
        self.health = Health(settings, collector)
        self.windows_ms = sorted(settings.flow.window_lengths_ms())
        self.catalogue = load_catalogue(settings.core.sensors_file)
        self.bucket = settings.influx.bucket

    def span(self, range_name: str) -> flux.Span:
        try:
            range_s = flux.span_s(range_name)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        step_s, window = flux.pick_resolution(range_s, self.windows_ms)
        return flux.Span(range_s, step_s, format_duration(window))

    async def rows(self, query: str) -> list[dict[str, Any]]:
        try:
            return await self.store.rows(query)
        except BucketMissingError:
            return []  # nothing written yet: the pages show their empty state

    async def config(self) -> dict[str, Any]:
        return {
            "refresh_s": self.settings.dashboard.refresh_s,
            "ranges": list(flux.RANGES_S),
            "severities": list(flux.SEVERITIES),
            "sensor_types": sorted(self.catalogue.names),
            "windows": [format_duration(w) for w in self.windows_ms],
            "bucket": self.bucket,
            "version": __version__,
        }

    async def overview(self, range: RangeParam = "1h") -> dict[str, Any]:
        sp = self.span(range)
        recent_window = format_duration(self.windows_ms[0])
        rate_rows, device_rows, alert_rows, stat_rows = await asyncio.gather(
            self.rows(flux.throughput(self.bucket, sp, flux.SITE_AGG)),
            self.rows(flux.devices_reporting(self.bucket, recent_window, RECENT_S)),
            self.rows(flux.alert_counts(self.bucket, 3600)),
            self.rows(flux.type_stats_rollup(self.bucket, sp)),
        )
        source, stats_error = flux.SITE_AGG, None
        if not rate_rows and not stat_rows:
            # No roll-ups (flows run with IOTPIPE_FLOW_ROLLUP=false, or older data):
            # the same figures from the per-device aggregates, at a higher cost.
            # With thousands of devices the per-type query can outlast the InfluxDB
            # timeout; the other figures are still worth showing.
            source = flux.AGG
            rate_rows, (stat_rows, stats_error) = await asyncio.gather(
                self.rows(flux.throughput(self.bucket, sp)), self.device_type_stats(sp)
            )
        rate = shaping.throughput(rate_rows, sp.step_s)
        types = shaping.stats_by_type(stat_rows)
        return {
            "range": range,
            "step_s": sp.step_s,
            "window": sp.window,
            "source": source,
            "types_error": stats_error,
            "readings_per_s": rate,
            "devices_reporting": shaping.first_count(device_rows),
            "devices_recent_s": RECENT_S,
            "alerts_last_hour": shaping.alert_totals(alert_rows),
            "types": types,
            "empty": not rate["t"] and not types,
        }

    async def device_type_stats(self, sp: flux.Span) -> tuple[list[dict[str, Any]], str | None]:
        """Per-type stats from every device's aggregates, or why they are unavailable."""
        try:
            return await self.rows(flux.type_stats(self.bucket, sp)), None
        except ConnectorError as exc:
            return [], f"per-type charts unavailable: {exc}"

    async def alerts(
        self,
        range: RangeParam = "1h",
        severity: TextParam = None,
        detector: TextParam = None,
        sensor_type: TextParam = None,
        device: TextParam = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> dict[str, Any]:
        sp = self.span(range)
        try:
            filt = flux.AlertFilter(severity or None, detector or None, sensor_type or None, device)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        feed, detectors = await asyncio.gather(
            self.rows(flux.alerts(self.bucket, sp.range_s, filt, limit)),
            self.rows(flux.tag_values(self.bucket, "detector", flux.ANOMALY, SEARCH_RANGE_S)),
        )
        return {
            "range": range,
            "alerts": shaping.alert_rows(feed),
            "detectors": [str(r["_value"]) for r in detectors],
        }

    async def devices(
        self,
        prefix: Annotated[str, Query(max_length=64)] = "",
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> dict[str, Any]:
        found = await self.rows(flux.device_search(self.bucket, prefix, SEARCH_RANGE_S, limit + 1))
        ids = [str(r["_value"]) for r in found]
        return {"prefix": prefix, "devices": ids[:limit], "more": len(ids) > limit}

    async def device(
        self,
        id: Annotated[str, Query(min_length=1, max_length=128)],
        range: RangeParam = "1h",
    ) -> dict[str, Any]:
        sp = self.span(range)
        stat_rows, anomaly_rows = await asyncio.gather(
            self.rows(flux.type_stats(self.bucket, sp, device_id=id)),
            self.rows(flux.alerts(self.bucket, sp.range_s, flux.AlertFilter(device_id=id), 500)),
        )
        anomalies = shaping.alert_rows(anomaly_rows)
        by_type = shaping.stats_by_type(stat_rows)
        series = {
            t: shaping.with_anomalies(
                by_type.get(t, {}), [a for a in anomalies if a["sensor_type"] == t]
            )
            for t in sorted(set(by_type) | {str(a["sensor_type"]) for a in anomalies})
        }
        return {
            "device_id": id,
            "range": range,
            "step_s": sp.step_s,
            "window": sp.window,
            "series": series,
            "anomalies": anomalies,
            "empty": not series,
        }

    async def pipeline(self) -> dict[str, Any]:
        return await self.health.view()

    async def close(self) -> None:
        self.store.close()
        await run_in_threadpool(self.health.close)


def create_app(settings: Settings, collector: Callable[[Settings], Collector]) -> FastAPI:
    """The dashboard for ``settings`` (InfluxDB bucket, Kafka, metrics ports).

    ``collector`` builds the pipeline-health collector on first use: the
    application that serves the dashboard wires it in, so the dashboard
    imports no application above it. Every page and API call needs the
    token (``app.state.token``: the configured one, else a fresh one).
    """
    api = Api(settings, collector)
    web = settings.dashboard
    token = web.token.get_secret_value() if web.token else secrets.token_urlsafe(24)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await api.close()

    # No /docs or /redoc: FastAPI serves them with assets from a CDN. The schema
    # stays at /openapi.json.
    app = FastAPI(
        title="iotpipe dashboard",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.api = api
    app.state.token = token
    install_access(app, token, allowed_hosts(web.host, web.allowed_hosts))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for route, page in PAGES.items():
        app.add_api_route(route, _page(page), include_in_schema=False)
    for name in ("config", "overview", "alerts", "devices", "device", "pipeline"):
        app.add_api_route(f"/api/{name}", getattr(api, name), methods=["GET"])
    app.add_exception_handler(ConnectorError, _connector_error)  # type: ignore[arg-type]
    return app


async def _connector_error(_request: Request, exc: ConnectorError) -> JSONResponse:
    """InfluxDB (or Kafka) unreachable: 503 with the reason; pages show it and retry."""
    return JSONResponse({"detail": str(exc)}, status_code=503)


def _page(name: str) -> Any:
    path = STATIC / name

    async def page() -> FileResponse:
        return FileResponse(path, media_type="text/html")

    return page
