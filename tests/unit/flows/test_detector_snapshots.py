"""Detector state across restarts and layouts: versioned snapshots, old snapshots,
retuned settings at a restart, and a user's own detector added by one class."""

from __future__ import annotations

import pickle
from dataclasses import replace
from typing import ClassVar

import numpy as np

from flows.detectors import (
    NO_TS,
    Detector,
    DetectorBank,
    DetectorConfig,
    DetectorSnapshot,
    Events,
    Round,
    register,
)
from flows.detectors.bank import _V1_NAMES
from flows.partition import SNAPSHOT_VERSION, FlowConfig, PartitionState
from iotpipe.catalogue import load_catalogue
from iotpipe.codec import encode
from iotpipe.model import Alert, Reading
from tests.unit.flows.test_detectors import CAT, T0, anomalous_stream, fleet

TYPES = sorted(CAT.names)
S = 1000


def run(bank: DetectorBank, rows: list[tuple[int, int, float]]) -> list[Alert]:
    out: list[Alert] = []
    for i in range(0, len(rows), 53):
        part = rows[i : i + 53]
        s, t, x = (list(c) for c in zip(*part, strict=True))
        out += bank.process(s, t, x) + bank.advance(t[-1])
    return out


def halves() -> tuple[list[str], list[tuple[int, int, float]], list[tuple[int, int, float]]]:
    types = [TYPES[d % len(TYPES)] for d in range(30)]
    rows = anomalous_stream(30, 80, seed=4)
    return types, rows[: len(rows) // 2], rows[len(rows) // 2 :]


def as_version_1(snap: DetectorSnapshot) -> DetectorSnapshot:
    """The same state under the flat column names the version-1 bank used."""
    back = {v: k for k, v in _V1_NAMES.items()}
    arrays = {}
    for name, col in snap.arrays.items():
        if ".alarm." in name:
            det, _, field = name.partition(".alarm.")
            arrays[f"{det}.{field}"] = col
        elif name in back:  # columns added since version 1 (silence.interval) are not in it
            arrays[back[name]] = col
    return replace(snap, arrays=arrays, version=1)


# Version 1 had no learned reporting interval, hysteresis or alert budget: with
# those off, a resume is exact.
V1_CONFIG = DetectorConfig(
    silence_interval_factor=0, cooldown_intervals=0, clear_readings=1, alert_budget_per_hour=0
)


def test_a_version_1_snapshot_resumes_exactly_where_it_stopped() -> None:
    types, first, second = halves()
    straight = DetectorBank(CAT, fleet(types), V1_CONFIG)
    run(straight, first)
    old = as_version_1(straight.snapshot())
    assert "threshold.active" in old.arrays and "last_ts" in old.arrays
    restored = DetectorBank.restore(old, CAT, fleet(types))
    expected = run(straight, second)
    assert expected and run(restored, second) == expected


def test_a_bank_pickled_with_the_version_1_layout_unpickles() -> None:
    """Recovery stores written before the detectors were split held the bank itself."""
    types, first, second = halves()
    straight = DetectorBank(CAT, fleet(types), V1_CONFIG)
    run(straight, first)
    snap = as_version_1(straight.snapshot())
    legacy = object.__new__(DetectorBank)
    legacy.__setstate__(
        {"catalogue": CAT, "slots": straight.slots, "config": snap.config,
         "watermark": snap.watermark, "stats": snap.stats, "_count_cap": 100,
         "_a": snap.arrays}
    )  # fmt: skip
    restored = pickle.loads(pickle.dumps(legacy))
    assert run(restored, second) == run(straight, second)


def test_a_column_the_snapshot_lacks_starts_from_its_fill() -> None:
    """A field added to a detector after the snapshot was taken: no error, a fresh start."""
    types, first, _ = halves()
    bank = DetectorBank(CAT, fleet(types), DetectorConfig())
    run(bank, first)
    snap = bank.snapshot()
    del snap.arrays["stuck.since"], snap.arrays["stuck.alarm.active"]
    restored = DetectorBank.restore(snap, CAT, fleet(types))
    stuck = next(d for d in restored.detectors if d.name == "stuck")
    assert (stuck.state["since"][: len(types)] == NO_TS).all()
    assert not stuck.alarm.state["active"].any()
    assert (restored.baseline.state["count"][: len(types)] > 0).all()


def reading(device: str, ts: int, value: float) -> bytes:
    return encode(Reading(device_id=device, sensor_type="gas", ts=ts, value=value))


def test_partition_snapshot_is_versioned_and_applies_the_settings_of_the_restart() -> None:
    config = FlowConfig(windows_ms=(10_000,), rollup=False)
    state = PartitionState(load_catalogue(), config)
    wall = T0 / 1000
    state.on_values([reading("a", T0 + i * S, 10.0) for i in range(5)], now=wall)
    assert pickle.loads(state.snapshot()) is not None
    assert state.__getstate__()["version"] == SNAPSHOT_VERSION == 2
    assert isinstance(state.__getstate__()["detectors"], DetectorSnapshot)

    same = PartitionState.restore(state.snapshot())
    assert same.detectors.config == config.detectors
    retuned = FlowConfig(
        windows_ms=(60_000,),  # the open windows were built for 10 s: kept
        rollup=False,
        allowed_lateness_ms=9_000,
        detectors=DetectorConfig(detectors=("threshold",), k_sigma=6.0),
    )
    resumed = PartitionState.restore(state.snapshot(), load_catalogue(), retuned)
    assert [d.name for d in resumed.detectors.detectors] == ["threshold"]
    assert resumed.detectors.config.k_sigma == 6.0
    assert resumed.config.allowed_lateness_ms == 9_000
    assert resumed.config.windows_ms == (10_000,)
    assert resumed.detectors.stats.readings == 5
    # the threshold detector kept its per-device state through the retune
    assert resumed.detectors.baseline.state["count"][0] == 5


@register
class AboveFortyTwo(Detector):
    """The whole of a user's detector: a class, its columns, a registration."""

    name: ClassVar[str] = "above_42"
    fields: ClassVar = {"over": (np.int32, 0)}

    def evaluate(self, r: Round, ev: Events) -> None:
        over = r.x > 42
        self.state["over"][r.s] = np.where(over, self.state["over"][r.s] + 1, 0)
        sev = np.where(self.state["over"][r.s] >= 2, 1, 0).astype(np.int8)
        self.alarm.transition(r.s, r.t, sev, r.x, r.x - 42, np.full(r.s.size, 42.0), ev)

    @staticmethod
    def message(sensor_type: str, unit: str, value: float, score: float, threshold: float) -> str:
        return f"{sensor_type} {value:g} {unit} over 42"


def test_a_registered_detector_runs_with_the_shared_lifecycle_and_snapshots() -> None:
    config = DetectorConfig(detectors=("above_42",), cooldown_ms=0)
    bank = DetectorBank(CAT, fleet(["gas"]), config)
    values = [40.0, 43.0, 44.0, 45.0, 41.0, 40.0, 39.0]
    alerts = []
    for i, v in enumerate(values[:3]):
        alerts += bank.process([0], [T0 + i * S], [v])
    resumed = DetectorBank.restore(pickle.loads(pickle.dumps(bank.snapshot())), CAT, bank.slots)
    for i, v in enumerate(values[3:], start=3):
        alerts += resumed.process([0], [T0 + i * S], [v])
    assert [(a.detector, a.state, a.ts) for a in alerts] == [
        ("above_42", "raised", T0 + 2 * S),
        ("above_42", "cleared", T0 + 6 * S),  # hysteresis: 3 readings back
    ]
    assert alerts[0].message == f"gas 44 {CAT['gas'].unit} over 42"
    assert alerts[0].alert_id == alerts[1].alert_id
