"""The benchmark suite's real runs, small: peers agree, end to end loses nothing."""

from __future__ import annotations

from iotpipe.settings import Settings
from ops.stack import Stack


def test_all_four_peers_produce_identical_aggregates(settings: Settings, stack: Stack) -> None:
    from bench.peers import PEERS, run_peers

    # 30 readings per device, one every 2 s: a minute of data, several closed windows each.
    result = run_peers(settings, readings=24_000, devices=800)
    cmp_ = result["comparison"]
    assert cmp_["sampled_windows"] >= 100, cmp_
    assert cmp_["identical"], cmp_["mismatches"]
    for peer in PEERS:
        r = result["peers"][peer]
        assert r["readings_per_s"] > 0
        assert 20 < r["peak_rss_mb"] < 4000  # VmHWM of the child, not the parent's
    assert result["peers"]["ours"]["ratio_ours_to_this"] == 1.0


def test_end_to_end_at_a_low_rate_delivers_everything_with_latencies(
    settings: Settings, stack: Stack
) -> None:
    from bench.e2e import run_case

    r = run_case(settings, rate=300, batch=1, duration_s=22, anomaly_rate=0.01)
    assert not r["failed_processes"], r["logs"]
    d = r["delivery"]
    assert d["sent"] > 5000
    assert r["delivered_fraction"] == 1.0, d
    assert d["duplicates"] == 0 and d["devices_with_gaps"] == 0
    lat = r["latency"]
    assert lat["event_to_kafka"]["n"] == d["received"]
    for stage in ("event_to_ingest", "event_to_kafka"):
        assert 0 <= lat[stage]["p50_s"] <= lat[stage]["p99_s"] <= lat[stage]["max_s"] < 10
    agg = lat["event_to_aggregate"]
    assert agg["n"] > 0
    assert 0 < agg["p50_s"] <= agg["max_s"] < 60
    # The kafka stage follows the ingest stage for the same readings.
    assert lat["event_to_kafka"]["p50_s"] >= lat["event_to_ingest"]["p50_s"]
    assert r["alerts_raised"] == lat["event_to_alert"]["n"]
