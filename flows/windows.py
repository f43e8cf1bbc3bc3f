"""Event-time tumbling windows over many devices at once, one micro-batch at a time.

Each window length keeps its open windows in flat arrays (one row per open
(device, window) pair) found through a compiled index from a packed int key
(``flows._native.KeyIndex``). A batch is grouped by one sort on (device, time);
counts and sums go in with ``np.bincount``, min/max with ``reduceat`` over the
sorted batch. Sums are kept relative to the
window's first value, so the variance of a large, steady signal (pressure at
1013 hPa) does not cancel away in floating point.

Semantics (identical in ``tests/unit/windowing.py``, the per-reading version
the tests compare against): a window [start, start + W) closes once the watermark
reaches its end; a reading whose window has already closed is *late*. The
watermark is advanced by the caller between batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from flows._native import KeyIndex
from flows.closed import Closed, Windows, mean_var, nothing_closed
from flows.slots import by_slot_then_time
from iotpipe.durations import format_duration

SLOT_STRIDE = 1 << 24  # up to 16M devices per partition; key = window index * stride + slot

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]


@dataclass
class StatRows:
    """Open windows (or panes), one row each; arrays grow geometrically.

    ``wid`` is the window (or pane) index: start // length.
    """

    slot: I64
    wid: I64
    count: I64
    shift: F64
    total: F64
    total_sq: F64
    low: F64
    high: F64
    last_ts: I64
    last_value: F64
    active: npt.NDArray[np.bool_]

    @classmethod
    def empty(cls, capacity: int) -> StatRows:
        return cls(
            slot=np.zeros(capacity, np.int64),
            wid=np.zeros(capacity, np.int64),
            count=np.zeros(capacity, np.int64),
            shift=np.zeros(capacity),
            total=np.zeros(capacity),
            total_sq=np.zeros(capacity),
            low=np.zeros(capacity),
            high=np.zeros(capacity),
            last_ts=np.zeros(capacity, np.int64),
            last_value=np.zeros(capacity),
            active=np.zeros(capacity, np.bool_),
        )

    def grow(self, capacity: int) -> None:
        for name, arr in vars(self).items():
            bigger = np.zeros(capacity, arr.dtype)
            bigger[: len(arr)] = arr
            setattr(self, name, bigger)


class OpenRows:
    """Rows of open (device, window) pairs, found by a packed key; freed rows are reused.

    Shared by tumbling windows and the panes of sliding windows.
    """

    def __init__(self) -> None:
        self.index = KeyIndex()
        self.rows = StatRows.empty(1024)
        self._free: list[int] = list(range(1023, -1, -1))

    def __len__(self) -> int:
        return len(self.index)

    def rows_for(self, keys: I64, first_values: F64, slots: I64) -> I64:
        """Row of each key (``wid * SLOT_STRIDE + slot``), opening new rows as needed."""
        rows = np.frombuffer(self.index.get(keys), np.int64).copy()
        new = np.flatnonzero(rows < 0)
        if len(new):
            while len(self._free) < len(new):
                self._grow()
            fresh = np.array(self._free[-len(new) :][::-1], np.int64)
            del self._free[-len(new) :]
            rows[new] = fresh
            self.index.insert(keys[new], fresh)
            r = self.rows
            r.slot[fresh] = slots[new]
            r.wid[fresh] = keys[new] // SLOT_STRIDE
            r.count[fresh] = 0
            r.shift[fresh] = first_values[new]
            r.total[fresh] = 0.0
            r.total_sq[fresh] = 0.0
            r.low[fresh] = np.inf
            r.high[fresh] = -np.inf
            r.last_ts[fresh] = np.iinfo(np.int64).min
            r.active[fresh] = True
        return rows

    def fold(self, keys: I64, slots: I64, ts: I64, values: F64, order: I64 | None = None) -> None:
        """Add a batch's readings to the rows of their keys, all groups at once.

        ``order``, if given, sorts the batch by (slot, time, arrival): the
        caller sorts once for every window length (a window key is the slot's
        window index, so equal keys are then adjacent, latest last).
        """
        if order is None:
            order = by_slot_then_time(slots, ts)
        m = len(order)
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        n_groups = len(starts)
        sizes = np.diff(np.r_[starts, m])
        sorted_values = values[order]
        rows = self.rows_for(sorted_keys[starts], sorted_values[starts], slots[order][starts])
        group_of = np.repeat(np.arange(n_groups), sizes)
        r = self.rows
        shifted = sorted_values - r.shift[rows][group_of]
        r.count[rows] += sizes
        r.total[rows] += np.bincount(group_of, weights=shifted, minlength=n_groups)
        r.total_sq[rows] += np.bincount(group_of, weights=shifted * shifted, minlength=n_groups)
        r.low[rows] = np.minimum(r.low[rows], np.minimum.reduceat(sorted_values, starts))
        r.high[rows] = np.maximum(r.high[rows], np.maximum.reduceat(sorted_values, starts))
        # "last" = latest event time; on a tie the later arrival wins: the group's last element.
        last = order[np.r_[starts[1:], m] - 1]
        newer = ts[last] >= r.last_ts[rows]
        upd = rows[newer]
        r.last_ts[upd] = ts[last][newer]
        r.last_value[upd] = values[last][newer]

    def fold_on_time(
        self, wid: I64, late: Mask, slots: I64, ts: I64, values: F64, order: I64 | None
    ) -> None:
        """``fold`` the readings that are not late, keyed by (window or pane ``wid``, slot).

        ``order``: the whole batch sorted by (slot, time, arrival); dropping the
        late readings from it keeps it sorted, so it is shared, not redone.
        """
        if late.all():
            return
        if late.any():
            if order is not None:
                order = order[~late[order]]  # indexes the full batch
            else:
                keep = ~late
                slots, ts, values, wid = slots[keep], ts[keep], values[keep], wid[keep]
        self.fold(wid * SLOT_STRIDE + slots, slots, ts, values, order)

    def keys_of(self, rows: I64) -> I64:
        """The packed keys of ``rows``: ``wid * SLOT_STRIDE + slot``."""
        return self.rows.wid[rows] * SLOT_STRIDE + self.rows.slot[rows]

    def release(self, rows: I64) -> None:
        """Forget closed rows and make them reusable."""
        self.rows.active[rows] = False
        self.index.remove(self.keys_of(rows))
        self._free.extend(rows.tolist())

    def __getstate__(self) -> dict[str, object]:
        # The compiled index is not picklable; the open rows say what it held.
        return {"rows": self.rows, "free": self._free}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.rows, self._free = state["rows"], state["free"]
        self.index = KeyIndex()
        open_rows = np.flatnonzero(self.rows.active)
        self.index.insert(self.keys_of(open_rows), open_rows)

    def _grow(self) -> None:
        old = len(self.rows.slot)
        self.rows.grow(old * 2)
        self._free.extend(range(old * 2 - 1, old - 1, -1))


class TumblingWindows(Windows):
    """Open tumbling windows of one length for every device of a partition."""

    rolls_up = True

    def __init__(self, length_ms: int) -> None:
        self.length = length_ms
        self.label = format_duration(length_ms)
        self._open = OpenRows()

    @property
    def open_windows(self) -> int:
        return len(self._open)

    def add(
        self, slots: I64, ts: I64, values: F64, watermark: int, order: I64 | None = None
    ) -> Mask:
        """Fold a batch in; returns the mask of late readings (window already closed)."""
        wid = ts // self.length
        late = (wid + 1) * self.length <= watermark
        self._open.fold_on_time(wid, late, slots, ts, values, order)
        return late

    def close_rows(self, watermark: int) -> Closed:
        """Every window that ends at or before the watermark, by window then slot."""
        r = self._open.rows
        done = np.flatnonzero(r.active & ((r.wid + 1) * self.length <= watermark))
        if len(done) == 0:
            return nothing_closed(self.label)
        done = done[np.argsort(self._open.keys_of(done))]  # by window, then slot: deterministic
        mean, var = mean_var(r.count[done], r.shift[done], r.total[done], r.total_sq[done])
        starts = r.wid[done] * self.length
        closed = Closed(
            label=self.label,
            slot=r.slot[done],
            start=starts,
            end=starts + self.length,
            count=r.count[done],
            mean=mean,
            var=var,
            low=r.low[done],
            high=r.high[done],
            last=r.last_value[done],
            last_ts=r.last_ts[done],
        )
        self._open.release(done)
        return closed
