"""Alert routing, de-duplication, per-device rate limits and HMAC signatures."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from pydantic import ValidationError

from iotpipe.model import Alert
from iotpipe.settings import AlertSettings
from sinks.alert_policy import AlertGate, Verdict, sign, verify


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _alert(n: int = 0, *, device: str = "dev-1", state: str = "raised") -> Alert:
    return Alert(
        alert_id=f"id-{device}-{n}",
        device_id=device,
        sensor_type="gas",
        site="plant-a",
        detector="threshold",
        severity="critical",
        ts=1_764_400_000_000 + n,
        value=9.0,
        score=3.0,
        threshold=5.0,
        message="high",
        state=state,  # type: ignore[arg-type]
    )


def _gate(clock: Clock, *, horizon: float = 60, per_minute: float = 6, burst: int = 2) -> AlertGate:
    return AlertGate(horizon_s=horizon, per_minute=per_minute, burst=burst, clock=clock)


def test_same_alert_twice_is_a_duplicate_until_the_horizon_passes() -> None:
    clock = Clock()
    gate = _gate(clock, burst=10)
    assert gate.decide(_alert()) is Verdict.NOTIFY
    assert gate.decide(_alert()) is Verdict.DUPLICATE
    clock.now += 61
    assert gate.decide(_alert()) is Verdict.NOTIFY
    assert gate.stats.duplicates == 1


def test_each_state_of_an_alarm_flows_once() -> None:
    gate = _gate(Clock(), burst=10)
    states = ["raised", "escalated", "cleared", "cleared", "raised"]
    verdicts = [gate.decide(_alert(state=s)) for s in states]
    assert verdicts == [Verdict.NOTIFY] * 3 + [Verdict.DUPLICATE] * 2


def test_storm_is_rate_limited_per_device_and_counted() -> None:
    clock = Clock()
    gate = _gate(clock, per_minute=6, burst=2)
    storm = [gate.decide(_alert(n)) for n in range(10)]
    assert storm.count(Verdict.NOTIFY) == 2
    assert storm.count(Verdict.RECORD_ONLY) == 8  # still recorded on Kafka
    assert gate.stats.suppressed == 8
    assert gate.stats.suppressed_by_device == {"dev-1": 8}
    # another device is not affected
    assert gate.decide(_alert(0, device="dev-2")) is Verdict.NOTIFY
    # tokens come back at 6/min: one every 10 s
    clock.now += 10
    assert gate.decide(_alert(100)) is Verdict.NOTIFY
    assert gate.decide(_alert(101)) is Verdict.RECORD_ONLY


def test_follow_ups_share_their_alarms_fate() -> None:
    gate = _gate(Clock(), per_minute=1, burst=1)
    assert gate.decide(_alert(1)) is Verdict.NOTIFY
    assert gate.decide(_alert(2)) is Verdict.RECORD_ONLY  # bucket empty
    # the notified alarm's clear passes even with an empty bucket...
    assert gate.decide(_alert(1, state="cleared")) is Verdict.NOTIFY
    # ...and the suppressed alarm's clear stays suppressed (the receiver never saw it open)
    assert gate.decide(_alert(2, state="cleared")) is Verdict.RECORD_ONLY


def test_rate_limit_zero_means_off() -> None:
    gate = _gate(Clock(), per_minute=0, burst=1)
    assert all(gate.decide(_alert(n)) is Verdict.NOTIFY for n in range(50))


def test_remembered_alerts_are_duplicates() -> None:
    gate = _gate(Clock())
    gate.remember("id-dev-1-0", "raised")
    assert gate.decide(_alert(0)) is Verdict.DUPLICATE
    assert gate.decide(_alert(0, state="cleared")) is Verdict.NOTIFY


def test_memory_is_bounded() -> None:
    gate = AlertGate(horizon_s=3600, per_minute=0, burst=1, max_entries=10, clock=Clock())
    for n in range(100):
        gate.decide(_alert(n))
    assert len(gate._seen) == 10
    assert len(gate._notified) == 10


def test_hmac_signature_matches_a_receivers_computation() -> None:
    body = b'{"alert_id":"x"}'
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert sign(body, "s3cret") == f"sha256={expected}"
    assert verify(body, "s3cret", f"sha256={expected}")
    assert not verify(body + b" ", "s3cret", f"sha256={expected}")
    assert not verify(body, "other", f"sha256={expected}")


def test_routing_by_severity_and_switches() -> None:
    conf = AlertSettings(webhook_url="http://127.0.0.1:9/hook")
    assert conf.route("info") == frozenset()
    assert conf.route("warning") == {"mqtt", "log"}
    assert conf.route("critical") == {"mqtt", "webhook", "log"}
    off = AlertSettings(mqtt_enabled=False, log_enabled=False)  # and no webhook URL
    assert off.route("critical") == frozenset()
    custom = AlertSettings(route_info=" log , kafka", webhook_url="https://x/y")
    assert custom.route_info == "log"
    assert custom.route("info") == {"log"}


def test_bad_routes_and_urls_are_refused() -> None:
    with pytest.raises(ValidationError, match="unknown target"):
        AlertSettings(route_critical="mqtt,pager")
    with pytest.raises(ValidationError, match="http"):
        AlertSettings(webhook_url="ftp://x")
