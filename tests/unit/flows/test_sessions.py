"""Session windows: the batched numpy operator equals a per-reading reference."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.sessions import SessionWindows
from flows.slots import SlotMap
from iotpipe.model import Aggregate
from tests.unit.flows.windowing import Batch, assert_same, cut_into_batches

TYPES = ["gas", "pressure", "temperature"]
NO_WATERMARK = -(2**62)


@dataclass
class Device:
    seen: int | None = None
    items: list[tuple[int, int, float]] | None = None  # the open session, if any
    sealed: list[list[tuple[int, int, float]]] = field(default_factory=list)


Row = tuple[str, int, int, int, float, float, float, float, float]


def summary(dev: str, items: list[tuple[int, int, float]], gap: int) -> Row:
    vals = np.array([v for _t, _a, v in items])
    last = max(items, key=lambda it: (it[0], it[1]))
    start = min(t for t, _a, _v in items)
    return (
        dev,
        start,
        last[0] + gap,
        len(items),
        vals.mean(),
        vals.min(),
        vals.max(),
        vals.std(),
        last[2],
    )


def reference(batches: list[Batch], gap: int, lateness: int) -> tuple[list[Row], int]:
    """Reading by reading, the rule of the ``flows.sessions`` docstring."""
    devices: dict[str, Device] = {}
    out: list[Row] = []
    late = 0
    max_ts: int | None = None
    arrival = 0
    for batch in batches:
        wm = NO_WATERMARK if max_ts is None else max_ts - lateness
        for dev, t, value in zip(batch.devices, batch.ts, batch.values, strict=True):
            d = devices.setdefault(dev, Device())
            reading = (t, arrival, value)
            arrival += 1
            if d.seen is None or t >= d.seen + gap:
                if d.items is not None:
                    d.sealed.append(d.items)
                    d.items = None
                if t + gap > wm:
                    d.items = [reading]
                else:
                    late += 1
            elif d.items is not None and t > min(it[0] for it in d.items) - gap:
                d.items.append(reading)
            else:
                late += 1
            d.seen = t if d.seen is None else max(d.seen, t)
        batch_max = max(batch.ts)
        max_ts = batch_max if max_ts is None else max(max_ts, batch_max)
        wm = max_ts - lateness
        for dev, d in devices.items():
            sessions = d.sealed + ([d.items] if d.items is not None else [])
            for items in sessions:
                if max(it[0] for it in items) + gap <= wm:
                    out.append(summary(dev, items, gap))
            d.sealed = [s for s in d.sealed if max(it[0] for it in s) + gap > wm]
            if d.items is not None and max(it[0] for it in d.items) + gap <= wm:
                d.items = None
    return out, late


def run_batched(
    batches: list[Batch], gap: int, lateness: int, pickle_midway: bool = False
) -> tuple[list[Row], int]:
    slots = SlotMap(TYPES)
    sessions = SessionWindows(gap)
    out: list[Aggregate] = []
    late = 0
    max_ts: int | None = None
    for i, batch in enumerate(batches):
        if pickle_midway and i == len(batches) // 2:
            sessions = pickle.loads(pickle.dumps(sessions))  # a Bytewax snapshot round trip
        wm = NO_WATERMARK if max_ts is None else max_ts - lateness
        n = len(batch.devices)
        s = slots.lookup(batch.devices, ["temperature"] * n, ["site"] * n)
        mask = sessions.add(s, np.array(batch.ts, np.int64), np.array(batch.values), wm)
        late += int(mask.sum())
        batch_max = max(batch.ts)
        max_ts = batch_max if max_ts is None else max(max_ts, batch_max)
        out.extend(sessions.close(max_ts - lateness, slots))
    assert all(a.window == "session" for a in out)
    rows = [
        (a.device_id, a.start, a.end, a.count, a.mean, a.min, a.max, a.std, a.last) for a in out
    ]
    return rows, late


def random_batches(
    seed: int, devices: int, n: int, disorder_ms: int, base: float, batches: int = 12
) -> list[Batch]:
    """Bursts of activity (clusters of readings) per device, jittered out of order."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 120_000, max(n // 8, 1))
    t = np.sort(centres[rng.integers(0, len(centres), n)] + rng.integers(0, 4000, n))
    t = np.maximum(t + rng.integers(-disorder_ms, disorder_ms + 1, n), 0)
    devs = [f"d{int(i)}" for i in rng.integers(0, devices, n)]
    vals = base + rng.normal(0, 0.01, n)
    return cut_into_batches(rng, devs, t, vals, batches)


