"""The alarm lifecycle every detector shares, and the events it turns into ``Alert``s.

Per (device, detector), all in event time so a replay gives the same events,
and counted in the device's own readings and cadence so a sensor reporting
every 5 minutes behaves like one reporting every second:

- ``raised`` once the condition has held for ``sustain_readings`` readings and
  ``sustain_ms`` (detectors that judge a level, ``threshold`` and ``ewma``;
  the others raise on the first reading); severity ``warning`` or ``critical``;
  ``alert_id = alert_id(device, sensor_type, detector, ts_of_the_raising_event)``.
- ``escalated`` when severity rises while active (at once; at most once: warning
  to critical); a falling severity emits nothing, the episode keeps its peak.
- ``cleared`` (hysteresis) only after ``clear_readings`` readings in a row back
  *inside the deadband* (the detector says what that is: e.g. a threshold's
  bound less ``deadband_sigma`` of the device's noise), so a value hovering at a
  bound is one episode, not one per crossing. ``silence`` clears on the first
  reading back. Its severity is the episode's peak, so it is routed where the
  raise went.
- Escalated and cleared events reuse the episode's ``alert_id``; ``state``
  tells them apart, so ``(alert_id, state)`` is unique and idempotent sinks
  can de-duplicate on it.
- Repeats are suppressed while active; after a clear, a new episode is not
  raised before ``cleared_ts + max(cooldown_ms, cooldown_intervals x the
  device's typical interval)`` unless it is more severe than the last one (a
  critical is never held back by an earlier warning's cooldown).
- A raise beyond the device's alert budget (``flapping.py``) starts a *muted*
  episode: it runs its course without events, and is counted in the device's
  ``flapping`` alarm instead (its escalation escalates that alarm), so nothing
  is dropped silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from flows.detectors import registry
from flows.detectors.config import F64, I64, NO_TS, SEVERITIES, STATES
from flows.detectors.state import SlotArrays, Spec
from flows.slots import SlotMap
from iotpipe.model import Alert, alert_id


class Budget(Protocol):
    """What an alarm asks before raising (``flapping.Flapping``)."""

    def admit(
        self, idx: I64, ts: I64, sev: npt.NDArray[np.int8], value: F64, ev: Events
    ) -> npt.NDArray[np.bool_]: ...

    def escalate(
        self, idx: I64, ts: I64, sev: npt.NDArray[np.int8], value: F64, ev: Events
    ) -> None: ...


RAISED: Final = 0
ESCALATED: Final = 1
CLEARED: Final = 2

ALARM_FIELDS: Final[Spec] = {
    "active": (np.bool_, False),
    "sev": (np.int8, 0),  # active: current peak; inactive: the last episode's peak
    "raised_ts": (np.int64, NO_TS),
    "cleared_ts": (np.int64, NO_TS),
    # Readings in a row that count towards a change: inactive, with the condition on
    # (the sustain); active, back inside the deadband (the clear). Capped at RUN_CAP.
    "run": (np.int16, 0),
    "run_since": (np.int64, NO_TS),  # inactive: its first reading (kept if sustain_ms)
    "muted": (np.bool_, False),  # active episode held back by the alert budget
}
RUN_CAP: Final = 2**15 - 1


@dataclass
class Events:
    """Columns of the events found in one call; turned into Alerts at the end."""

    parts: list[tuple[npt.NDArray[Any], ...]] = field(default_factory=list)

    def add(
        self,
        slot: I64,
        det: int,
        state: int,
        sev: npt.NDArray[Any],
        ts: I64,
        id_ts: I64,
        value: F64,
        score: F64,
        thr: F64,
    ) -> None:
        if slot.size:
            n = slot.size
            self.parts.append(
                (
                    slot,
                    np.full(n, det, np.int64),
                    np.full(n, state, np.int64),
                    sev.astype(np.int64),
                    ts,
                    id_ts,
                    value,
                    score,
                    thr,
                )
            )

    def alerts(self, slots: SlotMap, units: tuple[str, ...]) -> list[Alert]:
        """Events as Alerts, ordered by (ts, slot, detector) whatever the batch order was."""
        if not self.parts:
            return []
        cols = [np.concatenate(c) for c in zip(*self.parts, strict=True)]
        slot, det, ts = cols[0], cols[1], cols[4]
        order = np.lexsort((det, slot, ts))
        rows = zip(*(c[order].tolist() for c in cols), strict=True)
        return [make_alert(slots, units, *row) for row in rows]


@dataclass(frozen=True)
class Lifecycle:
    """One alarm's rules, from ``DetectorConfig`` and what kind of detector owns it."""

    sustain_readings: int = 1
    sustain_ms: int = 0
    clear_readings: int = 1
    cooldown_ms: int = 0
    cooldown_intervals: float = 0.0


