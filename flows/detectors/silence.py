"""``silence``: no reading for longer than the device's own timeout, in event time.

The timeout is ``silence_timeout_ms`` or ``silence_interval_factor`` times the
device's typical interval between readings (learned by the baseline), whichever
is longer, so a sensor reporting every 5 minutes is not "silent" between two
readings while a 1 s sensor keeps the fixed timeout. Until a device's interval
is known (its first reading) the timeout is at least ``silence_first_timeout_ms``. Raised from
``advance(watermark)``, cleared by the device's next reading (never before the
raise). A silence inside a cooldown is raised when the cooldown ends, if the
device is still silent.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from flows.detectors.base import Detector, Known, Round
from flows.detectors.config import F64, I64, NO_TS
from flows.detectors.lifecycle import Events
from flows.detectors.registry import register


@register
class Silence(Detector):
    """Devices quiet past the timeout, judged on the watermark."""

    name: ClassVar[str] = "silence"
    hysteresis: ClassVar[bool] = False  # one reading back is the end of a silence

    def timeout_ms(self, interval: F64) -> I64:
        """The timeout of devices with these learned intervals: the fixed one or their
        own intervals, whichever is longer (``silence_first_timeout_ms`` while unknown)."""
        cfg = self.config
        learned = (cfg.silence_interval_factor * interval).astype(np.int64)
        if cfg.silence_interval_factor > 0:  # 0: the fixed timeout, always
            learned = np.where(interval > 0, learned, cfg.silence_first_timeout_ms)
        return np.maximum(cfg.silence_timeout_ms, learned)

    def evaluate(self, r: Round, ev: Events) -> None:
        back = self.alarm.active(r.s)
        if back.any():
            idx = r.s[back]
            when = np.maximum(r.t[back], self.alarm.state["raised_ts"][idx])
            quiet = (r.t[back] - r.prev_ts[back]) / 1000.0
            thr = self.timeout_ms(r.interval[back]) / 1000.0
            off = np.zeros(idx.size, dtype=np.int8)
            self.alarm.transition(idx, when, off, r.x[back], quiet, thr, ev)

    def advance(self, watermark: int, known: Known, ev: Events) -> None:
        n = known.last_ts.size
        timeout = self.timeout_ms(known.interval)
        cool_end = self.alarm.state["cleared_ts"][:n] + self.alarm.cooldown(known.interval)
        due = np.maximum(known.last_ts + timeout, cool_end)
        quiet = (known.last_ts != NO_TS) & ~self.alarm.state["active"][:n] & (due < watermark)
        idx = np.flatnonzero(quiet).astype(np.int64)
        if idx.size == 0:
            return
        ts = due[idx]
        ones = np.ones(idx.size, dtype=np.int8)
        quiet_s = (ts - known.last_ts[idx]) / 1000.0
        thr = timeout[idx] / 1000.0
        self.alarm.transition(idx, ts, ones, known.last_val[idx], quiet_s, thr, ev)

    @staticmethod
    def message(sensor_type: str, unit: str, value: float, score: float, threshold: float) -> str:
        return f"no {sensor_type} reading for {score:g} s (last {value:g} {unit})"
