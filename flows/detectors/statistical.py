"""Against the device's own baseline: ``ewma`` (how unusual) and ``rate_of_change``.

``ewma``            more than ``k_sigma`` (warning) / ``k_sigma_critical``
                    (critical) standard deviations from the device's EWMA mean,
                    after ``ewma_warmup`` readings (see ``baseline.py`` for the
                    clipped update that keeps an outlier from hiding itself).
``rate_of_change``  |dvalue| between consecutive readings beyond the type's
                    ``max_rate`` (per second) times dt, plus a noise allowance of
                    ``rate_noise_sigma`` sigmas of a difference (sqrt(2) EWMA
                    sigma); ``rate_critical_factor`` times that rate is critical.

``ewma`` judges a level, so it takes the lifecycle's sustain, and it clears
once the z-score is back under ``k_sigma - deadband_sigma``. After
``changepoint_readings`` readings in a row beyond ``k_sigma`` it calls a change
point: the device's baseline starts again (a new warm-up, during which the
alarm clears), so a level shift is one episode, not hours of alarm.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from flows.detectors.base import Detector, Round
from flows.detectors.config import SQRT2
from flows.detectors.lifecycle import Events
from flows.detectors.registry import register
from flows.detectors.state import Spec


@register
class Ewma(Detector):
    """z-score against the device's EWMA before this reading (after the warm-up)."""

    name: ClassVar[str] = "ewma"
    sustained: ClassVar[bool] = True
    fields: ClassVar[Spec] = {"far": (np.int16, 0)}  # readings in a row beyond k_sigma

    def evaluate(self, r: Round, ev: Events) -> None:
        cfg = self.config
        z = np.where(r.warm, np.abs(r.x - r.mean) / r.sd, 0.0)
        sev = np.where(z > cfg.k_sigma_critical, 2, np.where(z > cfg.k_sigma, 1, 0))
        thr = np.where(sev == 2, cfg.k_sigma_critical, cfg.k_sigma)
        inside = z <= max(cfg.k_sigma - cfg.deadband_sigma, 0.0)
        self.alarm.transition(r.s, r.t, sev.astype(np.int8), r.x, z, thr, ev, inside)
        if cfg.changepoint_readings:
            far = np.where(sev > 0, self.state["far"][r.s].astype(np.int32) + 1, 0)
            shift = far >= cfg.changepoint_readings
            self.state["far"][r.s] = np.where(shift, 0, far)
            r.rebase[shift] = True

    @staticmethod
    def message(sensor_type: str, unit: str, value: float, score: float, threshold: float) -> str:
        return f"{sensor_type} {value:g} {unit} is {score:.1f} sigma from its EWMA mean"


@register
class RateOfChange(Detector):
    """Jump since the device's previous reading beyond max_rate * dt plus noise slack."""

    name: ClassVar[str] = "rate_of_change"

    def evaluate(self, r: Round, ev: Events) -> None:
        if not r.seen.any():
            return
        cfg = self.config
        i = np.flatnonzero(r.seen)
        mr = self.params.max_rate[r.tix[i]]  # nan (no limit): every comparison is False
        dt = (r.t[i] - r.prev_ts[i]) / 1000.0
        dx = np.abs(r.x[i] - r.prev_val[i])
        # A difference of two noisy readings has sqrt(2) sigma: noise alone is no jump.
        slack = cfg.rate_noise_sigma * SQRT2 * r.sd[i]
        sev = np.where(
            dx > cfg.rate_critical_factor * mr * dt + slack,
            2,
            np.where(dx > mr * dt + slack, 1, 0),
        ).astype(np.int8)
        self.alarm.transition(r.s[i], r.t[i], sev, r.x[i], dx / dt / mr, mr, ev)

    @staticmethod
    def message(sensor_type: str, unit: str, value: float, score: float, threshold: float) -> str:
        return f"{sensor_type} changed at {score:.1f}x its max rate {threshold:g} {unit}/s"
