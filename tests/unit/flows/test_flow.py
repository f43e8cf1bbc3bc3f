"""The whole dataflow in-process with Bytewax's testing source and sinks."""

from __future__ import annotations

from collections import defaultdict

import msgspec
import numpy as np
import pytest
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main

from flows.dataflow import build_flow, flow_config
from flows.detectors import DetectorConfig
from flows.stats import FlowStats, FlowStatsCollector
from iotpipe.codec import decode_reading, encode
from iotpipe.errors import ConfigError
from iotpipe.model import Aggregate, Alert, Reading, SiteAggregate
from iotpipe.settings import Settings, load_settings

T0 = 1_764_400_000_000 - 1_764_400_000_000 % 60_000  # a minute boundary


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("IOTPIPE_FLOW_WINDOWS", "10s,1m")
    monkeypatch.setenv("IOTPIPE_FLOW_ALLOWED_LATENESS_S", "2")
    monkeypatch.setenv("IOTPIPE_FLOW_PRIORITY", "all")
    return load_settings()


def make_readings(devices: int, per_device: int, seed: int = 1) -> list[Reading]:
    rng = np.random.default_rng(seed)
    out = []
    for step in range(per_device):
        for d in range(devices):
            out.append(
                Reading(
                    device_id=f"dev-{d}",
                    sensor_type="temperature" if d % 2 else "humidity",
                    site=f"site-{d % 3}",
                    ts=T0 + step * 1000 + int(rng.integers(0, 900)),
                    value=float(40 + rng.normal(0, 0.5)),
                    seq=step,
                )
            )
    return out


def batches_of(
    readings: list[Reading], partitions: int, size: int
) -> list[tuple[str, list[bytes]]]:
    """Spread by device over partitions like Kafka would, then cut into micro-batches."""
    parts: dict[int, list[bytes]] = defaultdict(list)
    for r in readings:
        parts[int(r.device_id.split("-")[1]) % partitions].append(encode(r))
    out = []
    for p, values in sorted(parts.items()):
        out.extend((f"{p}-readings", values[i : i + size]) for i in range(0, len(values), size))
    return out


def expected_aggregates(readings: list[Reading], length: int) -> dict[tuple[str, int], tuple]:
    groups: dict[tuple[str, int], list[float]] = defaultdict(list)
    for r in readings:
        groups[(r.device_id, r.ts - r.ts % length)].append(r.value)
    return {
        k: (len(v), float(np.mean(v)), min(v), max(v), float(np.std(v))) for k, v in groups.items()
    }


def run(
    settings: Settings,
    batches: list,
    workers: int = 1,
    stats: FlowStats | None = None,
    dead_letters: list | None = None,
) -> tuple[list, list, list]:
    aggs: list = []
    alerts: list = []
    late: list = []
    flow = build_flow(
        settings,
        source=TestingSource(batches),
        aggregate_sink=TestingSink(aggs),
        alert_sink=TestingSink(alerts),
        late_sink=TestingSink(late),
        dead_letter_sink=TestingSink([] if dead_letters is None else dead_letters),
        tail=False,
        stats=stats,
    )
    if workers == 1:
        run_main(flow)
    else:
        cluster_main(flow, [], 0, worker_count_per_proc=workers)
    flat_aggs = [a for item in aggs for a in (item if isinstance(item, list) else [item])]
    flat_alerts = [a for item in alerts for a in (item if isinstance(item, list) else [item])]
    return flat_aggs, flat_alerts, late


@pytest.mark.parametrize("workers", [1, 2])
def test_flow_aggregates_match_numpy(settings: Settings, workers: int) -> None:
    readings = make_readings(devices=30, per_device=75)
    aggs, _alerts, late = run(settings, batches_of(readings, partitions=4, size=97), workers)
    assert late == []
    sensor_agg = [a for a in aggs if isinstance(a, Aggregate)]
    for label, length in (("10s", 10_000), ("1m", 60_000)):
        got = {(a.device_id, a.start): a for a in sensor_agg if a.window == label}
        want = expected_aggregates(readings, length)
        assert set(got) == set(want)
        for key, (count, mean, lo, hi, std) in want.items():
            a = got[key]
            assert a.count == count and (a.min, a.max) == (lo, hi)
            assert a.mean == pytest.approx(mean, abs=1e-9)
            assert a.std == pytest.approx(std, abs=1e-9)


@pytest.mark.parametrize("workers", [1, 2])
def test_site_rollups_match_numpy_across_partitions(settings: Settings, workers: int) -> None:
    readings = make_readings(devices=30, per_device=75)
    aggs, _alerts, _late = run(settings, batches_of(readings, partitions=4, size=97), workers)
    # the last write of a series and time wins, as in InfluxDB
    sites = {
        (a.site, a.sensor_type, a.window, a.start): a for a in aggs if isinstance(a, SiteAggregate)
    }
    for label, length in (("10s", 10_000), ("1m", 60_000)):
        groups: dict[tuple, list[Reading]] = defaultdict(list)
        for r in readings:
            groups[(r.site, r.sensor_type, label, r.ts - r.ts % length)].append(r)
        got = {k: v for k, v in sites.items() if k[2] == label}
        assert set(got) == set(groups)
        for key, group in groups.items():
            values = np.array([r.value for r in group])
            a = got[key]
            assert a.devices == len({r.device_id for r in group})
            assert (a.count, a.min, a.max) == (len(values), values.min(), values.max())
            assert a.mean == pytest.approx(values.mean(), abs=1e-9)
            assert a.std == pytest.approx(values.std(), abs=1e-9)


