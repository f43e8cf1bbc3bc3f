"""``stuck``: the same value (within ``stuck_epsilon`` of the run's first value) for
at least ``stuck_min_count`` readings AND ``stuck_min_duration_ms`` (per type from
the catalogue's ``stuck_min_count`` / ``stuck_min_s`` where set)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from flows.detectors.base import Detector, Round
from flows.detectors.config import NO_TS
from flows.detectors.lifecycle import Events
from flows.detectors.registry import register
from flows.detectors.state import Spec


@register
class Stuck(Detector):
    """Runs of equal values by count and duration."""

    name: ClassVar[str] = "stuck"
    fields: ClassVar[Spec] = {
        "ref": (np.float64, 0.0),  # the run's first value
        "since": (np.int64, NO_TS),
        "count": (np.int32, 0),  # capped at the type's minimum count
    }

    def evaluate(self, r: Round, ev: Events) -> None:
        a, s, t, x = self.state, r.s, r.t, r.x
        ref, since = a["ref"][s], a["since"][s]
        same = r.seen & (np.abs(x - ref) <= self.config.stuck_epsilon)
        count = np.where(same, a["count"][s] + 1, 1)
        duration = (t - np.where(r.seen, since, t)) / 1000.0  # of the run so far / just ended
        since = np.where(same, since, t)
        min_count, min_ms = self.params.stuck_count[r.tix], self.params.stuck_ms[r.tix]
        stuck = (count >= min_count) & (t - since >= min_ms)
        a["ref"][s] = np.where(same, ref, x)
        a["since"][s] = since
        a["count"][s] = np.minimum(count, min_count)
        thr = min_ms / 1000.0
        self.alarm.transition(s, t, stuck.astype(np.int8), x, duration, thr, ev)

    @staticmethod
    def message(sensor_type: str, unit: str, value: float, score: float, threshold: float) -> str:
        return f"{sensor_type} stuck at {value:g} {unit} for {score:g} s"
