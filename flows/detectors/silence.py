"""``silence``: no reading for more than ``silence_timeout_ms`` of event time.

Raised from ``advance(watermark)``, cleared by the device's next reading
(never before the raise). A silence inside a cooldown is raised when the
cooldown ends, if the device is still silent.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from flows.detectors.base import Detector, Round
from flows.detectors.config import F64, I64, NO_TS
from flows.detectors.lifecycle import Events
from flows.detectors.registry import register


@register
class Silence(Detector):
    """Devices quiet past the timeout, judged on the watermark."""

    name: ClassVar[str] = "silence"

    def evaluate(self, r: Round, ev: Events) -> None:
        back = self.alarm.active(r.s)
        if back.any():
            idx = r.s[back]
            when = np.maximum(r.t[back], self.alarm.state["raised_ts"][idx])
            quiet = (r.t[back] - r.prev_ts[back]) / 1000.0
            thr = np.full(idx.size, self.config.silence_timeout_ms / 1000.0)
            off = np.zeros(idx.size, dtype=np.int8)
            self.alarm.transition(idx, when, off, r.x[back], quiet, thr, ev)

    def advance(self, watermark: int, last_ts: I64, last_val: F64, ev: Events) -> None:
        cfg, n = self.config, last_ts.size
        due = np.maximum(
            last_ts + cfg.silence_timeout_ms,
            self.alarm.state["cleared_ts"][:n] + cfg.cooldown_ms,
        )
        quiet = (last_ts != NO_TS) & ~self.alarm.state["active"][:n] & (due < watermark)
        idx = np.flatnonzero(quiet).astype(np.int64)
        if idx.size == 0:
            return
        ts = due[idx]
        ones = np.ones(idx.size, dtype=np.int8)
        quiet_s = (ts - last_ts[idx]) / 1000.0
        thr = np.full(idx.size, cfg.silence_timeout_ms / 1000.0)
        self.alarm.transition(idx, ts, ones, last_val[idx], quiet_s, thr, ev)

    @staticmethod
    def message(sensor_type: str, unit: str, value: float, score: float, threshold: float) -> str:
        return f"no {sensor_type} reading for {score:g} s (last {value:g} {unit})"
