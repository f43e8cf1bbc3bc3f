"""Detectors: each fires on its anomaly and stays quiet on clean data; the lifecycle
holds; the vectorised bank equals the per-reading reference whatever the batching."""

from __future__ import annotations

import pickle
from collections import Counter
from collections.abc import Iterable, Sequence

import msgspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.detectors import (
    DETECTORS,
    DetectorBank,
    DetectorConfig,
    DetectorSnapshot,
)
from flows.slots import SlotMap
from iotpipe.catalogue import Catalogue, load_catalogue
from iotpipe.errors import ConfigError
from iotpipe.model import Alert, alert_id
from tests.unit.flows.reference_detectors import ReferenceDetectors

# The packaged catalogue, but with the detector's own stuck rule for every type,
# so these tests pin down the mechanism; per-type rules are tested separately.
CAT = Catalogue(
    types={
        name: spec.model_copy(update={"stuck_min_count": None, "stuck_min_s": None})
        for name, spec in load_catalogue().types.items()
    }
)
TYPES = sorted(CAT.names)
T0 = 1_764_000_000_000
S = 1000  # one second in ms

Batch = tuple[list[int], list[int], list[float]]


def fleet(types: Sequence[str], sites: Sequence[str] | None = None) -> SlotMap:
    """A SlotMap with device ``dev-<i>`` of ``types[i]`` already registered."""
    slots = SlotMap(TYPES)
    ids = [f"dev-{i:05d}" for i in range(len(types))]
    slots.lookup(ids, list(types), list(sites or [f"site-{i % 3}" for i in range(len(types))]))
    return slots


def bank_for(types: Sequence[str], **config: object) -> DetectorBank:
    return DetectorBank(CAT, fleet(types), DetectorConfig(**config))  # type: ignore[arg-type]


def feed(bank: DetectorBank, slot: int, readings: Iterable[tuple[int, float]]) -> list[Alert]:
    """One device's readings, one micro-batch each."""
    out: list[Alert] = []
    for ts, value in readings:
        out += bank.process([slot], [ts], [value])
    return out


def calm(n: int, mean: float, sd: float, seed: int = 0) -> list[float]:
    """Sensor noise, bounded at 3 sigma as real sensor noise is (no 1e-4 tail events)."""
    rng = np.random.default_rng(seed)
    return list(mean + sd * np.clip(rng.standard_normal(n), -3, 3))


def key(a: Alert) -> tuple[int, str, str, str]:
    return (a.ts, a.device_id, a.detector, a.state)


# -- clean data --------------------------------------------------------------------


def test_200_devices_of_normal_noise_raise_nothing() -> None:
    types = [TYPES[i % len(TYPES)] for i in range(200)]
    bank = bank_for(types)
    rng = np.random.default_rng(7)
    typical = np.array([CAT[t].typical[0] for t in types])  # type: ignore[index]
    noise = np.array([CAT[t].typical[2] for t in types])  # type: ignore[index]
    alerts: list[Alert] = []
    for k in range(120):  # 20 minutes at 10 s, well past warm-up and stuck limits
        slots = np.arange(200)
        ts = T0 + k * 10 * S + rng.integers(0, 3 * S, 200)
        values = typical + noise * np.clip(rng.standard_normal(200), -3, 3)
        alerts += bank.process(slots, ts, values)
        alerts += bank.advance(T0 + k * 10 * S)
    assert alerts == []
    assert bank.stats.readings == 200 * 120


# -- threshold ---------------------------------------------------------------------


