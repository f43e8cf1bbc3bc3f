"""Tumbling windows: the batched numpy operator equals a per-reading reference."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.slots import SlotMap
from flows.windows import TumblingWindows
from iotpipe.durations import format_duration
from iotpipe.model import Aggregate
from tests.unit.flows.windowing import Batch, assert_same, random_batches

TYPES = ["gas", "pressure", "temperature"]


def reference(batches: list[Batch], length: int, lateness: int) -> tuple[list[tuple], int]:
    """Per-reading, dict-of-lists reference with the same watermark semantics."""
    open_: dict[tuple[str, int], list[tuple[int, int, float]]] = defaultdict(list)
    out: list[tuple] = []
    late = 0
    max_ts: int | None = None
    arrival = 0
    for batch in batches:
        wm = -(2**62) if max_ts is None else max_ts - lateness
        for dev, ts, value in zip(batch.devices, batch.ts, batch.values, strict=True):
            wid = ts // length
            if (wid + 1) * length <= wm:
                late += 1
                continue
            open_[(dev, wid)].append((ts, arrival, value))
            arrival += 1
        batch_max = max(batch.ts)
        max_ts = batch_max if max_ts is None else max(max_ts, batch_max)
        wm = max_ts - lateness
        for (dev, wid), items in sorted(open_.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            if (wid + 1) * length <= wm:
                vals = np.array([v for _t, _a, v in items])
                last = max(items, key=lambda it: (it[0], it[1]))[2]
                out.append(
                    (
                        dev,
                        wid * length,
                        len(items),
                        vals.mean(),
                        vals.min(),
                        vals.max(),
                        vals.std(),
                        last,
                    )
                )
                del open_[(dev, wid)]
    return out, late


def run_batched(
    batches: list[Batch], length: int, lateness: int, shared_order: bool = False
) -> tuple[list[tuple], int]:
    """``shared_order``: pass the batch's (slot, time, arrival) order in, as PartitionState does."""
    slots = SlotMap(TYPES)
    windows = TumblingWindows(length)
    out: list[Aggregate] = []
    late = 0
    max_ts: int | None = None
    for batch in batches:
        wm = -(2**62) if max_ts is None else max_ts - lateness
        s = slots.lookup(
            batch.devices, ["temperature"] * len(batch.devices), ["site"] * len(batch.devices)
        )
        ts = np.array(batch.ts, np.int64)
        order = np.lexsort((np.arange(len(ts)), ts, s)) if shared_order else None
        late += int(windows.add(s, ts, np.array(batch.values), wm, order).sum())
        batch_max = max(batch.ts)
        max_ts = batch_max if max_ts is None else max(max_ts, batch_max)
        out.extend(windows.close(max_ts - lateness, slots))
    rows = [(a.device_id, a.start, a.count, a.mean, a.min, a.max, a.std, a.last) for a in out]
    return rows, late


@pytest.mark.parametrize("seed", range(5))
def test_batched_equals_reference(seed: int) -> None:
    batches = random_batches(seed, devices=40, n=3000, disorder_ms=4000, base=1013.25)
    want, want_late = reference(batches, 10_000, 2_000)
    got, got_late = run_batched(batches, 10_000, 2_000)
    assert got_late == want_late and want_late > 0  # the data really has late readings
    assert_same(got, want)


def test_statistics_against_numpy_exactly_one_window() -> None:
    values = [1013.2, 1013.4, 1013.1, 1013.9, 1012.8]
    ts = [1000, 3000, 2000, 9000, 4000]
    slots = SlotMap(TYPES)
    win = TumblingWindows(10_000)
    s = slots.lookup(["p1"] * 5, ["pressure"] * 5, ["plant-a"] * 5)
    assert not win.add(s, np.array(ts, np.int64), np.array(values), -(2**62)).any()
    assert win.close(9_999, slots) == []  # the window [0, 10000) is not over yet
    (agg,) = win.close(10_000, slots)
    arr = np.array(values)
    assert (agg.device_id, agg.sensor_type, agg.site, agg.window) == (
        "p1",
        "pressure",
        "plant-a",
        "10s",
    )
    assert (agg.start, agg.end, agg.count) == (0, 10_000, 5)
    assert agg.mean == pytest.approx(arr.mean(), abs=1e-12)
    assert agg.std == pytest.approx(arr.std(), abs=1e-9)  # no cancellation at 1013 hPa
    assert (agg.min, agg.max, agg.last) == (1012.8, 1013.9, 1013.9)
    assert win.open_windows == 0


def test_window_boundaries_and_lateness() -> None:
    slots = SlotMap(TYPES)
    win = TumblingWindows(10_000)
    s = slots.lookup(["a", "a"], ["gas", "gas"], ["x", "x"])
    win.add(s, np.array([9_999, 10_000], np.int64), np.array([1.0, 2.0]), -(2**62))
    aggs = win.close(20_000, slots)
    assert [(a.start, a.count, a.last) for a in aggs] == [(0, 1, 1.0), (10_000, 1, 2.0)]
    # A reading for a window that has closed is late; one for an open window is not.
    late = win.add(s[:2], np.array([5_000, 25_000], np.int64), np.array([3.0, 4.0]), 20_000)
    assert late.tolist() == [True, False]


def test_many_devices_grow_the_state() -> None:
    n = 5000
    slots = SlotMap(TYPES)
    win = TumblingWindows(60_000)
    devices = [f"dev-{i}" for i in range(n)]
    s = slots.lookup(devices, ["gas"] * n, ["x"] * n)
    win.add(s, np.full(n, 1000, np.int64), np.arange(n, dtype=float), -(2**62))
    assert win.open_windows == n
    aggs = win.close(60_000, slots)
    assert sorted(a.mean for a in aggs) == list(range(n))


@pytest.mark.parametrize(
    ("ms", "label"), [(10_000, "10s"), (60_000, "1m"), (3_600_000, "1h"), (1500, "1500ms")]
)
def test_window_labels(ms: int, label: str) -> None:
    assert format_duration(ms) == label


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    devices=st.integers(1, 30),
    lateness=st.sampled_from([0, 1000, 15_000]),
    length=st.sampled_from([1000, 10_000, 60_000]),
    shared_order=st.booleans(),
)
def test_property_batched_equals_reference(
    seed: int, devices: int, lateness: int, length: int, shared_order: bool
) -> None:
    batches = random_batches(seed, devices=devices, n=400, disorder_ms=3000, base=20.0)
    want, want_late = reference(batches, length, lateness)
    got, got_late = run_batched(batches, length, lateness, shared_order)
    assert got_late == want_late
    assert_same(got, want)
