"""Every kind of window closes into the same rows, and one function makes them aggregates."""

from __future__ import annotations

import numpy as np
import pytest

from flows.closed import Windows, nothing_closed, to_aggregates
from flows.sessions import SessionWindows
from flows.sliding import SlidingWindows
from flows.slots import SlotMap
from flows.windows import TumblingWindows

VALUES = [1013.2, 1013.4, 1013.1, 1013.9, 1012.8]
TS = [1000, 3000, 2000, 9000, 4000]


@pytest.mark.parametrize(
    ("windows", "spans"),
    [
        (TumblingWindows(10_000), [(0, 10_000)]),
        (SlidingWindows(20_000, 10_000), [(-10_000, 10_000), (0, 20_000)]),
        (SessionWindows(20_000), [(1000, 29_000)]),
    ],
)
def test_each_kind_closes_into_rows_with_the_same_statistics(
    windows: Windows, spans: list[tuple[int, int]]
) -> None:
    slots = SlotMap(["pressure"])
    s = slots.lookup(["p1"] * 5, ["pressure"] * 5, ["plant-a"] * 5)
    late = windows.add(s, np.array(TS, np.int64), np.array(VALUES), -(2**62))
    assert not late.any()
    closed = windows.close_rows(10**9)
    assert len(closed) == len(spans) and closed.label == windows.label
    aggs = to_aggregates(closed, slots)
    arr = np.array(VALUES)
    assert [(a.start, a.end) for a in aggs] == spans
    for a in aggs:
        assert (a.device_id, a.site, a.sensor_type, a.count) == ("p1", "plant-a", "pressure", 5)
        assert a.mean == pytest.approx(arr.mean(), abs=1e-12)
        assert a.std == pytest.approx(arr.std(), abs=1e-9)  # relative sums: no cancellation
        assert (a.min, a.max, a.last) == (1012.8, 1013.9, 1013.9)
    assert windows.open_windows == 0
    assert len(windows.close_rows(10**9)) == 0  # closed once


def test_nothing_closed_makes_no_aggregates() -> None:
    assert to_aggregates(nothing_closed("10s"), SlotMap(["gas"])) == []