class Alarm:
    """One detector's episodes for every device: active, peak severity, raise and clear.

    ``cadence`` (the baseline's columns, for each device's ``interval``) and
    ``budget`` (the ``flapping`` detector) are linked by the bank.
    """

    def __init__(self, det: int, rules: Lifecycle, capacity: int) -> None:
        self.det = det
        self.rules = rules
        spec = dict(ALARM_FIELDS)
        if rules.sustain_ms == 0:  # 8 bytes a device saved per alarm when not needed
            del spec["run_since"]
        self.state = SlotArrays(spec, capacity)
        self.cadence: SlotArrays | None = None
        self.budget: Budget | None = None

    def active(self, idx: I64) -> npt.NDArray[np.bool_]:
        return self.state["active"][idx]

    def cooldown(self, interval: F64) -> I64:
        """Cooldowns of devices with these intervals: the fixed one or their own, the longer."""
        own = (self.rules.cooldown_intervals * interval).astype(np.int64)
        return np.maximum(self.rules.cooldown_ms, own)

    def _interval(self, idx: I64) -> F64:
        if self.cadence is None:
            return np.zeros(idx.size)
        return self.cadence["interval"][idx]

    def transition(
        self,
        idx: I64,
        ts: I64,
        sev_new: npt.NDArray[np.int8],
        value: F64,
        score: F64,
        thr: F64,
        ev: Events,
        inside: npt.NDArray[np.bool_] | None = None,
    ) -> None:
        """Apply one reading's condition per slot in ``idx`` (unique) to the lifecycle.

        ``inside``: the reading is back inside the deadband (default: condition off);
        only such readings count towards a clear.
        """
        a, det, rules = self.state, self.det, self.rules
        active, sev, raised_ts, cleared_ts = a["active"], a["sev"], a["raised_ts"], a["cleared_ts"]
        act = active[idx]
        cur = sev[idx]
        on = sev_new > 0
        calm_in = ~on if inside is None else inside & ~on
        up = sev_new > cur
        # one run counter: the sustain while inactive, the calm readings while active
        was = a["run"][idx].astype(np.int32)
        pending = np.where(on & ~act, np.minimum(was + 1, RUN_CAP), 0)
        held = pending >= rules.sustain_readings
        if rules.sustain_ms:
            since = np.where(on & ~act, np.where(was > 0, a["run_since"][idx], ts), NO_TS)
            a["run_since"][idx] = since
            held &= ts - since >= rules.sustain_ms
        cooled = ts >= cleared_ts[idx] + self.cooldown(self._interval(idx))
        rise = ~act & on & held & (cooled | up)
        esc = act & up
        calm = np.where(act & calm_in, np.minimum(was + 1, RUN_CAP), 0)
        clr = act & calm_in & (calm >= rules.clear_readings)
        a["run"][idx] = np.where(act, np.where(clr, 0, calm), np.where(rise, 0, pending))
        if rise.any():
            r = idx[rise]
            admit = np.ones(r.size, np.bool_)
            if self.budget is not None:
                admit = self.budget.admit(r, ts[rise], sev_new[rise], value[rise], ev)
            active[r] = True
            a["muted"][r] = ~admit
            sev[r] = sev_new[rise]
            raised_ts[r] = ts[rise]
            k = np.flatnonzero(rise)[admit]
            ev.add(idx[k], det, RAISED, sev_new[k], ts[k], ts[k], value[k], score[k], thr[k])
        if esc.any():
            e = idx[esc]
            sev[e] = sev_new[esc]
            muted = a["muted"][e]
            if muted.any() and self.budget is not None:
                m = np.flatnonzero(esc)[muted]
                self.budget.escalate(idx[m], ts[m], sev_new[m], value[m], ev)
            k = np.flatnonzero(esc)[~muted]
            ev.add(
                idx[k], det, ESCALATED, sev_new[k], ts[k], raised_ts[idx[k]], value[k], score[k],
                thr[k],
            )  # fmt: skip
        if clr.any():
            c = idx[clr]
            active[c] = False
            cleared_ts[c] = ts[clr]
            muted = a["muted"][c]
            a["muted"][c] = False
            k = np.flatnonzero(clr)[~muted]
            ev.add(
                idx[k], det, CLEARED, sev[idx[k]], ts[k], raised_ts[idx[k]], value[k], score[k],
                thr[k],
            )  # fmt: skip


def make_alert(
    slots: SlotMap,
    units: tuple[str, ...],
    slot: int,
    det: int,
    state: int,
    sev: int,
    ts: int,
    id_ts: int,
    value: float,
    score: float,
    threshold: float,
) -> Alert:
    """One Alert from event columns; non-finite numbers become 0 so the JSON stays valid."""
    tix = int(slots.slot_type[slot])
    device = slots.device_ids[slot]
    sensor_type = slots.type_names[tix]
    detector = registry.names()[det]
    value = value if math.isfinite(value) else 0.0
    score = score if math.isfinite(score) else 0.0
    threshold = threshold if math.isfinite(threshold) else 0.0
    state_name = STATES[state]
    message: str
    if state_name == "cleared":
        message = f"{detector} cleared: {sensor_type} {value:g} {units[tix]}"
    else:
        message = registry.lookup(detector).message(
            sensor_type, units[tix], value, score, threshold
        )
    return Alert(
        alert_id=alert_id(device, sensor_type, detector, id_ts),
        device_id=device,
        sensor_type=sensor_type,
        site=slots.site_names[int(slots.slot_site[slot])],
        detector=detector,
        severity=SEVERITIES[sev],
        ts=ts,
        value=value,
        score=score,
        threshold=threshold,
        message=message,
        state=state_name,
    )