@pytest.mark.parametrize("seed", range(5))
def test_batched_equals_reference(seed: int) -> None:
    batches = random_batches(seed, devices=40, n=3000, disorder_ms=4000, base=1013.25)
    want, want_late = reference(batches, 2_000, 1_000)
    got, got_late = run_batched(batches, 2_000, 1_000)
    assert got_late == want_late and want_late > 0  # the data really has late readings
    assert len({r[0] for r in want}) == 40 and len(want) > 200  # many sessions per device
    assert_same(got, want, exact=4)


def test_one_batch_is_the_same_as_many() -> None:
    many = random_batches(11, devices=10, n=1500, disorder_ms=1500, base=5.0, batches=40)
    one = [
        Batch(
            [d for b in many for d in b.devices],
            [t for b in many for t in b.ts],
            [v for b in many for v in b.values],
        )
    ]
    for batches in (many, one):
        want, want_late = reference(batches, 3_000, 2_000)
        got, got_late = run_batched(batches, 3_000, 2_000)
        assert got_late == want_late
        assert_same(got, want, exact=4)


def test_snapshot_round_trip_midway() -> None:
    batches = random_batches(7, devices=20, n=2000, disorder_ms=3000, base=20.0)
    want, want_late = reference(batches, 1_500, 500)
    got, got_late = run_batched(batches, 1_500, 500, pickle_midway=True)
    assert got_late == want_late
    assert_same(got, want, exact=4)


def test_statistics_against_numpy_one_session() -> None:
    values = [1013.2, 1013.4, 1013.1, 1013.9, 1012.8]
    ts = [1000, 3000, 2000, 7500, 6000]  # each < 5 s after the latest so far: one session
    slots = SlotMap(TYPES)
    ses = SessionWindows(5_000)
    s = slots.lookup(["p1"] * 5, ["pressure"] * 5, ["plant-a"] * 5)
    assert not ses.add(s, np.array(ts, np.int64), np.array(values), NO_WATERMARK).any()
    assert ses.open_windows == 1
    assert ses.close(12_499, slots) == []  # last reading 7.5 s + gap 5 s
    (agg,) = ses.close(12_500, slots)
    arr = np.array(values)
    assert (agg.device_id, agg.sensor_type, agg.site, agg.window) == (
        "p1",
        "pressure",
        "plant-a",
        "session",
    )
    assert (agg.start, agg.end, agg.count) == (1000, 12_500, 5)
    assert agg.mean == pytest.approx(arr.mean(), abs=1e-12)
    assert agg.std == pytest.approx(arr.std(), abs=1e-9)  # no cancellation at 1013 hPa
    assert (agg.min, agg.max, agg.last) == (1012.8, 1013.9, 1013.9)
    assert ses.open_windows == 0


def test_gap_boundary_splits_sessions_within_one_batch() -> None:
    slots = SlotMap(TYPES)
    ses = SessionWindows(1_000)
    s = slots.lookup(["a"] * 5, ["gas"] * 5, ["x"] * 5)
    # 999 ms apart continues; exactly 1000 ms apart starts a new session.
    ts = np.array([0, 999, 1999, 2998, 3998], np.int64)
    assert not ses.add(s, ts, np.arange(5.0), NO_WATERMARK).any()
    assert ses.open_windows == 3  # two sealed, one open
    aggs = ses.close(10_000, slots)
    assert [(a.start, a.end, a.count, a.last) for a in aggs] == [
        (0, 1999, 2, 1.0),
        (1999, 3998, 2, 3.0),
        (3998, 4998, 1, 4.0),
    ]


def test_sealed_session_waits_for_the_watermark() -> None:
    slots = SlotMap(TYPES)
    ses = SessionWindows(1_000)
    s = slots.lookup(["a", "a"], ["gas", "gas"], ["x", "x"])
    ses.add(s, np.array([0, 1500], np.int64), np.array([1.0, 2.0]), NO_WATERMARK)
    assert ses.close(999, slots) == []
    assert [(a.start, a.end) for a in ses.close(1000, slots)] == [(0, 1000)]
    assert [(a.start, a.end) for a in ses.close(2500, slots)] == [(1500, 2500)]


