"""Bounds from the catalogue: ``threshold`` (warning / critical) and ``out_of_range``.

``threshold``     outside the catalogue's warning / critical bounds (once
                  sustained, see ``lifecycle.py``); clears once back inside the
                  warning bounds by ``deadband_sigma`` of the device's noise.
``out_of_range``  outside the type's physical ``range`` (always critical): a
                  faulty sensor rather than a process out of bounds.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import numpy.typing as npt

from flows.detectors.base import Detector, Round
from flows.detectors.config import F64, Bool, TypeParams
from flows.detectors.lifecycle import Events
from flows.detectors.registry import register


def threshold_level(x: F64, tix: npt.NDArray[np.intp], p: TypeParams) -> npt.NDArray[np.int8]:
    """0 inside the warning bounds, 1 outside them, 2 outside the critical bounds."""
    crit = (x < p.crit_lo[tix]) | (x > p.crit_hi[tix])
    warn = crit | (x < p.warn_lo[tix]) | (x > p.warn_hi[tix])
    return np.where(crit, 2, np.where(warn, 1, 0)).astype(np.int8)


def side_and_excess(x: F64, lo: F64, hi: F64, beyond: Bool) -> tuple[F64, F64]:
    """The reported bound (crossed one, else the nearer) and how far ``x`` is beyond it.

    The excess is negative inside the bounds, so a ``cleared`` event shows the margin.
    """
    high = np.where(beyond, x > hi, np.abs(hi - x) <= np.abs(x - lo))
    bound = np.where(high, hi, lo)
    return bound, np.where(high, x - bound, bound - x)


def threshold_bound(
    x: F64, sev: npt.NDArray[np.int8], tix: npt.NDArray[np.intp], p: TypeParams
) -> tuple[F64, F64]:
    """Bound and excess for a threshold event of severity ``sev`` (0 = nearest warning bound)."""
    # A missing warning bound falls back to the critical one on the same side.
    whi = np.where(np.isfinite(p.warn_hi[tix]), p.warn_hi[tix], p.crit_hi[tix])
    wlo = np.where(np.isfinite(p.warn_lo[tix]), p.warn_lo[tix], p.crit_lo[tix])
    hi = np.where(sev == 2, p.crit_hi[tix], whi)
    lo = np.where(sev == 2, p.crit_lo[tix], wlo)
    return side_and_excess(x, lo, hi, sev > 0)


def inside_deadband(
    x: F64, sd: F64, tix: npt.NDArray[np.intp], p: TypeParams, deadband_sigma: float
) -> Bool:
    """Back inside the warning bounds by a margin: the threshold's hysteresis.

    The margin is ``deadband_sigma`` of the device's noise, at most a quarter of
    the band, so a value hovering at a bound does not clear at every dip.
    """
    whi = np.where(np.isfinite(p.warn_hi[tix]), p.warn_hi[tix], p.crit_hi[tix])
    wlo = np.where(np.isfinite(p.warn_lo[tix]), p.warn_lo[tix], p.crit_lo[tix])
    margin = np.minimum(deadband_sigma * sd, 0.25 * (whi - wlo))
    return (x >= wlo + margin) & (x <= whi - margin)


@register
class Threshold(Detector):
    """Catalogue bounds, with the lifecycle's sustain and a deadband to clear."""

    name: ClassVar[str] = "threshold"
    sustained: ClassVar[bool] = True

    def evaluate(self, r: Round, ev: Events) -> None:
        sev = threshold_level(r.x, r.tix, self.params)
        bound, excess = threshold_bound(r.x, sev, r.tix, self.params)
        inside = inside_deadband(r.x, r.sd, r.tix, self.params, self.config.deadband_sigma)
        self.alarm.transition(r.s, r.t, sev, r.x, excess, bound, ev, inside)

    @staticmethod
    def message(sensor_type: str, unit: str, value: float, score: float, threshold: float) -> str:
        return f"{sensor_type} {value:g} {unit} is beyond the bound {threshold:g} by {score:g}"


@register
class OutOfRange(Detector):
    """Outside the physical range: a faulty sensor, always critical."""

    name: ClassVar[str] = "out_of_range"

    def evaluate(self, r: Round, ev: Events) -> None:
        lo, hi = self.params.range_lo[r.tix], self.params.range_hi[r.tix]
        out = (r.x < lo) | (r.x > hi)
        if out.any() or self.alarm.active(r.s).any():
            bound, excess = side_and_excess(r.x, lo, hi, out)
            sev = np.where(out, 2, 0).astype(np.int8)
            self.alarm.transition(r.s, r.t, sev, r.x, excess, bound, ev)

    @staticmethod
    def message(sensor_type: str, unit: str, value: float, score: float, threshold: float) -> str:
        return f"{sensor_type} {value:g} {unit} is outside the physical range (bound {threshold:g})"