def test_threshold_raise_escalate_clear_share_one_id() -> None:
    bank = bank_for(["temperature"], detectors=("threshold",))
    alerts = feed(bank, 0, [(T0, 20.0), (T0 + S, 50.0), (T0 + 2 * S, 51.0), (T0 + 3 * S, 70.0)])
    back = [(T0 + 4 * S, 50.0), (T0 + 5 * S, 20.0), (T0 + 6 * S, 21.0), (T0 + 7 * S, 20.5)]
    alerts += feed(bank, 0, back)
    assert [(a.state, a.severity, a.ts, a.threshold) for a in alerts] == [
        ("raised", "warning", T0 + S, 45.0),
        ("escalated", "critical", T0 + 3 * S, 60.0),
        ("cleared", "critical", T0 + 7 * S, 45.0),  # the third reading back inside
    ]
    ids = {a.alert_id for a in alerts}
    assert ids == {alert_id("dev-00000", "temperature", "threshold", T0 + S)}
    raised = alerts[0]
    assert (raised.device_id, raised.sensor_type, raised.site) == (
        "dev-00000",
        "temperature",
        "site-0",
    )
    assert raised.value == 50.0 and raised.score == pytest.approx(5.0)
    assert "temperature" in raised.message and alerts[2].score < 0  # margin inside


def test_threshold_low_side_and_one_sided_types() -> None:
    bank = bank_for(["temperature", "gas"], detectors=("threshold",))
    alerts = bank.process([0, 1], [T0, T0], [-12.0, 30.0])
    assert [(a.sensor_type, a.severity, a.threshold) for a in alerts] == [
        ("temperature", "warning", -10.0),
        ("gas", "warning", 25.0),
    ]
    back = feed(bank, 1, [(T0 + k * S, 0.0) for k in (1, 2, 3)])  # no low bound for gas
    assert [a.state for a in back] == ["cleared"]


def test_threshold_sustain_ignores_a_single_noisy_reading() -> None:
    bank = bank_for(["temperature"], detectors=("threshold",), sustain_ms=60 * S)
    assert feed(bank, 0, [(T0, 50.0), (T0 + 10 * S, 20.0)]) == []
    alerts = feed(bank, 0, [(T0 + 20 * S + k * 20 * S, 50.0) for k in range(4)])
    assert [(a.state, a.ts) for a in alerts] == [("raised", T0 + 80 * S)]


def test_a_value_hovering_at_a_bound_is_one_episode_not_one_per_crossing() -> None:
    bank = bank_for(["temperature"], detectors=("threshold",))
    rng = np.random.default_rng(3)
    hover = [(T0 + k * 300 * S, 45.0 + float(rng.normal(0, 0.5))) for k in range(200)]
    alerts = feed(bank, 0, hover)
    assert [a.state for a in alerts] == ["raised"]  # never 3 readings in a row well inside
    # back inside, but within the deadband (a sigma of the device's noise): still active
    assert feed(bank, 0, [(T0 + (200 + k) * 300 * S, 44.9) for k in range(5)]) == []
    done = feed(bank, 0, [(T0 + (205 + k) * 300 * S, 40.0) for k in range(3)])
    assert [(a.state, a.ts) for a in done] == [("cleared", T0 + 207 * 300 * S)]


def test_sustain_in_readings_ignores_one_or_two_stray_readings() -> None:
    bank = bank_for(["temperature"], detectors=("threshold",), sustain_readings=3)
    stray = [(T0, 50.0), (T0 + S, 20.0), (T0 + 2 * S, 50.0), (T0 + 3 * S, 50.0), (T0 + 4 * S, 20.0)]
    assert feed(bank, 0, stray) == []
    held = feed(bank, 0, [(T0 + (5 + k) * S, 50.0) for k in range(3)])
    assert [(a.state, a.ts) for a in held] == [("raised", T0 + 7 * S)]


