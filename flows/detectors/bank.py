"""All enabled detectors for every device of one flow partition, vectorised across devices.

Why this shape: with 100,000 devices a micro-batch of 10,000 readings holds
about one reading per device, so the work is vectorised *across* devices.
Per-device state lives in columns indexed by the device's ``SlotMap`` slot. A
batch is sorted by (slot, ts, value) and applied in *rounds*: round k holds the
k-th reading of every device that has at least k readings in the batch, so the
sequential maths (EWMA, rate, stuck runs) sees each device's readings in
event-time order while every round is one numpy pass per detector.

Stale readings (ts not after the device's last applied reading, e.g. a
duplicate) and non-finite values are counted and skipped.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from flows.detectors import registry
from flows.detectors.base import Detector, Known, detector_class
from flows.detectors.baseline import Baseline
from flows.detectors.config import F64, I64, NO_TS, DetectorConfig, TypeParams
from flows.detectors.flapping import Flapping
from flows.detectors.lifecycle import ALARM_FIELDS, Events
from flows.slots import SlotMap, by_slot_then_time
from iotpipe.catalogue import Catalogue
from iotpipe.errors import ConfigError
from iotpipe.model import Alert

SNAPSHOT_VERSION: Final = 2


@dataclass
class DetectorStats:
    """Counters for metrics; part of the snapshot so they survive a restart."""

    readings: int = 0
    stale: int = 0
    non_finite: int = 0
    alerts: int = 0


@dataclass
class DetectorSnapshot:
    """Picklable state: named per-slot columns trimmed to the devices known at snapshot time.

    Columns are keyed ``baseline.<field>``, ``<detector>.<field>`` and
    ``<detector>.alarm.<field>``; a restore fills what a snapshot lacks, so a
    detector or field added since an older snapshot starts fresh.
    """

    config: DetectorConfig
    n_slots: int
    arrays: dict[str, npt.NDArray[Any]]
    watermark: int
    stats: DetectorStats
    version: int = SNAPSHOT_VERSION


# Version 1 kept every column in one flat dict; where each one lives now.
_V1_NAMES: Final = {
    **{name: f"baseline.{name}" for name in ("last_ts", "last_val", "count", "mean", "var")},
    "warn_since": "threshold.warn_since",
    "crit_since": "threshold.crit_since",
    "stuck_ref": "stuck.ref",
    "stuck_since": "stuck.since",
    "stuck_count": "stuck.count",
}


def upgrade_v1(arrays: Mapping[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
    """Version 1 column names to version 2 (the lifecycle moved under ``.alarm.``)."""
    out: dict[str, npt.NDArray[Any]] = {}
    for name, col in arrays.items():
        det, _, field = name.partition(".")
        if field in ALARM_FIELDS:
            out[f"{det}.alarm.{field}"] = col
        elif name in _V1_NAMES:
            out[_V1_NAMES[name]] = col
    return out


class DetectorBank:
    """The enabled detectors over one ``SlotMap``: ``process`` batches, ``advance`` time."""

    def __init__(self, catalogue: Catalogue, slots: SlotMap, config: DetectorConfig) -> None:
        self._build(catalogue, slots, config)
        self.watermark = NO_TS
        self.stats = DetectorStats()

    def _build(self, catalogue: Catalogue, slots: SlotMap, config: DetectorConfig) -> None:
        self.catalogue = catalogue
        self.slots = slots
        self.config = config
        self.params = TypeParams.build(catalogue, slots.type_names, config)
        self.baseline = Baseline(config, self.params, slots.capacity)
        self.detectors: list[Detector] = [
            detector_class(name)(det, config, self.params, slots.capacity)
            for det, name in enumerate(registry.names())
            if config.enabled(name)
        ]
        budget = next((d for d in self.detectors if isinstance(d, Flapping)), None)
        if config.alert_budget_per_hour == 0:
            budget = None
        for d in self.detectors:
            d.alarm.cadence = self.baseline.state
            d.alarm.budget = budget if d is not budget else None

    # -- state management -------------------------------------------------

    def _fit(self) -> None:
        self.baseline.state.fit(self.slots)
        for d in self.detectors:
            d.fit(self.slots)

    def snapshot(self) -> DetectorSnapshot:
        """An independent, picklable copy of the state (for Bytewax recovery)."""
        n = len(self.slots)
        arrays = self.baseline.state.copy(n, "baseline.")
        for d in self.detectors:
            arrays |= d.copy(n)
        return DetectorSnapshot(
            config=self.config,
            n_slots=n,
            arrays=arrays,
            watermark=self.watermark,
            stats=copy.copy(self.stats),
        )

    @classmethod
    def restore(
        cls,
        state: object,
        catalogue: Catalogue,
        slots: SlotMap,
        config: DetectorConfig | None = None,
    ) -> DetectorBank:
        """Resume from ``snapshot()``; ``slots`` must be the SlotMap restored with it.

        ``config`` overrides the snapshot's (e.g. retuned thresholds after a restart).
        """
        if not isinstance(state, DetectorSnapshot) or state.version not in (1, 2):
            raise ConfigError(f"not a detector snapshot: {type(state).__name__}")
        if len(slots) < state.n_slots:
            raise ConfigError(
                f"detector snapshot has {state.n_slots} devices, the slot map {len(slots)}"
            )
        bank = cls(catalogue, slots, config or state.config)
        bank._load(state)
        return bank

    def _load(self, state: DetectorSnapshot) -> None:
        arrays = upgrade_v1(state.arrays) if state.version == 1 else state.arrays
        if "silence.interval" in arrays and "baseline.interval" not in arrays:
            # the cadence was the silence detector's before every alarm used it
            arrays = {**arrays, "baseline.interval": arrays["silence.interval"]}
        self.baseline.state.load(arrays, state.n_slots, "baseline.")
        for d in self.detectors:
            d.load(arrays, state.n_slots)
        self.watermark = state.watermark
        self.stats = copy.copy(state.stats)

    def __getstate__(self) -> dict[str, object]:
        return {"catalogue": self.catalogue, "slots": self.slots, "snapshot": self.snapshot()}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "_a" in state:  # pickled by a version-1 bank: its columns under their old names
            n = len(state["slots"])
            snap = DetectorSnapshot(
                state["config"], n, {k: v[:n] for k, v in state["_a"].items()},
                state["watermark"], state["stats"], version=1,
            )  # fmt: skip
        else:
            snap = state["snapshot"]
        self._build(state["catalogue"], state["slots"], snap.config)
        self._load(snap)

    def bytes_per_device(self) -> int:
        """Detector state per device slot (the SlotMap's own few bytes not included)."""
        own = self.baseline.state.nbytes_per_slot()
        return own + sum(d.bytes_per_slot() for d in self.detectors)

    # -- the hot path -----------------------------------------------------

    def process(
        self,
        slots: npt.ArrayLike,
        ts: npt.ArrayLike,
        values: npt.ArrayLike,
        order: I64 | None = None,
    ) -> list[Alert]:
        """One micro-batch of readings (any order, any mix of devices); returns alert events.

        ``order``: the batch sorted by (slot, time), if the caller has it already.
        """
        s = np.asarray(slots, dtype=np.int64).ravel()
        t = np.asarray(ts, dtype=np.int64).ravel()
        x = np.asarray(values, dtype=np.float64).ravel()
        if not s.size == t.size == x.size:
            raise ValueError(f"batch columns differ in length: {s.size}, {t.size}, {x.size}")
        self._fit()
        if s.size == 0:
            return []
        if int(s.min()) < 0 or int(s.max()) >= len(self.slots):
            raise ValueError("batch holds a slot the SlotMap does not know")
        finite = np.isfinite(x)
        if not finite.all():
            self.stats.non_finite += int(s.size - np.count_nonzero(finite))
            s, t, x = s[finite], t[finite], x[finite]
            order = None
            if s.size == 0:
                return []
        with np.errstate(over="ignore", invalid="ignore"):  # absurd values must not warn
            return self._process(s, t, x, by_slot_then_time(s, t) if order is None else order)

    def _process(self, s: I64, t: I64, x: F64, order: I64) -> list[Alert]:
        s, t, x = s[order], t[order], x[order]
        same = (s[1:] == s[:-1]) & (t[1:] == t[:-1])
        if same.any():  # readings of one device at one instant: by value, whatever the arrival
            order = np.lexsort((x, t, s))
            s, t, x = s[order], t[order], x[order]
        n = s.size
        ev = Events()
        new_dev = np.empty(n, dtype=np.bool_)
        new_dev[0] = True
        np.not_equal(s[1:], s[:-1], out=new_dev[1:])
        starts = np.flatnonzero(new_dev)
        if starts.size == n:  # the usual case: one reading per device
            self._round(s, t, x, ev)
        else:
            lengths = np.diff(np.append(starts, n))
            rank = np.arange(n) - np.repeat(starts, lengths)
            by_round = np.argsort(rank, kind="stable")  # keeps slot order within a round
            edges = np.cumsum(np.bincount(rank))
            begin = 0
            for end in edges.tolist():
                sel = by_round[begin:end]
                self._round(s[sel], t[sel], x[sel], ev)
                begin = end
        return self._alerts(ev)

    def _round(self, s: I64, t: I64, x: F64, ev: Events) -> None:
        """Readings with unique slots: every detector on the pre-update state, then the update."""
        fresh = t > self.baseline.state["last_ts"][s]
        if not fresh.all():
            self.stats.stale += int(s.size - np.count_nonzero(fresh))
            s, t, x = s[fresh], t[fresh], x[fresh]
            if s.size == 0:
                return
        self.stats.readings += int(s.size)
        r = self.baseline.round(s, t, x, self.slots.slot_type[s].astype(np.intp))
        for d in self.detectors:
            d.evaluate(r, ev)
        self.baseline.update(r)

    def advance(self, watermark_ms: int) -> list[Alert]:
        """The event-time watermark moved: detectors that judge time (``silence``) look."""
        self._fit()
        self.watermark = max(self.watermark, int(watermark_ms))
        n = len(self.slots)
        if n == 0:
            return []
        ev = Events()
        base = self.baseline.state
        known = Known(base["last_ts"][:n], base["last_val"][:n], base["interval"][:n])
        for d in self.detectors:
            d.advance(self.watermark, known, ev)
        return self._alerts(ev)

    def _alerts(self, ev: Events) -> list[Alert]:
        out = ev.alerts(self.slots, self.params.units)
        self.stats.alerts += len(out)
        return out
