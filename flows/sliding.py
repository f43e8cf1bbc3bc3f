"""Event-time sliding windows over many devices at once, built from tumbling panes.

A sliding window of length L that advances by S (L a multiple of S) covers
``n = L / S`` consecutive panes of length S. Each reading goes into exactly one
pane, so ``add`` costs the same as a tumbling window of length S; a window's
statistics are only assembled when it closes, by merging its panes. That keeps
per-reading work independent of ``n`` (the naive way adds every reading to ``n``
windows).

Panes are flat arrays (one row per open (device, pane) pair) found through a
packed int key, as in ``flows.windows`` (the same ``OpenRows``). Each pane keeps its sums
relative to its own first value; merging re-bases them on the window's first
pane, so count, mean, min, max, std and last are exact (up to rounding) and a
large steady signal does not lose its variance to cancellation.

Semantics (the per-reading reference in ``tests/unit/test_sliding.py`` is the
same): window k covers [k*S, k*S + L) and closes once the watermark reaches
its end; it is emitted for every device with at least one reading in it. Pane
p is part of windows p-n+1 .. p, so a reading is *late* when window p (the last
one containing it) has closed, either by the watermark given to ``add`` or by
an earlier ``close`` (a watermark that steps back never reopens a window). A
pane is dropped as soon as window p closes: nothing open needs it any more.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from flows.closed import Closed, Windows, mean_var, nothing_closed
from flows.windows import OpenRows
from iotpipe.durations import format_duration

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]

_I64_MIN = int(np.iinfo(np.int64).min)


class SlidingWindows(Windows):
    """Open sliding windows of one length and slide for every device of a partition."""

    def __init__(self, length_ms: int, slide_ms: int) -> None:
        if slide_ms <= 0 or length_ms <= 0 or length_ms % slide_ms:
            raise ValueError(
                f"sliding window length {length_ms} ms must be a positive multiple "
                f"of the slide {slide_ms} ms"
            )
        self.length = length_ms
        self.slide = slide_ms
        self.panes_per_window = length_ms // slide_ms
        self.label = f"{format_duration(length_ms)}/{format_duration(slide_ms)}"
        # Every window k <= _closed_k has been emitted (or had no readings).
        self._closed_k = _I64_MIN
        self._open = OpenRows()

    @property
    def open_windows(self) -> int:
        """Open (device, pane) rows: the state held, not the windows to come."""
        return len(self._open)

    def _last_closed(self, watermark: int) -> int:
        """Index of the last window ended by ``watermark`` (clamped to int64)."""
        return max((watermark - self.length) // self.slide, _I64_MIN)

    def add(
        self, slots: I64, ts: I64, values: F64, watermark: int, order: I64 | None = None
    ) -> Mask:
        """Fold a batch in; returns the mask of late readings (every window closed).

        ``order``: the batch sorted by (slot, time, arrival), shared with other windows.
        """
        pane = ts // self.slide
        late = pane <= max(self._closed_k, self._last_closed(watermark))
        self._open.fold_on_time(pane, late, slots, ts, values, order)
        return late

    def close_rows(self, watermark: int) -> Closed:
        """Every window that ends at or before the watermark; drop unneeded panes."""
        k_max = self._last_closed(watermark)
        if k_max <= self._closed_k:
            return nothing_closed(self.label)
        n = self.panes_per_window
        r = self._open.rows
        cand = np.flatnonzero(r.active & (r.wid <= k_max + n - 1))
        k_lo = self._closed_k + 1  # first window not emitted yet
        self._closed_k = k_max
        if len(cand) == 0:
            return nothing_closed(self.label)
        # Pair each pane with every closing window it belongs to: k in [p-n+1, p].
        p = r.wid[cand]
        lo = np.maximum(p - (n - 1), k_lo)
        reps = np.minimum(p, k_max) - lo + 1
        total = int(reps.sum())
        offsets = np.arange(total) - np.repeat(np.cumsum(reps) - reps, reps)
        pair_row = np.repeat(cand, reps)
        pair_k = np.repeat(lo, reps) + offsets
        pair_slot = r.slot[pair_row]
        order = np.lexsort((r.wid[pair_row], pair_slot, pair_k))
        pair_row, pair_k, pair_slot = pair_row[order], pair_k[order], pair_slot[order]
        change = (pair_k[1:] != pair_k[:-1]) | (pair_slot[1:] != pair_slot[:-1])
        starts = np.flatnonzero(np.r_[True, change])
        ends = np.r_[starts[1:], total] - 1
        out = self._merge(pair_row, starts, ends, pair_k[starts], pair_slot[starts])
        # Pane p is in no open window once window p has closed.
        gone = cand[p <= k_max]
        if len(gone):
            self._open.release(gone)
        return out

    def _merge(self, pair_row: I64, starts: I64, ends: I64, win: I64, slots: I64) -> Closed:
        """One row per group of panes (sorted by pane), re-based on the first pane."""
        r = self._open.rows
        count = r.count[pair_row]
        total = r.total[pair_row]
        base = r.shift[pair_row][starts]
        d = r.shift[pair_row] - np.repeat(base, np.diff(np.r_[starts, len(pair_row)]))
        n = np.add.reduceat(count, starts)
        s1 = np.add.reduceat(total + count * d, starts)
        s2 = np.add.reduceat(r.total_sq[pair_row] + 2.0 * d * total + count * d * d, starts)
        mean, var = mean_var(n, base, s1, s2)
        begin = win * self.slide
        last_row = pair_row[ends]  # latest pane holds the latest reading
        return Closed(
            label=self.label,
            slot=slots,
            start=begin,
            end=begin + self.length,
            count=n,
            mean=mean,
            var=var,
            low=np.minimum.reduceat(r.low[pair_row], starts),
            high=np.maximum.reduceat(r.high[pair_row], starts),
            last=r.last_value[last_row],
            last_ts=r.last_ts[last_row],
        )