def test_lateness_rules() -> None:
    slots = SlotMap(TYPES)
    ses = SessionWindows(1_000)
    (a,) = slots.lookup(["a"], ["gas"], ["x"])
    one = np.array([a], np.int64)

    def add(t: int, wm: int = NO_WATERMARK) -> bool:
        return bool(ses.add(one, np.array([t], np.int64), np.array([float(t)]), wm)[0])

    assert not add(10_000)  # opens [10 s]
    assert not add(9_500)  # out of order but within gap of the start: joins, start 9.5 s
    assert not add(8_600)  # within gap of the new start: joins
    assert add(7_600)  # start - gap or older: late
    assert not add(12_000)  # 2 s after the latest reading: new session, the old one sealed
    assert add(10_900)  # belongs after the sealed session, too old for the open one: late
    assert not add(11_500)  # within gap before the open session's start: joins it
    (old,) = ses.close(11_000, slots)
    assert (old.start, old.end, old.count, old.last) == (8_600, 11_000, 3, 10_000.0)
    assert [(a.start, a.count) for a in ses.close(13_000, slots)] == [(11_500, 2)]
    assert add(12_500)  # belongs to the emitted session (within gap of 12 s): late
    assert add(20_000, wm=21_000)  # its own session would already be over: late
    assert add(20_500, wm=21_000)  # chains to that late reading: late too
    assert not add(22_000, wm=21_000)  # a fresh session
    assert ses.open_windows == 1


def test_many_devices_grow_the_state() -> None:
    n = 5000
    slots = SlotMap(TYPES)
    ses = SessionWindows(60_000)
    devices = [f"dev-{i}" for i in range(n)]
    s = slots.lookup(devices, ["gas"] * n, ["x"] * n)
    ses.add(s, np.full(n, 1000, np.int64), np.arange(n, dtype=float), NO_WATERMARK)
    ses.add(s, np.full(n, 2000, np.int64), np.arange(n, dtype=float) + 1, NO_WATERMARK)
    assert ses.open_windows == n
    aggs = ses.close(62_000, slots)
    assert sorted(a.mean for a in aggs) == [i + 0.5 for i in range(n)]
    assert all((a.start, a.end, a.count) == (1000, 62_000, 2) for a in aggs)


def test_gap_must_be_positive() -> None:
    with pytest.raises(ValueError):
        SessionWindows(0)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    devices=st.integers(1, 30),
    lateness=st.sampled_from([0, 1000, 15_000]),
    gap=st.sampled_from([1, 500, 2_000, 30_000]),
    disorder=st.sampled_from([0, 300, 3000]),
    batches=st.integers(1, 40),
)
def test_property_batched_equals_reference(
    seed: int, devices: int, lateness: int, gap: int, disorder: int, batches: int
) -> None:
    data = random_batches(seed, devices, n=400, disorder_ms=disorder, base=20.0, batches=batches)
    want, want_late = reference(data, gap, lateness)
    got, got_late = run_batched(data, gap, lateness)
    assert got_late == want_late
    assert_same(got, want, exact=4)


@pytest.mark.parametrize(
    ("ts", "late"),
    [
        ([100, 80, 60, 40, 5, 35], [False, False, False, False, True, False]),
        ([100, 50, 60], [False, True, True]),  # 60 could only join through late 50
    ],
)
def test_out_of_order_chain_in_one_batch(ts: list[int], late: list[bool]) -> None:
    """Readings extending a session backwards, one batch or one at a time."""
    whole = [Batch(["a"] * len(ts), ts, [float(t) for t in ts])]
    single = [Batch(["a"], [t], [float(t)]) for t in ts]
    for batches in (whole, single):
        got, got_late = run_batched(batches, 30, 10**6)
        want, want_late = reference(batches, 30, 10**6)
        assert got_late == want_late == sum(late)
        assert_same(got, want, exact=4)
    slots = SlotMap(TYPES)
    ses = SessionWindows(30)
    s = slots.lookup(["a"] * len(ts), ["gas"] * len(ts), ["x"] * len(ts))
    assert ses.add(s, np.array(ts, np.int64), np.zeros(len(ts)), NO_WATERMARK).tolist() == late
