"""The dashboard app's event loop stays free while InfluxDB is slow (no server needed).

``FluxStore.rows_sync`` is the one blocking call; here it is replaced by a
stand-in that sleeps, the way a slow InfluxDB would hold the calling thread.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from dashboard import create_app
from iotpipe.errors import ConnectorError
from iotpipe.settings import load_settings
from ops.health import HealthCollector

SLOW_S = 0.8


def _slow_app() -> tuple[Any, list[str]]:
    app = create_app(load_settings(), HealthCollector)
    seen: list[str] = []

    def slow_rows(flux: str) -> list[dict[str, Any]]:
        seen.append(flux)
        time.sleep(SLOW_S)
        return []

    app.state.api.store.rows_sync = slow_rows
    return app, seen


async def _timed(client: httpx.AsyncClient, url: str) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    resp = await client.get(url)
    return time.perf_counter() - started, resp


def test_slow_queries_do_not_block_other_requests() -> None:
    app, seen = _slow_app()

    async def scenario() -> dict[str, tuple[float, httpx.Response]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://127.0.0.1",
            headers={"Authorization": f"Bearer {app.state.token}"},
        ) as client:
            slow = asyncio.create_task(_timed(client, "/api/overview?range=1h"))
            await asyncio.sleep(0.1)  # the overview's queries are now in flight
            fast = await _timed(client, "/api/config")
            page = await _timed(client, "/")
            return {"slow": await slow, "fast": fast, "page": page}

    results = asyncio.run(scenario())
    slow_s, slow = results["slow"]
    assert slow.status_code == 200 and slow.json()["empty"] is True
    # throughput, devices, alert counts and type stats from the roll-ups; they are
    # empty, so throughput and type stats again from the per-device aggregates.
    assert len(seen) == 6
    assert sum("site_agg" in q for q in seen[:4]) == 2
    assert all("sensor_agg" in q for q in seen[4:])
    # Two rounds of queries side by side in worker threads, not six one after another ...
    assert 2 * SLOW_S <= slow_s < 3 * SLOW_S
    # ... and meanwhile the server answered other requests at once.
    for name in ("fast", "page"):
        took, resp = results[name]
        assert resp.status_code == 200
        assert took < SLOW_S / 2, (name, took)


def test_identical_queries_within_the_cache_window_run_once() -> None:
    app, seen = _slow_app()

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://127.0.0.1",
            headers={"Authorization": f"Bearer {app.state.token}"},
        ) as client:
            for _ in range(3):
                resp = await client.get("/api/devices?prefix=dev-1")
                assert resp.status_code == 200
                assert resp.json() == {"prefix": "dev-1", "devices": [], "more": False}

    asyncio.run(scenario())
    assert len(seen) == 1


def test_overview_survives_a_timed_out_fallback_query() -> None:
    """No roll-ups, and the per-device type stats time out: the rest is still shown."""
    app = create_app(load_settings(), HealthCollector)

    def rows(flux: str) -> list[dict[str, Any]]:
        if "mean_ = " in flux:  # the per-device type stats: the expensive one
            raise ConnectorError("InfluxDB: Read timed out", retryable=True)
        if "distinct(" in flux:
            return [{"_value": 5000}]
        return []

    app.state.api.store.rows_sync = rows

    async def scenario() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://127.0.0.1",
            headers={"Authorization": f"Bearer {app.state.token}"},
        ) as client:
            return await client.get("/api/overview?range=1h")

    resp = asyncio.run(scenario())
    assert resp.status_code == 200
    body = resp.json()
    assert body["source"] == "sensor_agg"
    assert body["devices_reporting"] == 5000
    assert body["types"] == {}
    assert "timed out" in body["types_error"]
