"""``stuck``: the same value (within ``stuck_epsilon`` of the run's first value) for
at least ``stuck_min_count`` readings AND ``stuck_min_duration_ms`` (per type from
the catalogue's ``stuck_min_count`` / ``stuck_min_s`` where set).

The duration is there for sensors that legitimately repeat a value (coarse
resolution, a slow process); it is waived when the run is improbable for this
device: each device learns how often a reading equals the run before it
(``repeat``, outside runs of the minimum count), and a run of n that likely
(``repeat ** (n - 1)``) below ``stuck_improbable`` is evidence enough. So a
noisy 1 s sensor is stuck after its minimum count of equal readings, not after
minutes, whatever its cadence.
"""

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
        "repeat": (np.float64, 0.5),  # share of readings equal to the run so far (EWMA)
    }

    def evaluate(self, r: Round, ev: Events) -> None:
        a, s, t, x = self.state, r.s, r.t, r.x
        ref, since = a["ref"][s], a["since"][s]
        same = r.seen & (np.abs(x - ref) <= self.config.stuck_epsilon)
        count = np.where(same, a["count"][s] + 1, 1)
        duration = (t - np.where(r.seen, since, t)) / 1000.0  # of the run so far / just ended
        since = np.where(same, since, t)
        min_count, min_ms = self.params.stuck_count[r.tix], self.params.stuck_ms[r.tix]
        cfg, repeat = self.config, a["repeat"][s]
        waived = repeat ** (np.minimum(count, min_count) - 1) < cfg.stuck_improbable
        stuck = (count >= min_count) & ((t - since >= min_ms) | waived)
        # learned outside long runs, so a stuck run does not teach the device to repeat
        learn = r.seen & (count < min_count)
        a["repeat"][s] = np.where(learn, repeat + cfg.stuck_repeat_alpha * (same - repeat), repeat)
        a["ref"][s] = np.where(same, ref, x)
        a["since"][s] = since
        a["count"][s] = np.minimum(count, min_count)
        thr = min_ms / 1000.0
        self.alarm.transition(s, t, stuck.astype(np.int8), x, duration, thr, ev)

    @staticmethod
    def message(sensor_type: str, unit: str, value: float, score: float, threshold: float) -> str:
        return f"{sensor_type} stuck at {value:g} {unit} for {score:g} s"