def test_flow_stats_count_what_went_through(settings: Settings) -> None:
    readings = make_readings(devices=30, per_device=75)
    batches = batches_of(readings, partitions=4, size=97)
    batches.insert(1, ("0-readings", [b"not json", b'{"device_id": 1}']))
    stats = FlowStats("all")
    letters: list = []
    aggs, alerts, late = run(settings, batches, workers=2, stats=stats, dead_letters=letters)
    records = [msgspec.json.decode(m.value) for m in letters]
    assert [(r["payload"], r["reason"], r["target"]) for r in records] == [
        ("not json", "not_a_reading", "0-readings"),
        ('{"device_id": 1}', "not_a_reading", "0-readings"),
    ]
    assert "malformed" in records[0]["error"].lower() or "JSON" in records[0]["error"]
    assert stats.readings == len(readings)
    assert stats.bad == 2
    assert stats.late == len(late)
    assert stats.aggregates == sum(isinstance(a, Aggregate) for a in aggs)
    assert sum(stats.alerts.values()) == len(alerts)
    samples = {s.name: s.value for m in FlowStatsCollector(stats).collect() for s in m.samples}
    assert samples["iotpipe_flow_readings_total"] == len(readings)
    assert samples["iotpipe_flow_bad_total"] == 2


def test_late_readings_go_to_the_late_output(settings: Settings) -> None:
    on_time = [
        Reading(device_id="d", sensor_type="gas", ts=T0 + i * 1000, value=1.0) for i in range(40)
    ]
    straggler = Reading(device_id="d", sensor_type="gas", ts=T0 + 500, value=9.0)
    batches = [("0-r", [encode(r) for r in on_time]), ("0-r", [encode(straggler)])]
    aggs, _alerts, late = run(settings, batches)
    assert [decode_reading(m.value).value for m in late] == [9.0]  # its 10 s window had closed
    assert late[0].key == b"d"
    first_10s = next(
        a for a in aggs if isinstance(a, Aggregate) and a.window == "10s" and a.start == T0
    )
    assert first_10s.count == 10 and first_10s.max == 1.0
    minute = next(a for a in aggs if isinstance(a, Aggregate) and a.window == "1m")
    assert minute.count == 41 and minute.max == 9.0  # the 1 min window was still open


def test_threshold_alert_flows_through(settings: Settings) -> None:
    normal = [
        Reading(device_id="g1", sensor_type="gas", ts=T0 + i * 1000, value=2.0) for i in range(30)
    ]
    leak = [
        Reading(device_id="g1", sensor_type="gas", ts=T0 + 30_000 + i * 1000, value=80.0)
        for i in range(5)
    ]
    _aggs, alerts, _late = run(settings, [("0-r", [encode(r) for r in normal + leak])])
    raised = [
        a
        for a in alerts
        if isinstance(a, Alert) and a.detector == "threshold" and a.state == "raised"
    ]
    assert raised and raised[0].severity == "critical" and raised[0].device_id == "g1"


def test_sliding_and_session_windows_in_the_flow(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IOTPIPE_FLOW_SLIDING", "20s/10s")
    monkeypatch.setenv("IOTPIPE_FLOW_SESSION_GAP_S", "5")
    s = load_settings()
    # One device: a 15 s burst (1 reading/s), a 30 s pause, then a 10 s burst.
    times = [T0 + i * 1000 for i in range(15)] + [T0 + 45_000 + i * 1000 for i in range(10)]
    readings = [
        Reading(device_id="s1", sensor_type="co2", ts=t, value=float(i))
        for i, t in enumerate(times)
    ]
    aggs, _alerts, _late = run(s, [("0-r", [encode(r) for r in readings])])
    sessions = sorted(
        (a.start, a.count) for a in aggs if isinstance(a, Aggregate) and a.window == "session"
    )
    assert sessions == [(T0, 15), (T0 + 45_000, 10)]
    sliding = {a.start: a.count for a in aggs if isinstance(a, Aggregate) and a.window == "20s/10s"}
    # Window [T0-10s, T0+10s) holds the first 10 readings; [T0, T0+20s) all 15.
    assert sliding[T0 - 10_000] == 10 and sliding[T0] == 15
    assert sum(1 for a in aggs if isinstance(a, Aggregate) and a.window == "10s") == 4


@pytest.mark.parametrize("bad", ["1m", "1m/7s", "x/10s", "10s/0s"])
def test_bad_sliding_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("IOTPIPE_FLOW_SLIDING", bad)
    with pytest.raises(ConfigError, match=r"^IOTPIPE_FLOW_SLIDING:"):
        load_settings()


def test_detector_settings_default_to_the_detectors_own_and_reach_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert flow_config(load_settings()).detectors == DetectorConfig()
    monkeypatch.setenv("IOTPIPE_FLOW_DETECTORS", "threshold, flapping")
    monkeypatch.setenv("IOTPIPE_FLOW_DETECT_CLEAR_READINGS", "5")
    monkeypatch.setenv("IOTPIPE_FLOW_DETECT_COOLDOWN_S", "1.5")
    monkeypatch.setenv("IOTPIPE_FLOW_DETECT_ALERT_BUDGET_PER_HOUR", "0")
    got = flow_config(load_settings()).detectors
    assert got.detectors == ("threshold", "flapping")
    assert (got.clear_readings, got.cooldown_ms, got.alert_budget_per_hour) == (5, 1500, 0)
    monkeypatch.setenv("IOTPIPE_FLOW_DETECTORS", "threshold,nope")
    with pytest.raises(ConfigError, match="unknown detector"):
        flow_config(load_settings())
