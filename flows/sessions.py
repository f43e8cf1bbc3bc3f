"""Event-time session windows (per-device bursts of activity), one micro-batch at a time.

A session is a run of one device's readings whose consecutive event times are
less than ``gap`` apart. It reports ``start`` = its first reading's time and
``end`` = its last reading's time + gap (the moment it is known to be over),
and closes once the watermark reaches ``end``.

Rule, per device, reading by reading in arrival order (the per-reading
reference in ``tests/unit/test_sessions.py`` is exactly this). ``seen`` is the
device's latest event time so far, late readings included; ``S`` the start of
its open session, if it has one; ``wm`` the watermark given to ``add``:

1. ``t >= seen + gap`` (a *break*: nothing seen is within gap before it): the
   open session, if any, is sealed - final, emitted by the first ``close`` whose
   watermark reaches its end. ``t`` opens a new session if ``t + gap > wm``;
   otherwise its session would already be over, and it is late.
2. otherwise, if the device has an open session and ``t > S - gap``: ``t``
   joins it (out-of-order readings may extend it backwards, ``S = min(S, t)``).
3. otherwise ``t`` is late: it is too old for the open session, or it belongs
   to a session already sealed or emitted (or chains to a late reading).

Only the newest session of a device can take readings, so the state is one
row per device slot, and sealed sessions wait in a short side list. Sessions
never merge after the fact; an out-of-order reading that would bridge two
sessions joins the newer one if it can and is late otherwise.

Vectorised: the batch is sorted by (device, arrival); each reading's ``seen``
is a segmented running max, breaks split the batch into sessions, and the
``t > S - gap`` condition (S being a running min over *accepted* readings) is
solved by a fixed-point iteration that only ever rejects more readings and in
practice stops after one or two rounds. Sums are kept relative to each
session's first reading, as in ``flows.windows``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from flows.closed import Closed, Windows, mean_var, nothing_closed

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]

NEVER = -(2**62)  # "no reading yet": far below any event time, no overflow when + gap
_FAR = 2**62  # "no start yet" for running minima


@dataclass
class _Sessions:
    """Session statistics in columns: per slot (open sessions) or per sealed session."""

    slot: I64
    start: I64
    last_ts: I64
    count: I64
    shift: F64
    total: F64
    total_sq: F64
    low: F64
    high: F64
    last_value: F64

    @classmethod
    def empty(cls, size: int) -> _Sessions:
        return cls(
            slot=np.zeros(size, np.int64),
            start=np.zeros(size, np.int64),
            last_ts=np.zeros(size, np.int64),
            count=np.zeros(size, np.int64),
            shift=np.zeros(size),
            total=np.zeros(size),
            total_sq=np.zeros(size),
            low=np.zeros(size),
            high=np.zeros(size),
            last_value=np.zeros(size),
        )

    def __len__(self) -> int:
        return len(self.slot)

    def take(self, idx: I64 | Mask) -> _Sessions:
        return _Sessions(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def put(self, idx: I64, other: _Sessions) -> None:
        for f in fields(self):
            getattr(self, f.name)[idx] = getattr(other, f.name)

    def extend(self, other: _Sessions) -> None:
        for f in fields(self):
            setattr(self, f.name, np.concatenate([getattr(self, f.name), getattr(other, f.name)]))

    def grow(self, size: int) -> None:
        for f in fields(self):
            arr = getattr(self, f.name)
            bigger = np.zeros(size, arr.dtype)
            bigger[: len(arr)] = arr
            setattr(self, f.name, bigger)


class SessionWindows(Windows):
    """Open session windows for every device of a partition (see the module docstring)."""

    def __init__(self, gap_ms: int) -> None:
        if gap_ms <= 0:
            raise ValueError(f"session gap must be positive, got {gap_ms} ms")
        self.gap = gap_ms
        self.label = "session"
        self._state = _Sessions.empty(1024)  # row = slot; valid where _open
        self._state.slot = np.arange(1024, dtype=np.int64)
        self._seen = np.full(1024, NEVER, np.int64)
        self._open = np.zeros(1024, np.bool_)
        self._sealed = _Sessions.empty(0)

    @property
    def open_windows(self) -> int:
        """Sessions not emitted yet: open ones plus sealed ones awaiting the watermark."""
        return int(self._open.sum()) + len(self._sealed)

    def _ensure(self, slots: int) -> None:
        size = len(self._seen)
        if slots <= size:
            return
        while size < slots:
            size *= 2
        old = len(self._seen)
        self._state.grow(size)
        self._state.slot = np.arange(size, dtype=np.int64)
        self._seen = np.r_[self._seen, np.full(size - old, NEVER, np.int64)]
        self._open = np.r_[self._open, np.zeros(size - old, np.bool_)]

    def add(
        self, slots: I64, ts: I64, values: F64, watermark: int, order: I64 | None = None
    ) -> Mask:
        """Fold a batch in; returns the mask of late readings (see the rule above).

        ``order`` (the batch by slot and time) is not used: sessions are cut in
        each device's arrival order.
        """
        n = len(ts)
        if n == 0:
            return np.zeros(0, np.bool_)
        self._ensure(int(slots.max()) + 1)
        gap = self.gap
        order = np.argsort(slots, kind="stable")  # by device, arrival order within
        s, t, v = slots[order], ts[order], values[order]
        first = np.r_[True, s[1:] != s[:-1]]
        seen_before = np.maximum(_running(t, first, np.maximum, NEVER), self._seen[s])
        brk = t >= seen_before + gap
        seg_first = first | brk
        seg = np.cumsum(seg_first) - 1
        seg_starts = np.flatnonzero(seg_first)
        seg_slot = s[seg_starts]
        # A segment that does not start with a break continues the device's open session.
        cont = ~brk[seg_starts]
        seg_open = np.where(cont, self._open[seg_slot], t[seg_starts] + gap > watermark)
        seg_s0 = np.where(cont, self._state.start[seg_slot], _FAR)
        acc = seg_open[seg]
        while True:
            s_prev = np.minimum(
                seg_s0[seg], _running(np.where(acc, t, _FAR), seg_first, np.minimum, _FAR)
            )
            again = seg_open[seg] & (brk | (t > s_prev - gap))
            if np.array_equal(again, acc):
                break
            acc = again  # only ever shrinks, so this ends
        late = np.empty(n, np.bool_)
        late[order] = ~acc

        group_starts = np.flatnonzero(first)
        dev = s[group_starts]
        self._seen[dev] = np.maximum(self._seen[dev], np.maximum.reduceat(t, group_starts))
        # A device whose batch begins with a break seals the session it had open.
        sealing = dev[brk[group_starts] & self._open[dev]]
        if len(sealing):
            self._sealed.extend(self._state.take(sealing))
            self._open[sealing] = False

        merged = self._segment_stats(acc, t, v, seg, seg_starts, seg_slot, cont)
        is_last = np.zeros(len(seg_starts), np.bool_)
        is_last[seg[np.r_[group_starts[1:], n] - 1]] = True
        to_seal = np.flatnonzero(seg_open & ~is_last)
        if len(to_seal):
            self._sealed.extend(merged.take(to_seal))
        last = np.flatnonzero(is_last)
        self._state.put(seg_slot[last], merged.take(last))
        self._open[seg_slot[last]] = seg_open[last]
        return late

    def _segment_stats(
        self, acc: Mask, t: I64, v: F64, seg: I64, seg_starts: I64, seg_slot: I64, cont: Mask
    ) -> _Sessions:
        """Each segment's accepted readings, folded into the open session it continues."""
        n_seg = len(seg_starts)
        st = self._state
        out = _Sessions.empty(n_seg)
        out.slot = seg_slot
        # Continuing segments start from the slot's state, new ones from nothing.
        c = np.flatnonzero(cont)
        prior = st.take(seg_slot[c])
        out.put(c, prior)
        new = np.flatnonzero(~cont)
        out.start[new] = _FAR
        out.last_ts[new] = NEVER
        out.shift[new] = v[seg_starts[new]]  # the break reading: first in its session
        out.low[new] = np.inf
        out.high[new] = -np.inf
        ia = np.flatnonzero(acc)
        if len(ia) == 0:
            return out
        sa, ta, va = seg[ia], t[ia], v[ia]
        d = va - out.shift[sa]
        out.count += np.bincount(sa, minlength=n_seg)
        out.total += np.bincount(sa, weights=d, minlength=n_seg)
        out.total_sq += np.bincount(sa, weights=d * d, minlength=n_seg)
        a_starts = np.flatnonzero(np.r_[True, sa[1:] != sa[:-1]])
        g = sa[a_starts]
        out.low[g] = np.minimum(out.low[g], np.minimum.reduceat(va, a_starts))
        out.high[g] = np.maximum(out.high[g], np.maximum.reduceat(va, a_starts))
        out.start[g] = np.minimum(out.start[g], np.minimum.reduceat(ta, a_starts))
        # "last" = latest event time; on a tie the later arrival wins.
        by_time = np.lexsort((np.arange(len(ia)), ta, sa))
        last = by_time[np.r_[a_starts[1:], len(ia)] - 1]
        newer = ta[last] >= out.last_ts[g]
        out.last_ts[g[newer]] = ta[last][newer]
        out.last_value[g[newer]] = va[last][newer]
        return out

    def close_rows(self, watermark: int) -> Closed:
        """Take out every session whose end (last reading + gap) <= watermark."""
        st, sealed = self._state, self._sealed
        done = np.flatnonzero(self._open & (st.last_ts + self.gap <= watermark))
        ripe = sealed.last_ts + self.gap <= watermark
        if len(done) == 0 and not ripe.any():
            return nothing_closed(self.label)
        out = st.take(done)
        out.extend(sealed.take(ripe))
        self._open[done] = False
        self._sealed = sealed.take(~ripe)
        rows = out.take(np.lexsort((out.slot, out.start)))  # deterministic output order
        mean, var = mean_var(rows.count, rows.shift, rows.total, rows.total_sq)
        return Closed(
            label=self.label,
            slot=rows.slot,
            start=rows.start,
            end=rows.last_ts + self.gap,
            count=rows.count,
            mean=mean,
            var=var,
            low=rows.low,
            high=rows.high,
            last=rows.last_value,
            last_ts=rows.last_ts,
        )


def _running(x: I64, seg_first: Mask, op: np.ufunc, fill: int) -> I64:
    """Exclusive running max/min of ``x`` within segments (``fill`` at each segment start).

    One ``accumulate`` over the whole batch: values are replaced by their rank
    and offset per segment so that no earlier segment can win.
    """
    uniq, rank = np.unique(x, return_inverse=True)
    seg = np.cumsum(seg_first) - 1
    width = len(uniq)
    # For a running max later segments sit higher; for a running min, lower.
    offset = seg * width if op is np.maximum else (seg[-1] - seg) * width
    incl = uniq[op.accumulate(offset + rank) - offset]
    out = np.empty_like(x)
    out[1:] = incl[:-1]
    out[seg_first] = fill
    return out
