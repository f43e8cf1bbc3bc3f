"""The dashboard in a real browser (Debian's Chromium, headless, via Playwright).

Against a running pipeline: demo readings from the project's simulator go to
Kafka, a real ``iotpipe flow run`` subprocess (own topic prefix, own bucket,
own metrics port) aggregates them into InfluxDB and detects anomalies, and
the dashboard (uvicorn in a thread) serves the pages. One device ("hot-...")
gets a temperature far above the catalogue's critical bound, so the threshold
detector raises an alert we know about; a second one is injected while the
alert page is open, to see it arrive without a reload. Screenshots go to
``test-artifacts/dashboard/``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from confluent_kafka import Producer
from influxdb_client import BucketRetentionRules, InfluxDBClient
from playwright.sync_api import ConsoleMessage, Page, sync_playwright
from pydantic import SecretStr

from dashboard import create_app, flux, shaping
from dashboard.store import FluxStore
from iotpipe.catalogue import load_catalogue
from iotpipe.codec import decode_reading, encode
from iotpipe.connectors.kafka import delete_topics, ensure_topics
from iotpipe.credentials import load_local_credentials
from iotpipe.model import Reading
from iotpipe.settings import Settings
from iotpipe.topics import KafkaTopics
from ops.health import HealthCollector
from ops.stack import Stack
from simulators.generate import generate_payloads
from tests.integration.pipeline import free_port

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
TYPES = ("temperature", "humidity", "co2")  # normal-priority types: one flow serves them
DEVICES = 60
SPAN_S = 20 * 60
HOT = "hot-0001"  # the device with the known anomaly
HOT_VALUE = 95.5  # temperature critical bound is 60
LIVE = "hot-0002"  # injected while the alert page is open


@dataclass
class Served:
    server: uvicorn.Server
    thread: threading.Thread
    token: str

    def login(self, page: Page, url: str) -> None:
        """What a user does with the URL `iotpipe dashboard` prints."""
        page.goto(f"{url}/login?token={self.token}")


def serve(settings: Settings) -> tuple[Served, str]:
    """The dashboard for ``settings`` in a background thread on a free port.

    With the read-only InfluxDB token, as `iotpipe dashboard` runs it.
    """
    port = free_port()
    local = load_local_credentials(settings.core.state_dir)
    assert local is not None and local.influx_read_token, "the stack made no read-only token"
    read_only = settings.influx.model_copy(update={"token": SecretStr(local.influx_read_token)})
    settings = settings.model_copy(update={"influx": read_only})
    app = create_app(settings, HealthCollector)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "dashboard did not start"
    return Served(server, thread, app.state.token), f"http://127.0.0.1:{port}"


def stop(served: Served) -> None:
    served.server.should_exit = True
    served.thread.join(10)


@dataclass
class Demo:
    settings: Settings
    url: str
    served: Served
    devices: set[str]
    site: str
    flow: subprocess.Popen[bytes]
    produced: int


def produce(settings: Settings, values: list[bytes] | list[Reading]) -> None:
    names = KafkaTopics(settings.kafka.topic_prefix)
    producer = Producer({**settings.kafka.client_config(), "linger.ms": 20})
    for v in values:
        r = v if isinstance(v, Reading) else decode_reading(v)
        producer.produce(names.readings(r.sensor_type), encode(r), r.device_id.encode())
        producer.poll(0)
    assert producer.flush(30) == 0


def hot_readings(device: str, site: str, end_ms: int, spike: float) -> list[Reading]:
    """A minute of normal temperatures, then one far above the critical bound."""
    out = [
        Reading(
            device_id=device,
            sensor_type="temperature",
            site=site,
            ts=end_ms - 60_000 + i * 5_000,
            value=21.0 + 0.1 * (i % 3),
            seq=i,
        )
        for i in range(12)
    ]
    out.append(
        Reading(
            device_id=device, sensor_type="temperature", site=site, ts=end_ms, value=spike, seq=12
        )
    )
    return out


def flux_count(settings: Settings, measurement: str, device: str | None = None) -> int:
    s = settings.influx
    where = f' and r.device_id == "{device}"' if device else ""
    q = f"""from(bucket: "{s.bucket}") |> range(start: -2h)
      |> filter(fn: (r) => r._measurement == "{measurement}"{where} and r._field != "message")
      |> group() |> count()"""
    with InfluxDBClient(url=s.url, token=s.token.get_secret_value(), org=s.org) as c:
        return sum(int(r.get_value()) for t in c.query_api().query(q) for r in t.records)


def wait_for(check: Any, what: str, timeout: float, flow: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        assert flow.poll() is None, f"the flow exited ({flow.returncode}) while waiting for {what}"
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="module")
def demo(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """Topics, bucket, demo data through a running flow, and the dashboard on a free port."""
    unique = os.urandom(5).hex()
    base = stack.settings
    metrics_port = free_port()
    settings = base.model_copy(
        update={
            "kafka": base.kafka.model_copy(update={"topic_prefix": f"t{unique}.", "partitions": 2}),
            "influx": base.influx.model_copy(update={"bucket": f"dash-{unique}"}),
            "flow": base.flow.model_copy(
                update={"priority": "normal", "metrics_port": metrics_port}
            ),
            "ingest": base.ingest.model_copy(update={"metrics_port": 0}),
            "dashboard": base.dashboard.model_copy(update={"refresh_s": 1.0}),
        }
    )
    catalogue = load_catalogue()
    topics = KafkaTopics(settings.kafka.topic_prefix).all_topics(catalogue.names)
    ensure_topics(settings.kafka, topics)
    influx = settings.influx
    client = InfluxDBClient(url=influx.url, token=influx.token.get_secret_value(), org=influx.org)
    bucket = client.buckets_api().create_bucket(
        bucket_name=influx.bucket,
        org=influx.org,
        retention_rules=BucketRetentionRules(type="expire", every_seconds=0),
    )
    env = {
        **os.environ,
        "IOTPIPE_KAFKA_TOPIC_PREFIX": settings.kafka.topic_prefix,
        "IOTPIPE_KAFKA_PARTITIONS": "2",
        "IOTPIPE_INFLUX_BUCKET": influx.bucket,
        "IOTPIPE_FLOW_PRIORITY": "normal",
        "IOTPIPE_FLOW_WINDOWS": "10s,1m",
        "IOTPIPE_FLOW_ALLOWED_LATENESS_S": "1",
        "IOTPIPE_FLOW_IDLE_CLOSE_S": "2",
        "IOTPIPE_FLOW_EPOCH_INTERVAL_S": "0.5",
        "IOTPIPE_FLOW_METRICS_PORT": str(metrics_port),
    }
    log = tmp_path_factory.mktemp("dashboard") / "flow.log"
    with log.open("wb") as out:
        flow = subprocess.Popen(
            [sys.executable, "-m", "ops", "flow", "run"], env=env, stdout=out, stderr=out
        )
    server: Served | None = None
    try:
        site = f"dash{unique}-000"
        now = int(time.time() * 1000)
        payloads = generate_payloads(
            DEVICES * SPAN_S // 10,
            devices=DEVICES,
            seed=11,
            start_ms=now - SPAN_S * 1000,
            types=TYPES,
            sites=(site,),
            interval_s=10.0,
        )
        devices = {json.loads(p)["device_id"] for p in payloads} | {HOT}
        hot = hot_readings(HOT, site, now - 30_000, HOT_VALUE)
        produce(settings, payloads)
        produce(settings, hot)
        try:
            wait_for(lambda: flux_count(settings, "anomaly", HOT) > 0, "the anomaly", 120, flow)
            wait_for(lambda: flux_count(settings, "sensor_agg") > 0, "aggregates", 60, flow)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nflow log:\n{log.read_text()[-3000:]}") from None

        server, url = serve(settings)
        yield Demo(settings, url, server, devices, site, flow, len(payloads) + len(hot))
    finally:
        if server is not None:
            stop(server)
        flow.terminate()
        try:
            flow.wait(20)
        except subprocess.TimeoutExpired:
            flow.kill()
            flow.wait(10)
        client.buckets_api().delete_bucket(bucket)
        client.close()
        delete_topics(settings.kafka, topics)


@pytest.fixture(scope="module")
def browser(demo: Demo) -> Iterator[Any]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@dataclass
class Tab:
    page: Page
    errors: list[str]


@pytest.fixture
def tab(browser: Any, demo: Demo) -> Iterator[Tab]:
    """A fresh, logged-in page that records console errors and uncaught exceptions."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    demo.served.login(page, demo.url)
    errors: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            errors.append(f"console: {msg.text} at {msg.location}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    yield Tab(page, errors)
    context.close()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def chart_values(page: Page, name: str, series: int) -> list[float]:
    """Non-null values of one series of a uPlot chart, read from the chart itself."""
    values: list[float] = page.evaluate(
        "([n, i]) => (IP.charts[n] ? IP.charts[n].data[i].filter((v) => v !== null) : [])",
        [name, series],
    )
    return values


def test_fleet_overview_has_data_in_every_chart(demo: Demo, tab: Tab) -> None:
    page = tab.page
    page.goto(f"{demo.url}/?range=1h")
    page.wait_for_function("() => IP.charts.rate && IP.charts['type:co2']", timeout=20_000)
    page.wait_for_function(
        f"() => document.getElementById('devices').textContent === '{len(demo.devices)}'",
        timeout=20_000,
    )
    rates = chart_values(page, "rate", 1)
    assert len(rates) >= 10 and all(v > 0 for v in rates)
    # 60 devices at one reading per ~10 s: about 6 readings/s in every full step.
    assert 3 < sorted(rates)[len(rates) // 2] < 12, rates
    expected_mean = {"temperature": (10, 35), "humidity": (20, 75), "co2": (350, 1200)}
    for sensor_type, (lo, hi) in expected_mean.items():
        means = chart_values(page, f"type:{sensor_type}", 1)
        mins = chart_values(page, f"type:{sensor_type}", 2)
        maxes = chart_values(page, f"type:{sensor_type}", 3)
        assert len(means) >= 10, sensor_type
        assert all(lo < m < hi for m in means), (sensor_type, means)
        if sensor_type == "temperature":
            assert max(maxes) == HOT_VALUE  # the spike is in the max series, not the mean
        assert min(mins) <= min(means) <= max(means) <= max(maxes)
    assert page.locator("#empty").is_hidden()
    assert "(site_agg)" in (page.locator("#resolution").text_content() or "")
    alerts = int(page.locator("#alerts").text_content() or "0")
    assert alerts >= 1
    assert "critical" in (page.locator("#alerts-sub").text_content() or "")
    shot(page, "overview")
    assert tab.errors == []


def test_rollups_and_device_aggregates_give_the_same_figures(demo: Demo) -> None:
    """The overview reads site_agg; its figures equal those from every device's aggregates."""
    store = FluxStore(demo.settings.influx)
    bucket = demo.settings.influx.bucket
    span = flux.Span(3600, 30, "10s")
    try:
        rolled = shaping.throughput(
            store.rows_sync(flux.throughput(bucket, span, flux.SITE_AGG)), 30
        )
        direct = shaping.throughput(store.rows_sync(flux.throughput(bucket, span)), 30)
        by_type = shaping.stats_by_type(store.rows_sync(flux.type_stats_rollup(bucket, span)))
        raw = store.rows_sync(
            f"""from(bucket: "{bucket}") |> range(start: -1h)
              |> filter(fn: (r) => r._measurement == "sensor_agg" and r.window == "10s")
              |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")"""
        )
    finally:
        store.close()
    both = sorted(set(rolled["t"]) & set(direct["t"]))[:-1]  # the newest step may be filling
    assert len(both) >= 30
    rate_r = dict(zip(rolled["t"], rolled["v"], strict=True))
    rate_d = dict(zip(direct["t"], direct["v"], strict=True))
    assert [rate_r[t] for t in both] == [rate_d[t] for t in both]
    want: dict[tuple[str, int], list[tuple[int, float, float, float]]] = {}
    for r in raw:
        key = (r["sensor_type"], r["_time"] - r["_time"] % 30_000)
        want.setdefault(key, []).append((r["count"], r["mean"], r["min"], r["max"]))
    checked = 0
    for sensor_type, cols in by_type.items():
        for i, t in enumerate(cols["t"]):
            if t not in both:
                continue
            aggs = want[(sensor_type, t)]
            n = sum(a[0] for a in aggs)
            assert cols["mean"][i] == pytest.approx(sum(a[0] * a[1] for a in aggs) / n)
            assert cols["min"][i] == min(a[2] for a in aggs)
            assert cols["max"][i] == max(a[3] for a in aggs)
            checked += 1
    assert checked >= 3 * 30


def test_alert_feed_shows_the_injected_anomaly_and_new_ones_live(demo: Demo, tab: Tab) -> None:
    page = tab.page
    page.goto(f"{demo.url}/alerts")
    row = page.locator("#feed tbody tr", has_text=HOT).filter(has_text="threshold")
    row.first.wait_for(timeout=20_000)
    text = row.first.inner_text()
    assert "critical" in text and "temperature" in text and demo.site in text
    assert "95.5" in text
    # Filters: only critical threshold alerts on temperature, and the hot one is among them.
    page.select_option("#severity", "critical")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#feed tbody tr .sev')]"
        ".every((e) => e.textContent === 'critical')",
        timeout=10_000,
    )
    assert page.locator("#feed tbody tr", has_text=HOT).count() >= 1
    # A new anomaly arrives while the page is open: it appears without a reload.
    produce(demo.settings, hot_readings(LIVE, demo.site, int(time.time() * 1000), 97.25))
    live = page.locator("#feed tbody tr", has_text=LIVE)
    live.first.wait_for(timeout=60_000)
    assert "97.25" in live.first.inner_text()
    assert page.evaluate("() => performance.getEntriesByType('navigation').length") == 1
    shot(page, "alerts")
    assert tab.errors == []


def test_device_drill_down_through_the_search_box(demo: Demo, tab: Tab) -> None:
    page = tab.page
    page.goto(f"{demo.url}/device")
    page.fill("#search", "hot-")
    page.locator("#results button", has_text=HOT).wait_for(timeout=10_000)
    found = page.locator("#results button").all_inner_texts()
    assert HOT in found and all(d.startswith("hot-") for d in found)
    page.fill("#search", "d")  # many matches: a limited list, not a giant drop-down
    page.wait_for_function(
        "() => document.querySelectorAll('#results button').length === 20", timeout=10_000
    )
    assert "first 20 matches" in (page.locator("#search-note").text_content() or "")
    page.fill("#search", "hot-0001")
    page.locator("#results button", has_text=HOT).click()
    page.wait_for_function("() => IP.charts['device:temperature']", timeout=20_000)
    assert f"id={HOT}" in page.url
    means = chart_values(page, "device:temperature", 1)
    anomalies = chart_values(page, "device:temperature", 4)
    # Normal windows around 21; the spike's own window is pulled up by it, and marked.
    assert len(means) >= 3 and sum(20 < m < 30 for m in means) >= len(means) - 1, means
    assert HOT_VALUE in anomalies
    assert page.locator("#anomalies tbody tr", has_text="threshold").count() >= 1
    shot(page, "device")
    assert tab.errors == []


def test_pipeline_page_shows_flow_metrics_and_consumer_lag(demo: Demo, tab: Tab) -> None:
    page = tab.page
    page.goto(f"{demo.url}/pipeline")
    flow_row = page.locator("#components tbody tr", has_text="flow-normal")
    flow_row.wait_for(timeout=20_000)
    page.wait_for_function(
        "() => /flow-normal\\s+up/.test(document.querySelector('#components').innerText)",
        timeout=20_000,
    )
    group = f"{demo.settings.kafka.topic_prefix}iotpipe-flow-normal"
    lag_rows = page.locator("#lag tbody tr", has_text=group)
    lag_rows.first.wait_for(timeout=20_000)
    readings_topic = KafkaTopics(demo.settings.kafka.topic_prefix).readings("temperature")
    assert page.locator("#lag tbody tr", has_text=readings_topic).count() == 2  # 2 partitions
    # Throughput history: two snapshots at least, the second with rates.
    page.wait_for_function(
        "() => IP.charts.throughput && IP.charts.throughput.data[0].length >= 2", timeout=20_000
    )
    # The flow has caught up: every partition's committed offset is its end, and the
    # ends add up to what was produced (so the lag figures are the broker's own).
    page.wait_for_function(
        f"""() => fetch('/api/pipeline').then((r) => r.json()).then((d) => {{
            const mine = d.lag.filter((p) => p.group === '{group}' && p.end > 0);
            return mine.length > 0 && mine.every((p) => p.lag === 0);
        }})""",
        timeout=30_000,
        polling=1000,
    )
    data = page.evaluate("() => fetch('/api/pipeline').then((r) => r.json())")
    ends = sum(p["end"] for p in data["lag"] if p["group"] == group)
    assert ends >= demo.produced
    flow = next(c for c in data["components"] if c["name"] == "flow-normal")
    assert flow["state"] == "up"
    assert flow["totals"]["readings"] >= DEVICES * SPAN_S // 10
    assert flow["totals"]["sink_dead_lettered"] == 0
    assert {s["name"] for s in data["services"]} == {"mosquitto", "kafka", "influxdb"}
    shot(page, "pipeline")
    assert tab.errors == []


def test_empty_bucket_shows_empty_states(demo: Demo, browser: Any, bucket: str) -> None:
    """A dashboard on a bucket nothing has arrived in yet: 'no data yet', no errors."""
    base = demo.settings
    empty = base.model_copy(update={"influx": base.influx.model_copy(update={"bucket": bucket})})
    server, url = serve(empty)
    context = browser.new_context()
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        server.login(page, url)
        page.locator("#empty").wait_for(state="visible", timeout=20_000)
        assert "No data yet" in page.locator("#empty").inner_text()
        assert page.locator("#devices").inner_text() == "0"
        page.goto(f"{url}/alerts")
        page.locator("#empty").wait_for(state="visible", timeout=20_000)
        shot(page, "alerts-empty")
        page.goto(f"{url}/device?id=dev-000001")
        page.locator("#device-view #empty").wait_for(state="visible", timeout=20_000)
        assert errors == []
    finally:
        context.close()
        stop(server)


def test_missing_bucket_is_an_empty_state_not_an_error(demo: Demo) -> None:
    base = demo.settings
    missing = base.influx.model_copy(update={"bucket": f"{base.influx.bucket}-missing"})
    server, url = serve(base.model_copy(update={"influx": missing}))
    auth = {"Authorization": f"Bearer {server.token}"}
    try:
        overview = httpx.get(f"{url}/api/overview?range=1h", headers=auth, timeout=20).json()
        assert overview["empty"] is True and overview["devices_reporting"] == 0
        alerts = httpx.get(f"{url}/api/alerts", headers=auth, timeout=20).json()
        assert alerts["alerts"] == []
    finally:
        stop(server)


def test_nothing_without_the_token_and_nothing_under_another_host(demo: Demo, browser: Any) -> None:
    url, token = demo.url, demo.served.token
    for path in ("/", "/alerts", "/api/overview?range=1h", "/api/config", "/openapi.json"):
        assert httpx.get(f"{url}{path}", timeout=20).status_code == 401, path
        wrong = {"Authorization": "Bearer not-the-token"}
        assert httpx.get(f"{url}{path}", headers=wrong, timeout=20).status_code == 401, path
    assert httpx.get(f"{url}/login?token=guess", timeout=20).status_code == 401
    # DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends its own Host.
    auth = {"Authorization": f"Bearer {token}"}
    rebound = httpx.get(f"{url}/api/config", headers={**auth, "Host": "evil.example"}, timeout=20)
    assert rebound.status_code == 400
    assert httpx.get(f"{url}/api/config", headers=auth, timeout=20).status_code == 200
    # A browser logs in once; the cookie is HttpOnly and SameSite=Strict.
    context = browser.new_context()
    try:
        page = context.new_page()
        assert page.goto(f"{url}/alerts").status == 401
        assert "access token" in page.content()
        demo.served.login(page, url)
        assert page.url.rstrip("/") == url
        (cookie,) = context.cookies()
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert page.goto(f"{url}/alerts").status == 200
    finally:
        context.close()
