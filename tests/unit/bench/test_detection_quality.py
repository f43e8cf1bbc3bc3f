"""Detection-quality scoring: the matching rules on hand-made labels and alerts, and one
small simulated fleet end to end (the bench's figures are only as good as this logic)."""

from __future__ import annotations

import pytest

from bench.detection_quality import GRACE_MS, Raised, score, simulate
from simulators.anomalies import Label

S = 1000
T0 = 1_764_000_000_000


def label(device: str, kind: str, start_s: int, end_s: int, category: str = "anomaly") -> Label:
    return Label(
        device_id=device,
        sensor_type="temperature",
        site="site",
        category=category,
        kind=kind,
        start_ts=T0 + start_s * S,
        end_ts=T0 + end_s * S,
    )


def alert(device: str, at_s: float, detector: str = "ewma") -> Raised:
    return Raised(device, detector, T0 + int(at_s * S))


def test_true_and_false_positives_and_delay() -> None:
    labels = [label("a", "spike", 100, 100), label("a", "level_shift", 1000, 1100)]
    alerts = [
        alert("a", 100),  # the spike, no delay
        alert("a", 1030, "rate_of_change"),  # the shift, 30 s late
        alert("a", 1050),  # the shift again: a true positive, not a second detection
        alert("a", 5000),  # nothing there: false
        alert("b", 100, "threshold"),  # right time, wrong device: false
    ]
    result = score(labels, alerts)
    assert (result.true_positives, result.false_positives) == (3, 2)
    assert result.fp_by_detector == {"ewma": 1, "threshold": 1}
    assert result.precision == pytest.approx(0.6)
    assert result.kinds["spike"].delays_ms == [0]
    assert result.kinds["level_shift"].delays_ms == [30 * S]
    assert result.kinds["level_shift"].first_detector == {"rate_of_change": 1}
    assert result.recall == 1.0
    assert result.kinds["drift"].recall is None  # no labels: no figure, not 0


def test_grace_after_the_end_but_not_before_the_start() -> None:
    labels = [label("a", "stuck", 1000, 1100), label("b", "stuck", 1000, 1100)]
    grace_s = GRACE_MS // S
    early = alert("a", 999)  # before the anomaly: cannot be its detection
    late_ok = alert("b", 1100 + grace_s)
    result = score(labels, [early, late_ok])
    assert result.kinds["stuck"].detected == 1
    assert result.kinds["stuck"].delays_ms == [(100 + grace_s) * S]
    assert result.false_positives == 1
    too_late = score(labels[1:], [alert("b", 1100 + grace_s + 1)])
    assert too_late.kinds["stuck"].detected == 0
    assert too_late.false_positives == 1


def test_dropout_allows_the_silence_timeout_on_top_of_the_grace() -> None:
    labels = [label("a", "dropout", 1000, 1050)]
    at = 1050 + (GRACE_MS + 60 * S) // S
    found = score(labels, [alert("a", at, "silence")], silence_timeout_ms=60 * S)
    assert found.kinds["dropout"].detected == 1
    shorter = score(labels, [alert("a", at, "silence")], silence_timeout_ms=30 * S)
    assert shorter.kinds["dropout"].detected == 0
    assert shorter.false_positives == 1


def test_faults_are_not_scored_and_censored_labels_are_left_out() -> None:
    labels = [
        label("a", "clock_skew", 0, 10_000, category="fault"),
        label("a", "spike", 100, 100),
        label("b", "stuck", 9_950, 10_000),  # its window reaches past the horizon
    ]
    alerts = [alert("a", 5000), alert("b", 9_990, "stuck")]
    result = score(labels, alerts, horizon_ts=T0 + 10_000 * S)
    assert "clock_skew" not in result.kinds
    assert result.labels == 1  # the spike; the stuck run is censored
    assert result.kinds["stuck"].censored == 1
    assert (result.true_positives, result.false_positives, result.ignored) == (0, 1, 1)
    assert result.recall == 0.0


def test_overlapping_windows_of_one_device() -> None:
    """Back-to-back anomalies: one alert may lie in both windows and detects both."""
    labels = [label("a", "spike", 100, 100), label("a", "level_shift", 110, 200)]
    result = score(labels, [alert("a", 150)])
    assert result.detected == 2
    assert result.true_positives == 1


def test_small_fleet_end_to_end_finds_the_obvious_anomalies() -> None:
    """200 devices, one simulated hour, anomalies of the sharp kinds only, through
    ``PartitionState`` exactly as the flow runs: spikes and out-of-range readings
    are what every detector bank must catch, so recall on them must be high."""
    run = simulate(
        devices=200, hours=1.0, seed=3, anomaly_rate=0.002, anomaly_mix="spike=1,out_of_range=1"
    )
    assert run.readings > 60_000
    assert {lab.kind for lab in run.labels} == {"spike", "out_of_range"}
    result = score(run.labels, run.alerts, horizon_ts=run.horizon_ts)
    for kind in ("spike", "out_of_range"):
        k = result.kinds[kind]
        assert k.labels >= 20, kind
        assert k.recall is not None and k.recall >= 0.9, (kind, k.as_dict())
        assert k.delay_s(50) == 0.0  # seen at the anomalous reading itself
    assert result.precision is not None and result.precision >= 0.8


def test_field_conditions_mix_cadences_and_keep_hovering_devices_apart() -> None:
    from bench.conditions import Conditions

    run = simulate(
        devices=90, hours=0.5, seed=2, anomaly_rate=0.0, jitter=0.5,
        conditions=Conditions(cadences_s=(1.0, 60.0), hover=0.3),
    )  # fmt: skip
    assert set(run.cadence_s.values()) == {1.0, 60.0}
    slow = [d for d, c in run.cadence_s.items() if c == 60.0]
    assert all(run.silence_ms[d] >= 5 * 48_000 for d in slow)  # five of its own intervals
    hovering = run.hover.as_dict()
    assert hovering["devices"] and run.hover.crossings > 0
    assert hovering["raised_per_crossing"] is not None and hovering["raised_per_crossing"] < 0.1
    # their alerts are counted apart, not as false positives of the scored fleet
    width = len(next(iter(run.cadence_s)).split("-")[1])
    ids = {f"dev-{d:0{width}d}" for d in run.hover.devices}
    assert ids <= set(run.cadence_s)  # real device ids
    assert not {a.device_id for a in run.alerts} & ids
