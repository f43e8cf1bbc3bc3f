"""The alert emitter's routing and failure rules, fast, with recording targets.

Real Kafka, Mosquitto and a webhook server are in
``tests/integration/test_sinks_alerts.py``; here the targets are injected
so each rule (routing by severity, duplicates, rate limit, one output failing)
is checked in milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from iotpipe.errors import ConnectorError
from iotpipe.model import Alert
from iotpipe.settings import AlertSettings, load_settings
from sinks.alerts import AlertEmitter
from tests.unit.sinks.letters import Letters


@dataclass
class Batches:
    topic: str = "alerts"
    refuse: set[str] = field(default_factory=set)  # alert ids this target cannot deliver
    got: list[str] = field(default_factory=list)

    def send(self, alerts: list[Alert]) -> list[tuple[Alert, str]]:
        self.got += [a.alert_id for a in alerts if a.alert_id not in self.refuse]
        return [(a, "no PUBACK") for a in alerts if a.alert_id in self.refuse]

    def close(self) -> None:
        pass


@dataclass
class Posts:
    url: str = "http://hooks.example/x"
    attempts: int = 4
    refuse: set[str] = field(default_factory=set)
    got: list[str] = field(default_factory=list)

    def post(self, alert: Alert) -> None:
        if alert.alert_id in self.refuse:
            raise ConnectorError("HTTP 503", retryable=True)
        self.got.append(alert.alert_id)

    def close(self) -> None:
        pass


def alert(alert_id: str, severity: str, device: str = "d1", state: str = "raised") -> Alert:
    return Alert(
        alert_id=alert_id,
        device_id=device,
        sensor_type="gas",
        site="s",
        detector="threshold",
        severity=severity,  # type: ignore[arg-type]
        ts=1,
        value=1.0,
        score=1.0,
        threshold=1.0,
        message="m",
        state=state,  # type: ignore[arg-type]
    )


def emitter(**alert_settings: object) -> tuple[AlertEmitter, Batches, Batches, Posts, Letters]:
    conf = AlertSettings(**{"webhook_url": "http://hooks.example/x", **alert_settings})  # type: ignore[arg-type]
    settings = load_settings().model_copy(update={"alert": conf})
    kafka, mqtt, hook, letters = Batches(), Batches(), Posts(), Letters()
    em = AlertEmitter(
        settings.alert, settings.kafka, settings.mqtt, letters, kafka=kafka, mqtt=mqtt, webhook=hook
    )
    return em, kafka, mqtt, hook, letters


def test_every_alert_is_recorded_and_each_severity_goes_where_its_route_says() -> None:
    em, kafka, mqtt, hook, letters = emitter()
    em.emit([alert("i", "info"), alert("w", "warning"), alert("c", "critical")])
    assert kafka.got == ["i", "w", "c"]
    assert mqtt.got == ["w", "c"] and hook.got == ["c"]  # default routes
    assert em.stats.to_log == 2 and letters.sent == []


def test_a_duplicate_goes_nowhere_and_a_follow_up_state_goes_where_its_raise_went() -> None:
    em, kafka, mqtt, _hook, _ = emitter()
    em.emit([alert("c", "critical")])
    em.emit([alert("c", "critical"), alert("c", "critical", state="cleared")])
    assert kafka.got == ["c", "c"] and mqtt.got == ["c", "c"]
    assert em.gate.stats.duplicates == 1


def test_past_the_rate_limit_alerts_are_recorded_not_notified() -> None:
    em, kafka, mqtt, _hook, _ = emitter(rate_limit_burst=2, rate_limit_per_minute=1)
    em.emit([alert(f"a{i}", "warning") for i in range(5)])
    assert len(kafka.got) == 5 and mqtt.got == ["a0", "a1"]


def test_one_output_failing_dead_letters_for_that_output_only() -> None:
    em, kafka, mqtt, hook, letters = emitter()
    mqtt.refuse, hook.refuse = {"c1"}, {"c2"}
    em.emit([alert("c1", "critical"), alert("c2", "critical", device="d2")])
    assert kafka.got == ["c1", "c2"]
    assert mqtt.got == ["c2"] and hook.got == ["c1"]
    assert sorted((x.sink, x.reason) for x in letters.sent) == [
        ("alerts-mqtt", "not_delivered"),
        ("webhook", "retries_exhausted"),
    ]
    assert em.stats.undelivered["mqtt"] == 1 and em.stats.webhook_failed == 1


def test_a_record_kafka_refuses_is_dead_lettered_too() -> None:
    em, kafka, _mqtt, _hook, letters = emitter()
    kafka.refuse = {"w"}
    em.emit([alert("w", "warning")])
    assert [(x.sink, x.reason) for x in letters.sent] == [("alerts-kafka", "rejected_by_server")]
