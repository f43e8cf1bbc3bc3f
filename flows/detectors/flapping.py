"""``flapping``: the alert budget. At most ``alert_budget_per_hour`` raises per device.

Why: a detector that misjudges one device (a bound set too tight, a sensor
that really is that noisy) must not bury an operator in alerts, and dropping
the excess silently would hide it. So every raise asks this detector first
(``admit``). Within a device's budget window (an hour from the first raise
after the last window ended) the first ``alert_budget_per_hour`` raises pass;
each one beyond is *held back*: its episode runs muted (no raise, escalate or
clear of its own), it is counted, and it raises (or escalates, for a more
severe one) this device's ``flapping`` alarm, whose score is the number held
back so far. The alarm clears an hour after the last held-back raise, with the
episode's count.

The check happens at raise time, in the detectors' fixed order within a round,
and the clear is judged at the device's next reading or the watermark,
whichever comes first (the same instant either way), so the events do not
depend on how the readings were batched.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import numpy.typing as npt

from flows.detectors.base import Detector, Known, Round
from flows.detectors.config import F64, HOUR_MS, I64, NO_TS, Bool, DetectorConfig
from flows.detectors.lifecycle import Events, Lifecycle
from flows.detectors.registry import register
from flows.detectors.state import Spec


@register
class Flapping(Detector):
    """Per-device raise budget; the excess rolls into one alarm."""

    name: ClassVar[str] = "flapping"
    fields: ClassVar[Spec] = {
        "window_start": (np.int64, NO_TS),
        "raises": (np.int32, 0),  # admitted in the current window
        "held": (np.int32, 0),  # held back in the current flapping episode
        "last_held": (np.int64, NO_TS),
    }

    @classmethod
    def lifecycle(cls, config: DetectorConfig) -> Lifecycle:
        # No cooldown or sustain: a raise held back must always reach this alarm.
        return Lifecycle()

    def admit(self, idx: I64, ts: I64, sev: npt.NDArray[np.int8], value: F64, ev: Events) -> Bool:
        """Which of these raises (unique slots) fit their device's budget; the rest count here."""
        a = self.state
        start = a["window_start"][idx]
        roll = ts >= start + HOUR_MS
        a["window_start"][idx] = np.where(roll, ts, start)
        raises = np.where(roll, 0, a["raises"][idx])
        ok = raises < self.config.alert_budget_per_hour
        a["raises"][idx] = raises + ok
        if not ok.all():
            over = ~ok
            o = idx[over]
            a["held"][o] += 1
            a["last_held"][o] = ts[over]
            self._report(o, ts[over], sev[over], value[over], ev)
        return ok

    def escalate(
        self, idx: I64, ts: I64, sev: npt.NDArray[np.int8], value: F64, ev: Events
    ) -> None:
        """A muted episode got worse: so does the flapping alarm (or it raises anew)."""
        self._report(idx, ts, sev, value, ev)

    def _report(self, idx: I64, ts: I64, sev: npt.NDArray[np.int8], value: F64, ev: Events) -> None:
        held = self.state["held"][idx].astype(np.float64)
        budget = np.full(idx.size, float(self.config.alert_budget_per_hour))
        self.alarm.transition(idx, ts, sev, value, held, budget, ev)

    def _clear(self, idx: I64, value: F64, ev: Events) -> None:
        a = self.state
        ts = a["last_held"][idx] + HOUR_MS
        held = a["held"][idx].astype(np.float64)
        budget = np.full(idx.size, float(self.config.alert_budget_per_hour))
        self.alarm.transition(idx, ts, np.zeros(idx.size, np.int8), value, held, budget, ev)
        a["held"][idx] = 0

    def evaluate(self, r: Round, ev: Events) -> None:
        due = self.alarm.active(r.s) & (r.t >= self.state["last_held"][r.s] + HOUR_MS)
        if due.any():
            self._clear(r.s[due], r.prev_val[due], ev)

    def advance(self, watermark: int, known: Known, ev: Events) -> None:
        n = known.last_ts.size
        active = self.alarm.state["active"][:n]
        if not active.any():
            return
        due = active & (watermark > self.state["last_held"][:n] + HOUR_MS)
        idx = np.flatnonzero(due).astype(np.int64)
        if idx.size:
            self._clear(idx, known.last_val[idx], ev)

    @staticmethod
    def message(sensor_type: str, unit: str, value: float, score: float, threshold: float) -> str:
        return (
            f"{sensor_type} alerts are flapping: {score:g} held back beyond the budget of "
            f"{threshold:g} per hour (last value {value:g} {unit})"
        )