def test_cooldown_is_in_the_devices_own_cadence() -> None:
    """After a clear, a 5-minute sensor waits 5 of its intervals, not the 60 s floor."""
    bank = bank_for(["temperature"], detectors=("threshold",), clear_readings=1)
    step = 300 * S
    values = [20.0] * 8 + [50.0, 20.0, 50.0]
    got = feed(bank, 0, [(T0 + k * step, v) for k, v in enumerate(values)])
    # raised at 8, cleared at 9; at 10 (600 s later, past the 60 s floor) still held back
    assert [(a.state, (a.ts - T0) // step) for a in got] == [("raised", 8), ("cleared", 9)]
    assert feed(bank, 0, [(T0 + k * step, 20.0 if k < 13 else 50.0) for k in (11, 12, 13)]) == []
    later = feed(bank, 0, [(T0 + 14 * step, 50.0)])  # 5 intervals after the clear
    assert [a.state for a in later] == ["raised"]


def test_cooldown_suppresses_flapping_but_not_a_worse_alarm() -> None:
    bank = bank_for(["temperature"], detectors=("threshold",), cooldown_ms=60 * S, clear_readings=1)
    flaps = [(T0 + k * 10 * S, 50.0 if k % 2 == 0 else 20.0) for k in range(6)]
    alerts = feed(bank, 0, flaps)
    assert [a.state for a in alerts] == ["raised", "cleared"]  # cleared at T0 + 10 s
    later = feed(bank, 0, [(T0 + 71 * S, 50.0)])
    assert [a.state for a in later] == ["raised"]  # cooldown over
    feed(bank, 0, [(T0 + 80 * S, 20.0)])
    critical = feed(bank, 0, [(T0 + 90 * S, 70.0)])  # inside the cooldown, but worse
    assert [(a.state, a.severity) for a in critical] == [("raised", "critical")]


# -- alert budget ------------------------------------------------------------------


def test_alerts_beyond_the_budget_roll_into_one_flapping_alarm_and_none_is_lost() -> None:
    bank = bank_for(
        ["temperature"], detectors=("threshold", "flapping"), alert_budget_per_hour=4,
        clear_readings=1, cooldown_ms=0, cooldown_intervals=0,
    )  # fmt: skip
    # 10 episodes in 10 minutes; the 8th is critical
    flaps = [
        (T0 + k * 30 * S, (70.0 if k == 14 else 50.0) if k % 2 == 0 else 20.0) for k in range(20)
    ]
    alerts = feed(bank, 0, flaps)
    got = [(a.detector, a.state, a.severity, (a.ts - T0) // (30 * S), a.score) for a in alerts]
    threshold = [g for g in got if g[0] == "threshold"]
    flapping = [g for g in got if g[0] == "flapping"]
    assert [g[1] for g in threshold] == ["raised", "cleared"] * 4  # the budget: 4 whole episodes
    assert flapping == [
        ("flapping", "raised", "warning", 8, 1.0),  # the 5th raise, held back
        ("flapping", "escalated", "critical", 14, 4.0),  # a held-back critical is not hidden
    ]
    # an hour after the last held-back raise (k=18) it clears, with how many were held back
    quiet = feed(bank, 0, [(T0 + 18 * 30 * S + 3600 * S + k * S, 20.0) for k in range(2)])
    assert [(a.detector, a.state, a.ts, a.score) for a in quiet] == [
        ("flapping", "cleared", T0 + 18 * 30 * S + 3600 * S, 6.0)
    ]
    assert quiet[0].alert_id == alerts[[g[0] for g in got].index("flapping")].alert_id
    # a new hour, a new budget
    again = feed(bank, 0, [(T0 + 7200 * S, 50.0)])
    assert [(a.detector, a.state) for a in again] == [("threshold", "raised")]


def test_the_watermark_clears_a_flapping_alarm_as_a_reading_would() -> None:
    def run(by_watermark: bool) -> list[Alert]:
        bank = bank_for(
            ["temperature"], detectors=("threshold", "flapping"), alert_budget_per_hour=1,
            clear_readings=1, cooldown_ms=0, cooldown_intervals=0,
        )  # fmt: skip
        out = feed(bank, 0, [(T0 + k * S, 50.0 if k % 2 == 0 else 20.0) for k in range(6)])
        if by_watermark:
            out += bank.advance(T0 + 4 * S + 3601 * S)
        return out + feed(bank, 0, [(T0 + 4 * S + 3700 * S, 20.0)])

    assert run(True) == run(False)
    assert [a.state for a in run(True) if a.detector == "flapping"] == ["raised", "cleared"]


# -- statistical -------------------------------------------------------------------


def test_ewma_flags_a_spike_after_warm_up_only() -> None:
    # No cooldown here: the second spike is two readings after the first clears.
    bank = bank_for(
        ["temperature", "temperature"], detectors=("ewma",), cooldown_ms=0, cooldown_intervals=0
    )
    early = calm(10, 21.0, 0.3)
    early[5] = 30.0  # inside the warm-up: no verdict yet
    assert feed(bank, 0, [(T0 + k * 10 * S, v) for k, v in enumerate(early)]) == []
    values = calm(80, 21.0, 0.3, seed=1)
    values[50] = 21.0 + 6 * 0.3  # ~6 sigma: warning
    values[55] = 21.0 + 6 * 0.3  # the first must not have widened sigma enough to hide this
    values[60] = 30.0  # ~30 sigma: critical
    alerts = feed(bank, 1, [(T0 + k * 10 * S, v) for k, v in enumerate(values)])
    raised = [(a.ts, a.severity) for a in alerts if a.state == "raised"]
    assert raised == [
        (T0 + 50 * 10 * S, "warning"),
        (T0 + 55 * 10 * S, "warning"),
        (T0 + 60 * 10 * S, "critical"),
    ]
    assert all(a.score > 4 for a in alerts if a.state == "raised")
    assert Counter(a.state for a in alerts) == {"raised": 3, "cleared": 3}


def test_ewma_level_shift_raises_once_then_adapts_and_clears() -> None:
    bank = bank_for(["pressure"], detectors=("ewma",))
    values = calm(40, 1013.0, 0.5) + calm(200, 1020.0, 0.5, seed=3)
    alerts = feed(bank, 0, [(T0 + k * 10 * S, v) for k, v in enumerate(values)])
    assert [a.state for a in alerts] == ["raised", "cleared"]
    assert alerts[0].ts == T0 + 40 * 10 * S
    # here the variance catches up first; with a change point after 5 readings beyond
    # k_sigma the baseline starts again, its warm-up judges nothing, the third reading
    # clears, and the new level is normal from then on
    bank = bank_for(["pressure"], detectors=("ewma",), changepoint_readings=5)
    alerts = feed(bank, 0, [(T0 + k * 10 * S, v) for k, v in enumerate(values)])
    assert [(a.state, (a.ts - T0) // (10 * S)) for a in alerts] == [("raised", 40), ("cleared", 47)]


# -- rate of change ----------------------------------------------------------------


def test_rate_of_change_uses_time_between_readings() -> None:
    bank = bank_for(["temperature"] * 3, detectors=("rate_of_change",))
    # +8 in 1 s is 4x the 2/s limit; +8 in 10 s is fine; +15 in 1 s is critical (> 5x).
    fast = feed(bank, 0, [(T0 + k * S, 20.0 if k == 0 else 28.0) for k in range(5)])
    slow = feed(bank, 1, [(T0, 20.0), (T0 + 10 * S, 28.0)])
    assert [(a.state, a.severity, a.threshold) for a in fast] == [
        ("raised", "warning", 2.0),
        ("cleared", "warning", 2.0),
    ]
    assert fast[0].score == pytest.approx(4.0) and slow == []
    crit = feed(bank, 2, [(T0, 20.0), (T0 + S, 35.0)])
    assert [(a.state, a.severity, a.score) for a in crit] == [("raised", "critical", 7.5)]


# -- stuck -------------------------------------------------------------------------


def test_stuck_sensor_gives_one_alert_not_thousands() -> None:
    bank = bank_for(["humidity"])
    values = calm(40, 45.0, 1.0) + [44.125] * 2000
    alerts = feed(bank, 0, [(T0 + k * 10 * S, v) for k, v in enumerate(values)])
    assert [(a.detector, a.state) for a in alerts] == [("stuck", "raised")]
    raised = alerts[0]
    # Both limits met: 10 readings AND 120 s -> the 13th equal reading (120 s after the 1st).
    assert raised.ts == T0 + (40 + 12) * 10 * S and raised.score == 120.0
    moved = feed(bank, 0, [(T0 + (2040 + k) * 10 * S, 47.0 + k) for k in range(3)])
    cleared = [a for a in moved if a.detector == "stuck"]
    assert [(a.state, a.alert_id) for a in cleared] == [("cleared", raised.alert_id)]


def test_stuck_needs_both_count_and_duration() -> None:
    bank = bank_for(["humidity", "humidity"], detectors=("stuck",))
    many_quick = feed(bank, 0, [(T0 + k * S, 50.0) for k in range(100)])  # 99 s
    few_slow = feed(bank, 1, [(T0 + k * 60 * S, 50.0) for k in range(9)])  # 9 readings
    assert many_quick == [] and few_slow == []


def test_stuck_waives_the_duration_when_the_run_is_improbable_for_the_device() -> None:
    """A noisy 1 s sensor is stuck after 10 equal readings; a coarse one that often
    repeats a value still needs the 2 minutes."""
    bank = bank_for(["humidity", "humidity"], detectors=("stuck",))
    rng = np.random.default_rng(5)
    noisy = [round(45.0 + float(rng.normal(0, 1.0)), 3) for _ in range(600)]
    coarse = [float(rng.choice([45.0, 45.5])) for _ in range(600)]
    for slot, values in ((0, noisy), (1, coarse)):
        assert feed(bank, slot, [(T0 + k * S, v) for k, v in enumerate(values)]) == []
        start = T0 + 600 * S
        run = feed(bank, slot, [(start + k * S, 44.0) for k in range(200)])
        assert [a.state for a in run] == ["raised"]
        # the 10th equal reading, or the 2-minute mark for the coarse one
        assert run[0].ts == start + (9 if slot == 0 else 120) * S


# -- silence -----------------------------------------------------------------------


def test_silence_raised_once_by_the_watermark_and_cleared_by_a_reading() -> None:
    bank = bank_for(
        ["co2", "co2"], detectors=("silence",), silence_timeout_ms=60 * S, silence_interval_factor=0
    )
    bank.process([0, 1], [T0, T0], [600.0, 600.0])
    assert bank.advance(T0 + 60 * S) == []  # exactly at the timeout: not yet
    bank.process([1], [T0 + 50 * S], [600.0])
    first = bank.advance(T0 + 61 * S)
    assert [(a.device_id, a.state, a.ts, a.severity) for a in first] == [
        ("dev-00000", "raised", T0 + 60 * S, "warning")
    ]
    second = bank.advance(T0 + 1000 * S)
    assert [(a.device_id, a.ts) for a in second] == [("dev-00001", T0 + 110 * S)]
    assert bank.advance(T0 + 1500 * S) == []  # still silent: no repeats
    back = bank.process([0], [T0 + 2000 * S], [601.0])
    assert [(a.state, a.alert_id) for a in back] == [("cleared", first[0].alert_id)]


def test_silence_follows_each_devices_own_reporting_interval() -> None:
    """A 5-minute sensor is not silent between readings; a 1 s one keeps the fixed timeout."""
    bank = bank_for(["co2", "co2"], detectors=("silence",), silence_timeout_ms=60 * S)
    slow = [(0, T0 + k * 300 * S) for k in range(12)]
    fast = [(1, T0 + k * S) for k in range(3600)]
    for slot, ts in sorted(slow + fast, key=lambda r: r[1]):
        bank.process([slot], [ts], [600.0])
        if ts >= T0 + 300 * S:  # before its second reading a device's interval is unknown
            assert bank.advance(ts) == []
    # the slow one is silent after 5 of its intervals, the fast one after 60 s
    quiet = bank.advance(T0 + 11 * 300 * S + 1501 * S)
    assert sorted((a.device_id, a.ts, a.threshold) for a in quiet) == [
        ("dev-00000", T0 + 11 * 300 * S + 1500 * S, 1500.0),
        ("dev-00001", T0 + 3599 * S + 60 * S, 60.0),
    ]
    # one long outage does not teach a device to be quiet: gaps are capped
    bank.process([1], [T0 + 100_000 * S], [600.0])
    bank.process([1], [T0 + 100_001 * S], [600.0])
    later = bank.advance(T0 + 100_001 * S + 61 * S)
    assert [(a.device_id, a.state) for a in later] == [("dev-00001", "raised")]


def test_silence_is_deterministic_whatever_the_watermark_steps() -> None:
    def run(steps: Sequence[int]) -> list[Alert]:
        bank = bank_for(["gas"], detectors=("silence",))
        bank.process([0], [T0], [1.0])
        out: list[Alert] = []
        for w in steps:
            out += bank.advance(w)
        return out

    once = run([T0 + 1500 * S])  # one reading: the first-reading timeout (10 min) applies
    assert [(a.state, a.ts) for a in once] == [("raised", T0 + 600 * S)]
    assert once == run([T0 + k * 7 * S for k in range(220)])


# -- out of range ------------------------------------------------------------------


def test_out_of_range_is_critical() -> None:
    bank = bank_for(["humidity"], detectors=("out_of_range",))
    values = [50.0, 130.0, 140.0, 50.0, 50.0, 50.0]
    alerts = feed(bank, 0, [(T0 + k * S, v) for k, v in enumerate(values)])
    assert [(a.state, a.severity, a.threshold, a.score) for a in alerts] == [
        ("raised", "critical", 100.0, 30.0),
        ("cleared", "critical", 100.0, -50.0),
    ]


# -- batching, order, recovery ----------------------------------------------------


def anomalous_stream(n_dev: int, n_read: int, seed: int) -> list[tuple[int, int, float]]:
    """(slot, ts, value) in time order with spikes, jumps, stuck runs, gaps, duplicates."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[int, int, float]] = []
    for d in range(n_dev):
        spec = CAT[TYPES[d % len(TYPES)]]
        mean, _, sd = spec.typical  # type: ignore[misc]
        ts = T0 + int(rng.integers(0, 10 * S))
        stuck_left = 0
        for k in range(n_read):
            ts += int(rng.integers(1, 15 * S)) + (600 * S if rng.random() < 0.01 else 0)
            u = rng.random()
            if stuck_left:
                stuck_left -= 1
                v = rows[-1][2]
            elif u < 0.02:
                v = mean + sd * rng.choice([6.0, 12.0, -9.0])  # spike
            elif u < 0.03:
                v = spec.critical[1] or spec.warning[1] or spec.range[1]  # threshold
                v = float(v) * 1.01
            elif u < 0.035:
                v = spec.range[1] + 1.0
            elif u < 0.04 and k:
                stuck_left = int(rng.integers(5, 30))
                v = rows[-1][2]
            else:
                v = mean + sd * float(rng.standard_normal())
            rows.append((d, ts, float(v)))
            if rng.random() < 0.01:
                rows.append((d, ts, float(v)))  # redelivered duplicate
    rows.sort(key=lambda r: (r[1], r[0]))
    return rows


def run_stream(
    detectors: DetectorBank | ReferenceDetectors,
    rows: list[tuple[int, int, float]],
    rng: np.random.Generator | None,
) -> list[Alert]:
    """Watermarks every 2 minutes of event time; between them, random micro-batches
    (shuffled) for the bank, one reading per call for the reference (rng None)."""
    out: list[Alert] = []
    span = 120 * S
    edges = np.searchsorted([r[1] for r in rows], np.arange(T0, rows[-1][1] + span, span))
    for lo, hi in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
        seg = rows[lo:hi]
        if rng is None:
            for r in seg:
                out += detectors.process([r[0]], [r[1]], [r[2]])
        else:
            cuts = sorted(rng.integers(0, len(seg) + 1, int(rng.integers(0, 4))).tolist())
            for a, b in zip([0, *cuts], [*cuts, len(seg)], strict=True):
                part = [seg[i] for i in (a + rng.permutation(b - a)).tolist()]
                cols = list(zip(*part, strict=True)) if part else [(), (), ()]
                out += detectors.process(
                    np.array(cols[0], np.int64), np.array(cols[1], np.int64), np.array(cols[2])
                )
        out += detectors.advance(rows[hi - 1][1] if hi else T0)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bank_equals_per_reading_reference_whatever_the_batching(seed: int) -> None:
    types = [TYPES[d % len(TYPES)] for d in range(60)]
    rows = anomalous_stream(60, 120, seed)
    config = {
        1: DetectorConfig(),
        2: DetectorConfig(sustain_ms=15 * S),
        3: DetectorConfig(sustain_readings=2, clear_readings=2, changepoint_readings=4,
                          alert_budget_per_hour=3),
    }[seed]  # fmt: skip
    ref = run_stream(ReferenceDetectors(CAT, fleet(types), config), rows, None)
    got = run_stream(DetectorBank(CAT, fleet(types), config), rows, np.random.default_rng(seed))
    assert sorted(got, key=key) == sorted(ref, key=key)
    kinds = {a.detector for a in ref}
    assert kinds == set(DETECTORS)  # the stream exercises every detector
    # One batch holding everything gives the same alerts too (no watermark in between).
    one = DetectorBank(CAT, fleet(types), config)
    cols = list(zip(*rows, strict=True))
    whole = one.process(np.array(cols[0]), np.array(cols[1]), np.array(cols[2]))
    single = ReferenceDetectors(CAT, fleet(types), config)
    assert whole == single.process(list(cols[0]), list(cols[1]), list(cols[2]))


def test_snapshot_restore_continues_identically() -> None:
    types = [TYPES[d % len(TYPES)] for d in range(40)]
    rows = anomalous_stream(40, 100, seed=9)
    half = len(rows) // 2

    def batches(part: list[tuple[int, int, float]]) -> list[Batch]:
        return [
            tuple(map(list, zip(*part[i : i + 97], strict=True)))  # type: ignore[misc]
            for i in range(0, len(part), 97)
        ]

    straight = DetectorBank(CAT, fleet(types), DetectorConfig())
    for b in batches(rows[:half]):
        straight.process(*b)
    state = pickle.loads(pickle.dumps(straight.snapshot()))
    assert isinstance(state, DetectorSnapshot)
    restored = DetectorBank.restore(state, CAT, fleet(types))
    a_out: list[Alert] = []
    b_out: list[Alert] = []
    for b in batches(rows[half:]):
        a_out += straight.process(*b) + straight.advance(b[1][-1])
        b_out += restored.process(*b) + restored.advance(b[1][-1])
    assert a_out == b_out and a_out
    assert restored.stats == straight.stats
    # The snapshot is a copy: the run after it did not change it.
    again = DetectorBank.restore(state, CAT, fleet(types))
    assert again.stats.readings == state.stats.readings < straight.stats.readings


def test_restore_refuses_foreign_state() -> None:
    with pytest.raises(ConfigError):
        DetectorBank.restore({"not": "a snapshot"}, CAT, fleet(["gas"]))
    bank = bank_for(["gas", "gas"])
    with pytest.raises(ConfigError, match="devices"):
        DetectorBank.restore(bank.snapshot(), CAT, fleet(["gas"]))


# -- state, growth, config ---------------------------------------------------------


def test_state_grows_with_the_slot_map_and_stays_small() -> None:
    slots = fleet(["gas"])
    bank = DetectorBank(CAT, slots, DetectorConfig())
    n = 5000  # past the SlotMap's initial 1024
    new = slots.lookup([f"g{i}" for i in range(n)], ["gas"] * n, ["s"] * n)
    alerts = bank.process(new, np.full(n, T0), np.full(n, 60.0))
    assert len([a for a in alerts if a.detector == "threshold"]) == n
    assert bank.bytes_per_device() < 256


def test_bad_input_is_counted_not_fatal() -> None:
    bank = bank_for(["gas"])
    assert bank.process([0, 0], [T0, T0 + S], [float("nan"), float("inf")]) == []
    bank.process([0, 0], [T0 + 2 * S, T0 + 2 * S], [1.0, 1.0])
    assert (bank.stats.non_finite, bank.stats.stale, bank.stats.readings) == (2, 1, 1)
    assert bank.process([], [], []) == []
    with pytest.raises(ValueError, match="slot"):
        bank.process([5], [T0], [1.0])
    with pytest.raises(ValueError, match="length"):
        bank.process([0, 0], [T0], [1.0])


@pytest.mark.parametrize(
    "bad",
    [{"ewma_alpha": 0.0}, {"k_sigma_critical": 1.0}, {"detectors": ("nope",)}, {"cooldown_ms": -1}],
)
def test_config_is_validated(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        DetectorConfig(**bad)  # type: ignore[arg-type]


def test_only_enabled_detectors_run() -> None:
    bank = bank_for(["humidity"], detectors=())
    assert feed(bank, 0, [(T0, 50.0), (T0 + S, 500.0)]) == []
    assert bank.advance(T0 + 10**9) == []


# -- properties --------------------------------------------------------------------

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-1e6, 1e6),
    st.sampled_from([0.0, 25.0, 1013.0, -60.0, 150.0]),
)
batch = st.lists(
    st.tuples(st.integers(0, 9), st.integers(T0 - 10**6, T0 + 10**7), values), max_size=40
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(batch, st.integers(T0, T0 + 2 * 10**7)), max_size=8))
def test_random_batches_never_crash_and_alerts_are_well_formed(
    batches: list[tuple[list[tuple[int, int, float]], int]],
) -> None:
    types = [TYPES[i % len(TYPES)] for i in range(10)]
    bank = DetectorBank(CAT, fleet(types), DetectorConfig(ewma_warmup=2, stuck_min_count=2))
    for rows, watermark in batches:
        cols = list(zip(*rows, strict=True)) if rows else [(), (), ()]
        alerts = bank.process(list(cols[0]), list(cols[1]), list(cols[2]))
        alerts += bank.advance(watermark)
        for a in alerts:
            msgspec.json.decode(msgspec.json.encode(a), type=Alert)  # finite, valid JSON
            assert a.detector in DETECTORS and a.severity in ("warning", "critical")


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, len(TYPES) - 1),
    st.floats(0.0, 1.0),
    st.lists(st.integers(1, 20), min_size=1, max_size=12),
    st.integers(1, 60 * S),
)
def test_a_constant_in_bounds_signal_only_ever_reports_stuck(
    type_index: int, where: float, batch_sizes: list[int], step_ms: int
) -> None:
    spec = CAT[TYPES[type_index]]
    lo = max(spec.range[0], spec.warning[0] if spec.warning[0] is not None else -np.inf)
    hi = min(spec.range[1], spec.warning[1] if spec.warning[1] is not None else np.inf)
    value = lo + (hi - lo) * where
    bank = bank_for([TYPES[type_index]])
    alerts: list[Alert] = []
    ts = T0
    for size in batch_sizes:
        stamps = [ts + (k + 1) * step_ms for k in range(size)]
        alerts += bank.process([0] * size, stamps[::-1], [value] * size)
        ts = stamps[-1]
        alerts += bank.advance(ts)
    assert all(a.detector == "stuck" for a in alerts)
    assert len(alerts) <= 1
    n = sum(batch_sizes)
    expect = n >= 10 and (n - 1) * step_ms >= 120 * S
    assert [a.state for a in alerts] == (["raised"] if expect else [])


def test_stuck_rule_per_sensor_type_from_the_catalogue() -> None:
    """A type with its own stuck rule uses it; others keep the detector default."""
    cat = Catalogue(
        types={
            **CAT.types,
            "humidity": CAT["humidity"].model_copy(update={"stuck_min_count": 3, "stuck_min_s": 5}),
        }
    )
    types = ["humidity", "co2"]
    bank = DetectorBank(cat, fleet(types), DetectorConfig())
    alerts = []
    for i in range(6):  # 6 identical readings, 2 s apart: 10 s
        slots = np.array([0, 1], np.int64)
        ts = np.full(2, T0 + i * 2000, np.int64)
        alerts += bank.process(slots, ts, np.array([44.0, 600.0]))
    stuck = [a for a in alerts if a.detector == "stuck"]
    assert [(a.sensor_type, a.state) for a in stuck] == [("humidity", "raised")]
    assert stuck[0].ts == T0 + 3 * 2000  # 4th reading: 3 repeats after 6 s >= 5 s
    assert stuck[0].threshold == 5.0
