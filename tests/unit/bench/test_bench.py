"""Benchmark maths and report: percentiles, loss accounting, aggregate cross-check, rendering."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.e2e import _Alert, _Reading, analyse
from bench.peers import as_map, sample_keys
from bench.profile import summarise as profile_summary
from bench.report import make_plots, render_markdown, targets
from bench.stats import account, compare_aggregates, is_sustained, latency_summary, spread


def test_latency_summary_percentiles_in_seconds() -> None:
    s = latency_summary(list(range(1, 101)))  # 1..100 ms
    assert s["n"] == 100
    assert s["p50_s"] == pytest.approx(0.0505)
    assert s["p99_s"] == pytest.approx(0.09901)
    assert s["max_s"] == pytest.approx(0.1)


def test_latency_summary_empty_is_none_not_zero() -> None:
    assert latency_summary([]) == {
        "n": 0,
        "p50_s": None,
        "p95_s": None,
        "p99_s": None,
        "max_s": None,
    }


def test_spread_median_and_range() -> None:
    s = spread([10.0, 30.0, 20.0])
    assert (s["median"], s["min"], s["max"]) == (20.0, 10.0, 30.0)
    assert s["spread_pct"] == pytest.approx(50.0)
    assert spread([])["n"] == 0


def test_account_counts_duplicates_loss_and_gaps() -> None:
    d = account({"a": [0, 1, 2, 2], "b": [0, 2], "c": []}, sent=7)
    assert d.received == 6
    assert d.unique == 5
    assert d.duplicates == 1
    assert d.missing == 2
    assert d.gaps == 1  # b misses seq 1
    assert d.delivered_fraction == pytest.approx(5 / 7)


def test_account_everything_delivered() -> None:
    d = account({"a": [0, 1], "b": [5, 6, 7]}, sent=5)
    assert (d.missing, d.duplicates, d.gaps, d.delivered_fraction) == (0, 0, 0, 1.0)


def test_compare_aggregates_catches_each_kind_of_difference() -> None:
    ref = {("d1", 0): (3, 2.0, 1.0, 3.0), ("d2", 0): (2, 5.0, 4.0, 6.0)}
    keys = list(ref)
    same = {"x": {("d1", 0): (3, 2.0 + 1e-13, 1.0, 3.0), ("d2", 0): (2, 5.0, 4.0, 6.0)}}
    assert compare_aggregates(ref, same, keys).ok
    wrong_count = {"x": {("d1", 0): (4, 2.0, 1.0, 3.0), ("d2", 0): (2, 5.0, 4.0, 6.0)}}
    wrong_max = {"x": {("d1", 0): (3, 2.0, 1.0, 3.5), ("d2", 0): (2, 5.0, 4.0, 6.0)}}
    missing = {"x": {("d1", 0): (3, 2.0, 1.0, 3.0)}}
    for peers in (wrong_count, wrong_max, missing):
        result = compare_aggregates(ref, peers, keys)
        assert not result.ok
        assert len(result.mismatches) == 1


def test_compare_with_no_sample_is_not_ok() -> None:
    assert not compare_aggregates({}, {"x": {}}, []).ok


def test_sample_keys_skip_windows_an_engine_may_not_have_closed() -> None:
    ref = as_map([["dev-000001", s * 10_000, 1, 1.0, 1.0, 1.0] for s in range(10)])
    keys = sample_keys(ref)
    # last window starts at 90 s: only windows ending (plus 5 s grace) by 80 s are safe
    assert keys and max(s for _, s in keys) <= 60_000


def test_sustained_needs_delivery_carried_rate_and_latency_budget() -> None:
    ok = {"offered_rate": 5000, "kafka_rate": 4990.0, "delivered_fraction": 1.0,
          "p99_aggregate_s": 12.0, "failed_processes": []}  # fmt: skip
    assert is_sustained(ok, 13.0)
    assert not is_sustained({**ok, "p99_aggregate_s": 14.0}, 13.0)
    assert not is_sustained({**ok, "delivered_fraction": 0.9999}, 13.0)
    assert not is_sustained({**ok, "kafka_rate": 3000.0}, 13.0)  # simulator could not offer it
    assert not is_sustained({**ok, "p99_aggregate_s": None}, 13.0)
    assert not is_sustained({**ok, "failed_processes": ["flow"]}, 13.0)


def _readings(n: int, lag_ms: int) -> list[tuple[_Reading, int]]:
    base = 1_800_000_000_000
    return [
        (_Reading(device_id=f"d{i % 10}", ts=base + i * 10, seq=i // 10,
                  ingest_ts=base + i * 10 + 5), base + i * 10 + lag_ms)
        for i in range(n)
    ]  # fmt: skip


def test_analyse_latencies_from_read_back_records() -> None:
    readings = _readings(4000, lag_ms=40)  # 40 s of events, 10 devices
    base = 1_800_000_000_000
    # each window complete 2 s after its end
    done = {base + w * 10_000: (base + (w + 1) * 10_000 + 2_000) / 1000 for w in range(4)}
    alerts = [(_Alert(ts=base + 100), base + 1_600), (_Alert(ts=base, state="cleared"), base + 9)]
    r = analyse(
        readings=readings, alerts=alerts, windows_complete=done, sent=4000, offered_rate=100,
        batch=1, duration_s=40, sim={"sent": 4000, "rate": 100.0}, sim_wall=(0.0, 1.0),
        drained_at=1.5,
    )  # fmt: skip
    assert r["delivered_fraction"] == 1.0
    assert r["latency"]["event_to_ingest"]["p50_s"] == pytest.approx(0.005)
    assert r["latency"]["event_to_kafka"]["max_s"] == pytest.approx(0.04)
    agg = r["latency"]["event_to_aggregate"]
    # windows 0..2 closed while input flowed (window 3 only by idle close): 3000 readings
    assert agg["n"] == 3000
    assert agg["max_s"] == pytest.approx(12.0)
    assert agg["p50_s"] == pytest.approx(7.0, abs=0.1)
    assert r["latency"]["event_to_alert"] == {
        "n": 1, "p50_s": 1.5, "p95_s": 1.5, "p99_s": 1.5, "max_s": 1.5,
    }  # fmt: skip


def test_analyse_reports_loss() -> None:
    readings = _readings(1000, lag_ms=1)
    del readings[500]
    r = analyse(
        readings=readings, alerts=[], windows_complete={}, sent=1000, offered_rate=100, batch=1,
        duration_s=10, sim={}, sim_wall=(0.0, 1.0), drained_at=1.0,
    )  # fmt: skip
    assert r["delivery"]["missing"] == 1
    assert r["delivery"]["devices_with_gaps"] == 1
    assert r["delivered_fraction"] == pytest.approx(0.999)
    assert r["latency"]["event_to_aggregate"]["n"] == 0


def test_profile_summary_self_and_inclusive_shares() -> None:
    raw = "\n".join(
        [
            'process 1:"python";thread (0x1);main (a.py:1);work (b.py:2);decode (c.py:3) 6',
            'process 1:"python";thread (0x1);main (a.py:1);work (b.py:4) 2',
            'process 1:"python";thread (0x1);main (a.py:1);wait (d.py:9) 2',
            'process 1:"python";thread (0x2);_find_and_load (<frozen importlib._bootstrap>:1) 2',
        ]
    )
    s = profile_summary(raw)
    assert s["samples"] == 10
    assert s["import_samples"] == 2
    assert s["self"][0] == ("decode (c.py)", 60.0)
    assert ("work (b.py)", 80.0) in s["inclusive"]
    assert all(f != "main (a.py)" for f, _ in s["inclusive"])  # under every sample: no news


def _results() -> dict[str, Any]:
    one = {"n": 1, "median": 100.0, "min": 100.0, "max": 100.0, "spread_pct": 0.0}
    lat = {"n": 1, "p50_s": 0.1, "p95_s": 0.2, "p99_s": 0.3, "max_s": 0.4}
    case = {
        "offered_rate": 5000, "readings_per_message": 1, "published_rate": 5000.0,
        "kafka_rate": 5000.0, "delivered_fraction": 1.0, "delivery": {"duplicates": 0},
        "sustained": True, "cdf": {"event_to_kafka_ms": [1.0, 2.0, 3.0]},
        "latency": {k: lat for k in ("event_to_ingest", "event_to_kafka", "event_to_aggregate",
                                     "window_close_to_aggregate", "event_to_alert")},
    }  # fmt: skip
    peer = {"readings_per_s": one, "ratio_ours_to_this": one, "cpu_s_per_million": one,
            "peak_rss_mb": one, "steady_readings_per_s": one,
            "steady_ratio_ours_to_this": one}  # fmt: skip
    return {
        "command": "iotpipe bench --quick", "mode": "quick", "repeat": 1, "started": "now",
        "wall_s": 100.0,
        "machine": {"cpus": 2, "python": "3.11", "packages": {}, "load_average_start": [1, 1, 1]},
        "stages": {"summary": {"flow": {"readings_per_s": one, "cpu_s_per_million": one,
                                        "peak_rss_mb": one}}},
        "peers": {"readings": 10, "devices": 1, "partitions": 4,
                  "summary": {"ours": peer, "bytewax": {**peer, "steady_ratio_ours_to_this": {
                      "n": 1, "median": 4.0, "min": 4.0, "max": 4.0}}},
                  "comparison": {"sampled_windows": 200, "identical": False, "mismatch_count": 1,
                                 "mismatches": ["quix: ('d', 0) (1,) != reference (2,)"]}},
        "e2e": {"lateness_s": 1.0, "budget_s": 13.0, "cases": [case], "ramp": [],
                "sustainable": {"1": 5000}},
    }  # fmt: skip


def test_targets_report_misses_with_ratios() -> None:
    t = {x["target"]: x for x in targets(_results())}
    single = next(v for k, v in t.items() if "single-reading" in k)
    assert single["met"] is False
    assert single["ratio"] == pytest.approx(0.1)
    bytewax = next(v for k, v in t.items() if "Bytewax" in k)
    assert bytewax["met"] is False
    assert bytewax["measured"] == 4.0


def test_report_renders_tables_and_shouts_about_unequal_aggregates(tmp_path: Path) -> None:
    results = _results()
    results["targets"] = targets(results)
    plots = make_plots(results, tmp_path)
    assert "latency_cdf.png" in plots
    assert all((tmp_path / p).stat().st_size > 1000 for p in plots)
    md = render_markdown(results, plots)
    assert "AGGREGATES DIFFER" in md
    assert "| 5,000 | 1 |" in md
    assert "![latency_cdf.png](latency_cdf.png)" in md
    assert "**no**" in md


def test_nan_free_spread_for_single_run() -> None:
    s = spread([np.float64(3.0)])
    assert s["median"] == 3.0 and not math.isnan(s["spread_pct"])


def test_analyse_leaves_out_the_first_partial_window() -> None:
    base = 1_800_000_000_000
    readings = [
        (_Reading(device_id="d", ts=base + 5_000 + i * 100, seq=i, ingest_ts=0), 0)
        for i in range(300)
    ]  # 5 s .. 35 s: window 0 is partial, windows 10 s and 20 s whole and closable
    done = {base + w * 10_000: (base + (w + 1) * 10_000 + 1_000) / 1000 for w in range(4)}
    r = analyse(
        readings=readings, alerts=[], windows_complete=done, sent=300, offered_rate=10, batch=1,
        duration_s=30, sim={}, sim_wall=(0.0, 1.0), drained_at=1.0,
    )  # fmt: skip
    assert r["latency"]["event_to_aggregate"]["n"] == 200
    assert r["latency"]["window_close_to_aggregate"]["max_s"] == pytest.approx(0.0)
