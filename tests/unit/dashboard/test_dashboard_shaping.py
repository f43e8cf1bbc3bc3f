"""Dashboard JSON shaping and the app's static parts (no servers needed)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx

from dashboard import create_app, shaping
from dashboard.app import STATIC
from iotpipe.settings import load_settings
from ops.health import HealthCollector


def test_throughput_is_per_second_and_time_ordered() -> None:
    rows = [{"_time": 2000, "_value": 300.0}, {"_time": 1000, "_value": 150}, {"_time": 3000}]
    assert shaping.throughput(rows, 15) == {"t": [1000, 2000], "v": [10.0, 20.0]}


def test_stats_by_type_aligns_fields_on_one_axis() -> None:
    rows = [
        {"sensor_type": "gas", "_field": "mean", "_time": 10, "_value": 2.0},
        {"sensor_type": "gas", "_field": "max", "_time": 10, "_value": 3.0},
        {"sensor_type": "gas", "_field": "min", "_time": 20, "_value": 1.0},
        {"sensor_type": "co2", "_field": "mean", "_time": 10, "_value": 400},
        {"sensor_type": "co2", "_field": "count", "_time": 10, "_value": 9},
    ]
    out = shaping.stats_by_type(rows)
    assert list(out) == ["co2", "gas"]
    assert out["gas"] == {
        "t": [10, 20],
        "mean": [2.0, None],
        "min": [None, 1.0],
        "max": [3.0, None],
    }
    assert out["co2"] == {"t": [10], "mean": [400.0], "min": [None], "max": [None]}


def test_rollup_mean_is_weighted_by_readings() -> None:
    rows = [
        {"sensor_type": "gas", "_field": "wsum", "_time": 10, "_value": 3 * 2.0 + 1 * 6.0},
        {"sensor_type": "gas", "_field": "n", "_time": 10, "_value": 4.0},
        {"sensor_type": "gas", "_field": "min", "_time": 10, "_value": 1.0},
        {"sensor_type": "gas", "_field": "max", "_time": 10, "_value": 9.0},
        {"sensor_type": "gas", "_field": "n", "_time": 20, "_value": 0.0},
    ]
    out = shaping.stats_by_type(rows)["gas"]
    assert out == {"t": [10, 20], "mean": [3.0, None], "min": [1.0, None], "max": [9.0, None]}


def test_alert_rows_newest_first_with_stable_keys() -> None:
    rows = [
        {"_time": 1, "device_id": "d1", "detector": "threshold", "severity": "warning", "value": 5},
        {"_time": 9, "device_id": "d2", "detector": "stuck", "severity": "info", "message": "m"},
        {"_time": 12, "device_id": "d2", "detector": "stuck", "state": "cleared"},
    ]
    items = shaping.alert_rows(rows)
    assert [i["ts"] for i in items] == [12, 9, 1]
    assert items[0]["key"] == "d2|stuck|12|cleared" and items[0]["state"] == "cleared"
    items = items[1:]
    assert items[0]["key"] == "d2|stuck|9"  # written before states were stored
    assert items[0]["message"] == "m"
    assert items[1]["value"] == 5
    assert items[1]["message"] is None


def test_anomalies_are_merged_into_the_axis() -> None:
    stats = {"t": [0, 10_000], "mean": [1.0, 2.0], "min": [0.5, 1.5], "max": [1.5, 2.5]}
    out = shaping.with_anomalies(stats, [{"ts": 4_000, "value": 99.0}, {"ts": 10_000, "value": 7}])
    assert out["t"] == [0, 4_000, 10_000]
    assert out["mean"] == [1.0, None, 2.0]
    assert out["anomaly"] == [None, 99.0, 7.0]
    only = shaping.with_anomalies({}, [{"ts": 5, "value": 1.0}])
    assert only == {"t": [5], "mean": [None], "min": [None], "max": [None], "anomaly": [1.0]}


def test_counts_and_empty_results() -> None:
    assert shaping.first_count([]) == 0
    assert shaping.first_count([{"_value": 42}]) == 42
    totals = shaping.alert_totals(
        [{"severity": "critical", "_value": 2}, {"severity": "info", "_value": 5}]
    )
    assert totals == {"total": 7, "by_severity": {"critical": 2, "info": 5}}


def test_pipeline_view_sums_flow_counters_over_labels() -> None:
    sample = lambda name, value, **labels: {"name": name, "labels": labels, "value": value}  # noqa: E731
    health = {
        "at_ms": 5,
        "components": [
            {
                "name": "flow-normal",
                "kind": "flow",
                "state": "up",
                "rates": {"readings": 12.5},
                "samples": [
                    sample("iotpipe_sink_retries_total", 2, flow="normal"),
                    sample("iotpipe_flow_alerts_total", 3, detector="threshold", state="raised"),
                    sample("iotpipe_flow_alerts_total", 4, detector="stuck", state="raised"),
                ],
            },
            {"name": "ingest", "kind": "ingest", "state": "down", "rates": {}, "samples": []},
        ],
        "lag": [{"group": "g", "topic": "t", "partition": 0, "committed": 1, "end": 4, "lag": 3}],
    }
    view = shaping.pipeline_view(health)
    flow, ingest = view["components"]
    assert flow["totals"]["sink_retries"] == 2
    assert flow["totals"]["alerts"] == 7
    assert "totals" not in ingest
    assert view["lag"][0]["lag"] == 3
    assert shaping.rate_point(view) == {"t": 5, "flow-normal": 12.5, "ingest": None}


def test_pages_are_served_and_need_no_internet() -> None:
    app = create_app(load_settings(), HealthCollector)

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://127.0.0.1",
            headers={"Authorization": f"Bearer {app.state.token}"},
        ) as client:
            for path in ("/", "/alerts", "/device", "/pipeline"):
                resp = await client.get(path)
                assert resp.status_code == 200, path
                assert "<nav>" in resp.text
                for src in re.findall(r'(?:src|href)="([^"]+)"', resp.text):
                    assert src.startswith(("/", "data:")), f"{path} loads {src} from elsewhere"
                    if src.startswith("/static/"):
                        assert (await client.get(src)).status_code == 200, src
            config = (await client.get("/api/config")).json()
            assert config["ranges"] == ["15m", "1h", "6h", "24h", "7d"]
            assert (await client.get("/api/overview?range=2y")).status_code == 422
            assert (await client.get("/docs")).status_code == 404  # Swagger UI needs a CDN
            assert "/api/device" in (await client.get("/openapi.json")).json()["paths"]

    asyncio.run(scenario())


def test_no_cdn_anywhere_in_the_static_files() -> None:
    for path in Path(STATIC).rglob("*"):
        if path.suffix in {".html", ".js", ".css"} and "vendor" not in path.parts:
            text = path.read_text()
            assert not re.search(r"https?://", text), f"{path} refers to a remote URL"
    vendor = Path(STATIC) / "vendor"
    assert (vendor / "uPlot.iife.min.js").stat().st_size > 40_000
    assert "MIT" in (vendor / "uPlot.LICENSE").read_text()
    assert "1.6.32" in (vendor / "README.md").read_text()
