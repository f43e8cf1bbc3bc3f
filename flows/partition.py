"""Everything one Kafka partition's stream needs: slots, windows, detectors, watermark.

The Bytewax step keeps one ``PartitionState`` per partition (the key), feeds
it whole micro-batches of raw Kafka values, and snapshots it for recovery.
Nothing here knows about Bytewax or Kafka, so unit tests drive it directly.

The watermark (windows up to it are closed; readings behind it are late):
- It follows the partition's event-time frontier minus the allowed lateness.
  The frontier is the lower median, over the devices heard from lately, of
  each device's newest event time (capped at wall time plus
  ``clock_ahead_ms``). "Lately" means a newest event time within
  ``frontier_horizon_ms`` of the frontier, so devices gone quiet, or with a
  clock far behind, drop out instead of holding it back. A device with a
  clock ahead (or any minority of them) cannot push it, however the readings
  fall into micro-batches, so a skewed clock makes only that device's own
  readings late, never its neighbours'. The price: with devices reporting
  every T seconds the frontier trails the newest reading by about
  min(T, horizon) / 2.
- It moves on with wall time only while the source keeps vouching that the
  partition is caught up (``on_idle``, about once a second), after
  ``idle_close_ms`` of that without a gap longer than ``idle_gap_ms``. A flow
  held back by a sink that is down, or a Kafka broker that cannot be reached,
  gets no heartbeats: its windows wait for the data instead of closing, and
  after the outage the idle clock starts again from zero. After a gap longer
  than ``idle_close_ms``, heartbeats alone must last ``idle_close_after_gap_ms``
  (data coming in again ends that wait): an outage leaves backlogs upstream
  (an ingester still reconnecting to Kafka with its queue full), and a
  caught-up partition is then no evidence that the devices are quiet.
- It never goes back, so a window once closed is never reopened (a second,
  partial point would overwrite the first).
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from flows.closed import Windows, to_aggregates
from flows.dedupe import Seen
from flows.detectors import DetectorBank, DetectorConfig
from flows.rollup import Progress, SitePartial, site_partials
from flows.sessions import SessionWindows
from flows.sliding import SlidingWindows
from flows.slots import Columns, SlotMap, by_slot_then_time
from flows.windows import TumblingWindows
from iotpipe.catalogue import Catalogue
from iotpipe.codec import decode_reading, decode_readings
from iotpipe.model import Aggregate, Alert, Reading

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
NO_WATERMARK = int(np.iinfo(np.int64).min)
SNAPSHOT_VERSION = 2  # 1: the whole object pickled, detectors by class layout


@dataclass(frozen=True)
class FlowConfig:
    """Window lengths, lateness and idle handling for one flow."""

    windows_ms: tuple[int, ...] = (10_000, 60_000)
    sliding_ms: tuple[tuple[int, int], ...] = ()  # (length, slide) pairs
    session_gap_ms: int = 0  # 0 = no session windows
    allowed_lateness_ms: int = 5_000
    idle_close_ms: int = 10_000  # wall time caught up before the watermark moves on
    clock_ahead_ms: int = 2_000  # how far past wall time an event time may push the watermark
    frontier_horizon_ms: int = 10_000  # devices this far behind the frontier no longer vote
    idle_gap_ms: int = 3_000  # a longer pause between heartbeats restarts the idle clock
    idle_close_after_gap_ms: int = 60_000  # idle_close_ms after such a pause, until data comes
    rollup: bool = True  # per-site, per-type roll-ups of the tumbling windows
    detectors: DetectorConfig = field(default_factory=DetectorConfig)


@dataclass
class Output:
    """What one batch (or one idle tick) produced."""

    aggregates: list[Aggregate] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    late: list[Reading] = field(default_factory=list)
    bad: list[bytes] = field(default_factory=list)
    duplicates: int = 0  # readings dropped as already counted
    progress: list[Progress] = field(default_factory=list)  # for the roll-up stage


class PartitionState:
    """Windowed aggregation and anomaly detection for one partition's readings."""

    def __init__(self, catalogue: Catalogue, config: FlowConfig) -> None:
        self.config = config
        self.slots = SlotMap(sorted(catalogue.names))
        self.windows: list[Windows] = [TumblingWindows(ms) for ms in config.windows_ms]
        self.windows += [SlidingWindows(length, slide) for length, slide in config.sliding_ms]
        if config.session_gap_ms:
            self.windows.append(SessionWindows(config.session_gap_ms))
        self.detectors = DetectorBank(catalogue, self.slots, config.detectors)
        self.seen = Seen()
        self.max_ts: int | None = None  # the event-time frontier (see the module doc)
        self.newest = np.full(0, NO_WATERMARK, np.int64)  # per slot: newest (capped) event time
        self.wall_at_max = 0.0
        self.idle_at = 0.0  # wall time of the last heartbeat (or data)
        self.idle_since = 0.0  # start of the current unbroken run of heartbeats
        self.after_gap = False  # heartbeats paused while running; no data since
        self.closed_wm = NO_WATERMARK
        self.late_count = 0
        self.duplicates = 0
        self.readings = 0

    def __getstate__(self) -> dict[str, object]:
        """The versioned snapshot: detectors as named columns (``DetectorSnapshot``), so a
        change to a detector's class does not break recovery; the rest as it is."""
        state = {k: v for k, v in vars(self).items() if k != "detectors"}
        state["detectors"] = self.detectors.snapshot()
        state["catalogue"] = self.detectors.catalogue
        state["version"] = SNAPSHOT_VERSION
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        if state.pop("version", 1) >= 2:
            snap, catalogue = state.pop("detectors"), state.pop("catalogue")
            state["detectors"] = DetectorBank.restore(snap, catalogue, state["slots"])
        # Snapshots taken before de-duplication and the vouched idle clock existed.
        fresh = {"closed_wm": NO_WATERMARK, "duplicates": 0}
        vars(self).update(fresh)
        vars(self).update(state)
        # A restart is not an outage: the idle clock starts afresh at the first heartbeat.
        self.idle_at = self.idle_since = 0.0
        self.after_gap = False
        if "seen" not in state:
            self.seen = Seen()
        if "newest" not in state:
            self.newest = np.full(0, NO_WATERMARK, np.int64)

    def watermark(self) -> int:
        """Frontier minus the allowed lateness, plus vouched idle time; never goes back."""
        if self.max_ts is None:
            return self.closed_wm
        wm = self.max_ts - self.config.allowed_lateness_ms
        idle_ms = (self.idle_at - self.idle_since) * 1000
        needed = self.config.idle_close_ms
        if self.after_gap:
            needed = max(needed, self.config.idle_close_after_gap_ms)
        if idle_ms >= needed:
            wm += int(idle_ms)
        return max(wm, self.closed_wm)

    def on_values(self, values: Sequence[bytes], now: float | None = None) -> Output:
        """One micro-batch of Kafka values (JSON readings); an empty one means idle."""
        batch = values if isinstance(values, list) else list(values)
        if not batch:
            return self.on_idle(now)
        out = Output()
        cols = self.slots.decode(batch)
        ts, vals, slots, seqs = cols.ts, cols.value, cols.slot, cols.seq
        rows: I64 | None = None  # batch position of each row, if any dropped
        if cols.pending:
            ts, vals, slots, seqs, rows = self._decode_pending(batch, cols, out.bad)
        if len(ts):
            dup = self.seen.duplicates(slots, seqs, ts)
            if dup.any():
                keep = ~dup
                out.duplicates = int(dup.sum())
                self.duplicates += out.duplicates
                ts, vals, slots = ts[keep], vals[keep], slots[keep]
                rows = np.flatnonzero(keep) if rows is None else rows[keep]
        n = len(ts)
        if n == 0:
            return out
        self.readings += n
        wall = time.time() if now is None else now
        self.idle_at = self.idle_since = wall  # data: not idle
        self.after_gap = False
        watermark = self.watermark()
        late_any = np.zeros(n, np.bool_)
        by_slot_time = by_slot_then_time(slots, ts)  # one sort for windows and detectors
        for windows in self.windows:
            late_any |= windows.add(slots, ts, vals, watermark, by_slot_time)
        if late_any.any():
            # Late for at least one window length: counted and sent to the late
            # output; the longer windows that were still open did take it.
            self.late_count += int(late_any.sum())
            late_rows = np.flatnonzero(late_any) if rows is None else rows[late_any]
            out.late.extend(decode_reading(batch[i]) for i in late_rows.tolist())
        out.alerts.extend(self.detectors.process(slots, ts, vals, by_slot_time))
        frontier = self._frontier(slots, ts, by_slot_time, int(wall * 1000))
        if frontier is not None and (self.max_ts is None or frontier > self.max_ts):
            self.max_ts = frontier
            self.wall_at_max = wall
        self._close(self.watermark(), out)
        return out

    def _frontier(self, slots: I64, ts: I64, by_slot_time: I64, wall_ms: int) -> int | None:
        """Record each device's newest event time; the median over those heard from lately."""
        cap = wall_ms + self.config.clock_ahead_ms
        batch_slots, batch_newest = _newest_per_slot(slots, ts, by_slot_time)
        self.newest = self.slots.fit(self.newest, NO_WATERMARK)
        self.newest[batch_slots] = np.maximum(
            self.newest[batch_slots], np.minimum(batch_newest, cap)
        )
        floor = NO_WATERMARK + 1
        if self.max_ts is not None:
            floor = self.max_ts - self.config.frontier_horizon_ms
        voters = self.newest[self.newest >= floor]
        return _lower_median(voters) if len(voters) else None

    def on_idle(self, now: float | None = None) -> Output:
        """The source vouches the partition is caught up: the watermark may move on."""
        wall = time.time() if now is None else now
        gap_ms = (wall - self.idle_at) * 1000
        if gap_ms > self.config.idle_gap_ms:
            self.idle_since = wall  # after a stall or an outage the idle clock starts over
        if self.idle_at > 0.0 and gap_ms > max(self.config.idle_gap_ms, self.config.idle_close_ms):
            self.after_gap = True  # long enough that upstream may hold a backlog (not at start)
        self.idle_at = wall
        return self.on_tick()

    def _decode_pending(
        self, batch: list[bytes], cols: Columns, bad: list[bytes]
    ) -> tuple[I64, F64, I64, I64, I64 | None]:
        """The rows the compiled decoder left: msgspec decides; bad ones go to ``bad``
        (a value that is not a reading, or a new device of a type this flow does not serve)."""
        ts, vals, slots = cols.ts.copy(), cols.value.copy(), cols.slot.copy()
        seqs = cols.seq.copy()
        keep = np.ones(len(ts), np.bool_)
        pending = cols.pending
        for i, reading in zip(pending, _decode_each([batch[i] for i in pending]), strict=True):
            slot = None
            if reading is not None:
                slot = self.slots.slot(reading.device_id, reading.sensor_type, reading.site)
            if reading is None or slot is None:
                value = batch[i]
                bad.append(value if isinstance(value, bytes) else b"")
                keep[i] = False
                continue
            ts[i], vals[i], slots[i] = reading.ts, reading.value, slot
            seqs[i] = -1 if reading.seq is None else reading.seq
        if keep.all():
            return ts, vals, slots, seqs, None
        return ts[keep], vals[keep], slots[keep], seqs[keep], np.flatnonzero(keep)

    def on_tick(self) -> Output:
        """A timer: close what the watermark (moved on by ``on_idle``) allows."""
        out = Output()
        self._close(self.watermark(), out)
        return out

    def flush(self) -> Output:
        """End of input (bounded runs, tests): close every open window.

        Detectors only see the real watermark: the end of a bounded input
        says nothing about devices falling silent.
        """
        out = Output()
        if self.max_ts is not None:
            self._close(np.iinfo(np.int64).max // 2, out, detector_watermark=self.watermark())
        return out

    def _close(self, watermark: int, out: Output, detector_watermark: int | None = None) -> None:
        self.closed_wm = max(self.closed_wm, watermark)
        partials: dict[str, list[SitePartial]] = {t: [] for t in self.slots.types_seen}
        for windows in self.windows:
            closed = windows.close_rows(watermark)
            out.aggregates.extend(to_aggregates(closed, self.slots))
            if self.config.rollup and windows.rolls_up:
                for partial in site_partials(closed, self.slots):
                    partials[partial.sensor_type].append(partial)
        if self.config.rollup:
            out.progress.extend(
                Progress(t, watermark, tuple(p)) for t, p in sorted(partials.items())
            )
        wm = watermark if detector_watermark is None else detector_watermark
        out.alerts.extend(self.detectors.advance(wm))

    def snapshot(self) -> bytes:
        """The state pickled (``__getstate__``), for Bytewax recovery: immutable, and for
        100,000 devices about ten times faster than ``copy.deepcopy``."""
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def restore(
        snapshot: bytes, catalogue: Catalogue | None = None, config: FlowConfig | None = None
    ) -> PartitionState:
        """Resume from ``snapshot()``. A ``catalogue`` or ``config`` given is the one the
        flow runs with now: its detector settings, bounds, lateness and idle rules apply
        from here on (a retuned threshold takes effect at the restart); the window
        lengths stay as snapshotted, since their open state was built for them."""
        state = pickle.loads(snapshot)
        if not isinstance(state, PartitionState):
            raise TypeError(f"not a PartitionState snapshot: {type(state).__name__}")
        if catalogue is not None or config is not None:
            old, bank = state.config, state.detectors
            if config is not None:
                state.config = replace(
                    config,
                    windows_ms=old.windows_ms,
                    sliding_ms=old.sliding_ms,
                    session_gap_ms=old.session_gap_ms,
                )
            state.detectors = DetectorBank.restore(
                bank.snapshot(), catalogue or bank.catalogue, state.slots, state.config.detectors
            )
        return state


def _newest_per_slot(slots: I64, ts: I64, by_slot_time: I64) -> tuple[I64, I64]:
    """The batch's slots, each with its newest event time in the batch."""
    ordered = slots[by_slot_time]
    last = np.flatnonzero(np.diff(ordered, append=ordered[-1] + 1))
    return ordered[last], ts[by_slot_time[last]]


def _lower_median(values: I64) -> int:
    k = (len(values) - 1) // 2  # two devices, one skewed -> the other
    return int(np.partition(values, k)[k])


def _decode_each(values: Sequence[bytes]) -> list[Reading | None]:
    """msgspec's verdict on each value: all in one decode, one by one only on failure."""
    try:
        return list(decode_readings(values))
    except (msgspec.DecodeError, msgspec.ValidationError, TypeError):
        readings: list[Reading | None] = []
        for value in values:
            try:
                readings.append(decode_reading(value))
            except (msgspec.DecodeError, msgspec.ValidationError, TypeError):
                readings.append(None)
        return readings
