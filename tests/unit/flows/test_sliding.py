"""Sliding windows: the batched pane-merging operator equals a per-reading reference."""

from __future__ import annotations

import pickle
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.sliding import SlidingWindows
from flows.slots import SlotMap
from iotpipe.model import Aggregate
from tests.unit.flows.windowing import Batch, assert_same, random_batches

TYPES = ["gas", "pressure", "temperature"]
NO_WATERMARK = -(2**62)


Row = tuple[str, int, int, float, float, float, float, float]


def reference(
    batches: list[Batch], length: int, slide: int, lateness: int
) -> tuple[list[Row], int]:
    """Per-reading reference: every window is computed from its raw readings."""
    readings: dict[str, list[tuple[int, int, float]]] = defaultdict(list)
    out: list[Row] = []
    late = 0
    max_ts: int | None = None
    closed_k: int | None = None  # every window k <= closed_k has been emitted
    arrival = 0
    for batch in batches:
        wm = NO_WATERMARK if max_ts is None else max_ts - lateness
        for dev, ts, value in zip(batch.devices, batch.ts, batch.values, strict=True):
            p = ts // slide  # the last window containing ts starts at p * slide
            if p * slide + length <= wm or (closed_k is not None and p <= closed_k):
                late += 1
                continue
            readings[dev].append((ts, arrival, value))
            arrival += 1
        batch_max = max(batch.ts)
        max_ts = batch_max if max_ts is None else max(max_ts, batch_max)
        k_max = (max_ts - lateness - length) // slide
        if closed_k is not None and k_max <= closed_k:
            continue
        for dev, items in readings.items():
            wins = {ts // slide - j for ts, _a, _v in items for j in range(length // slide)}
            for k in sorted(wins):
                if k > k_max or (closed_k is not None and k <= closed_k):
                    continue
                inside = [it for it in items if k * slide <= it[0] < k * slide + length]
                vals = np.array([v for _t, _a, v in inside])
                last = max(inside, key=lambda it: (it[0], it[1]))[2]
                out.append(
                    (
                        dev,
                        k * slide,
                        len(inside),
                        vals.mean(),
                        vals.min(),
                        vals.max(),
                        vals.std(),
                        last,
                    )
                )
            # Forget readings no open window needs.
            readings[dev] = [it for it in items if it[0] // slide > k_max]
        closed_k = k_max
    return out, late


def run_batched(
    batches: list[Batch], length: int, slide: int, lateness: int, pickle_midway: bool = False
) -> tuple[list[Row], int]:
    slots = SlotMap(TYPES)
    windows = SlidingWindows(length, slide)
    out: list[Aggregate] = []
    late = 0
    max_ts: int | None = None
    for i, batch in enumerate(batches):
        if pickle_midway and i == len(batches) // 2:
            windows = pickle.loads(pickle.dumps(windows))  # a Bytewax snapshot round trip
        wm = NO_WATERMARK if max_ts is None else max_ts - lateness
        n = len(batch.devices)
        s = slots.lookup(batch.devices, ["temperature"] * n, ["site"] * n)
        late += int(windows.add(s, np.array(batch.ts, np.int64), np.array(batch.values), wm).sum())
        batch_max = max(batch.ts)
        max_ts = batch_max if max_ts is None else max(max_ts, batch_max)
        out.extend(windows.close(max_ts - lateness, slots))
    for a in out:
        assert a.end - a.start == length
    rows = [(a.device_id, a.start, a.count, a.mean, a.min, a.max, a.std, a.last) for a in out]
    return rows, late


@pytest.mark.parametrize("seed", range(5))
def test_batched_equals_reference(seed: int) -> None:
    batches = random_batches(seed, devices=40, n=3000, disorder_ms=4000, base=1013.25)
    want, want_late = reference(batches, 6_000, 2_000, 500)
    got, got_late = run_batched(batches, 6_000, 2_000, 500)
    assert got_late == want_late and want_late > 0  # the data really has late readings
    assert_same(got, want)


def test_snapshot_round_trip_midway() -> None:
    batches = random_batches(7, devices=20, n=2000, disorder_ms=3000, base=20.0)
    want, want_late = reference(batches, 6_000, 3_000, 500)
    got, got_late = run_batched(batches, 6_000, 3_000, 500, pickle_midway=True)
    assert got_late == want_late
    assert_same(got, want)


def test_windows_close_one_slide_at_a_time() -> None:
    ts = np.array([1000, 3000, 12_000, 19_000, 25_000, 2000], np.int64)
    slots = SlotMap(TYPES)
    win = SlidingWindows(30_000, 10_000)
    s = slots.lookup(["p1"] * 6, ["pressure"] * 6, ["plant-a"] * 6)
    assert not win.add(s, ts, np.arange(6.0), NO_WATERMARK).any()
    assert win.open_windows == 3  # one row per (device, pane), not per window
    assert [(a.start, a.count) for a in win.close(19_999, slots)] == [(-20_000, 3)]
    assert [(a.start, a.count) for a in win.close(20_000, slots)] == [(-10_000, 5)]
    assert win.close(29_999, slots) == []  # [0, 30 s) is not over yet
    (agg,) = win.close(30_000, slots)
    assert (agg.device_id, agg.sensor_type, agg.site, agg.window) == (
        "p1",
        "pressure",
        "plant-a",
        "30s/10s",
    )
    assert (agg.start, agg.end, agg.count, agg.last) == (0, 30_000, 6, 4.0)
    assert win.open_windows == 2  # panes [10 s, 20 s) and [20 s, 30 s) still needed


def test_window_of_three_panes_matches_numpy() -> None:
    ts = np.array([1000, 3000, 12_000, 19_000, 25_000, 2000], np.int64)
    values = np.array([1013.2, 1013.4, 1013.1, 1013.9, 1012.8, 1013.3])
    slots = SlotMap(TYPES)
    win = SlidingWindows(30_000, 10_000)
    s = slots.lookup(["p1"] * 6, ["pressure"] * 6, ["plant-a"] * 6)
    win.add(s, ts, values, NO_WATERMARK)
    aggs = {a.start: a for a in win.close(10**9, slots)}
    assert sorted(aggs) == [-20_000, -10_000, 0, 10_000, 20_000]
    for start, agg in aggs.items():
        inside = (ts >= start) & (ts < start + 30_000)
        arr = values[inside]
        assert (agg.end, agg.count, agg.window) == (start + 30_000, len(arr), "30s/10s")
        assert agg.mean == pytest.approx(arr.mean(), abs=1e-12)
        assert agg.std == pytest.approx(arr.std(), abs=1e-9)  # no cancellation at 1013 hPa
        assert (agg.min, agg.max) == (arr.min(), arr.max())
        assert agg.last == values[inside][np.argmax(ts[inside])]
    assert win.open_windows == 0  # every pane dropped once its last window closed


def test_boundaries_and_lateness() -> None:
    slots = SlotMap(TYPES)
    win = SlidingWindows(20_000, 10_000)
    s = slots.lookup(["a", "a"], ["gas", "gas"], ["x", "x"])
    win.add(s, np.array([9_999, 10_000], np.int64), np.array([1.0, 2.0]), NO_WATERMARK)
    # Window [-10 s, 10 s) holds only 9_999; [0, 20 s) holds both.
    aggs = win.close(20_000, slots)
    assert [(a.start, a.end, a.count, a.last) for a in aggs] == [
        (-10_000, 10_000, 1, 1.0),
        (0, 20_000, 2, 2.0),
    ]
    assert win.open_windows == 1  # pane [10 s, 20 s) is still in window [10 s, 30 s)
    # 5_000: windows up to [0, 20 s) closed, so late; 15_000 still fits [10 s, 30 s).
    late = win.add(
        np.array([s[0]] * 3),
        np.array([5_000, 15_000, 19_999], np.int64),
        np.array([3.0, 4.0, 5.0]),
        20_000,
    )
    assert late.tolist() == [True, False, False]
    (agg,) = win.close(30_000, slots)
    assert (agg.start, agg.count, agg.last) == (10_000, 3, 5.0)
    # A watermark that steps back does not reopen closed windows.
    assert win.add(s[:1], np.array([15_000], np.int64), np.array([9.0]), 0).tolist() == [True]


def test_late_by_watermark_at_add() -> None:
    slots = SlotMap(TYPES)
    win = SlidingWindows(60_000, 10_000)
    s = slots.lookup(["a"] * 3, ["gas"] * 3, ["x"] * 3)
    # Watermark 70 s: windows ending by 70 s are closed. 9_999's last window is
    # [0, 60 s), 10_000's is [10 s, 70 s): both late; 20_000 is still in [20 s, 80 s).
    late = win.add(s, np.array([9_999, 10_000, 20_000], np.int64), np.zeros(3), 70_000)
    assert late.tolist() == [True, True, False]


def test_many_devices_grow_the_state() -> None:
    n = 5000
    slots = SlotMap(TYPES)
    win = SlidingWindows(60_000, 20_000)
    devices = [f"dev-{i}" for i in range(n)]
    s = slots.lookup(devices, ["gas"] * n, ["x"] * n)
    win.add(s, np.full(n, 1000, np.int64), np.arange(n, dtype=float), NO_WATERMARK)
    assert win.open_windows == n
    aggs = win.close(60_000, slots)
    assert len(aggs) == 3 * n  # each reading is in three windows
    assert sorted(a.mean for a in aggs) == sorted(list(range(n)) * 3)
    assert win.open_windows == 0


@pytest.mark.parametrize(
    ("length", "slide", "label"),
    [(60_000, 10_000, "1m/10s"), (3_600_000, 60_000, "1h/1m"), (3000, 1500, "3s/1500ms")],
)
def test_labels(length: int, slide: int, label: str) -> None:
    assert SlidingWindows(length, slide).label == label


@pytest.mark.parametrize(("length", "slide"), [(10_000, 3_000), (0, 1000), (1000, 0)])
def test_length_must_be_a_multiple_of_slide(length: int, slide: int) -> None:
    with pytest.raises(ValueError):
        SlidingWindows(length, slide)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    devices=st.integers(1, 30),
    lateness=st.sampled_from([0, 1000, 15_000]),
    shape=st.sampled_from([(1000, 1000), (10_000, 2_000), (60_000, 10_000), (9_000, 3_000)]),
)
def test_property_batched_equals_reference(
    seed: int, devices: int, lateness: int, shape: tuple[int, int]
) -> None:
    length, slide = shape
    batches = random_batches(seed, devices=devices, n=400, disorder_ms=3000, base=20.0)
    want, want_late = reference(batches, length, slide, lateness)
    got, got_late = run_batched(batches, length, slide, lateness)
    assert got_late == want_late
    assert_same(got, want)
