"""The alarm lifecycle every detector shares, and the events it turns into ``Alert``s.

Per (device, detector), all in event time so a replay gives the same events:

- ``raised`` when the condition starts (severity ``warning`` or ``critical``);
  ``alert_id = alert_id(device, sensor_type, detector, ts_of_the_raising_event)``.
- ``escalated`` when severity rises while active (at most once: warning to
  critical); a falling severity emits nothing, the episode keeps its peak.
- ``cleared`` at the first reading where the condition no longer holds; its
  severity is the episode's peak, so it is routed where the raise went.
- Escalated and cleared events reuse the episode's ``alert_id``; ``state``
  tells them apart, so ``(alert_id, state)`` is unique and idempotent sinks
  can de-duplicate on it.
- Repeats are suppressed while active; after a clear, a new episode is not
  raised before ``cleared_ts + cooldown_ms`` unless it is more severe than the
  last one (a critical is never held back by an earlier warning's cooldown).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from flows.detectors import registry
from flows.detectors.config import F64, I64, NO_TS, SEVERITIES, STATES
from flows.detectors.state import SlotArrays, Spec
from flows.slots import SlotMap
from iotpipe.model import Alert, alert_id

RAISED: Final = 0
ESCALATED: Final = 1
CLEARED: Final = 2

ALARM_FIELDS: Final[Spec] = {
    "active": (np.bool_, False),
    "sev": (np.int8, 0),  # active: current peak; inactive: the last episode's peak
    "raised_ts": (np.int64, NO_TS),
    "cleared_ts": (np.int64, NO_TS),
}


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


class Alarm:
    """One detector's episodes for every device: active, peak severity, raise and clear."""

    def __init__(self, det: int, cooldown_ms: int, capacity: int) -> None:
        self.det = det
        self.cooldown_ms = cooldown_ms
        self.state = SlotArrays(ALARM_FIELDS, capacity)

    def active(self, idx: I64) -> npt.NDArray[np.bool_]:
        return self.state["active"][idx]

    def transition(
        self,
        idx: I64,
        ts: I64,
        sev_new: npt.NDArray[np.int8],
        value: F64,
        score: F64,
        thr: F64,
        ev: Events,
    ) -> None:
        """Apply one condition per slot in ``idx`` (unique) to the lifecycle."""
        a, det = self.state, self.det
        active, sev, raised_ts, cleared_ts = a["active"], a["sev"], a["raised_ts"], a["cleared_ts"]
        act = active[idx]
        cur = sev[idx]
        up = sev_new > cur
        on = sev_new > 0
        rise = ~act & on & ((ts >= cleared_ts[idx] + self.cooldown_ms) | up)
        esc = act & up
        clr = act & ~on
        if rise.any():
            r = idx[rise]
            active[r] = True
            sev[r] = sev_new[rise]
            raised_ts[r] = ts[rise]
            ev.add(
                r, det, RAISED, sev_new[rise], ts[rise], ts[rise], value[rise], score[rise],
                thr[rise],
            )  # fmt: skip
        if esc.any():
            e = idx[esc]
            sev[e] = sev_new[esc]
            ev.add(
                e, det, ESCALATED, sev_new[esc], ts[esc], raised_ts[e], value[esc], score[esc],
                thr[esc],
            )  # fmt: skip
        if clr.any():
            c = idx[clr]
            active[c] = False
            cleared_ts[c] = ts[clr]
            ev.add(c, det, CLEARED, sev[c], ts[clr], raised_ts[c], value[clr], score[clr], thr[clr])


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
