"""Field conditions the simulator's default fleet lacks, for ``bench.detection_quality``.

Why: the default fleet reports every ~10 s with mild jitter and keeps its
values well inside the bounds, so a detector that flaps at a bound or judges
time in fixed milliseconds looks fine on it. Real fleets mix 1 s, 1 min and
5 min sensors, have irregular gaps, and have sensors that sit right at a
bound. ``Conditions`` bends a ``Fleet`` that way after it is built:

- ``cadences_s``: each device's base interval is one of these (every type gets
  every cadence), spread +-20 %;
- ``hover``: this share of the devices of types with a warning high bound sit
  at that bound (no daily cycle or drift, only their noise), so about half
  their readings are beyond it. Their alerts are not labelled anomalies; they
  are reported apart (``HoverStats``: raises per device-hour against bound
  crossings per device-hour, i.e. what one alert per crossing would give).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from iotpipe.catalogue import Catalogue
from simulators.fleet import Batch, Fleet


@dataclass(frozen=True)
class Conditions:
    cadences_s: tuple[float, ...] = ()
    hover: float = 0.0

    @property
    def any(self) -> bool:
        return bool(self.cadences_s) or self.hover > 0


@dataclass
class HoverStats:
    """Bound crossings of the hovering devices, and what the detectors made of them."""

    devices: dict[int, float] = field(default_factory=dict)  # fleet index -> its bound
    crossings: int = 0
    raised: int = 0
    device_hours: float = 0.0
    _above: dict[int, bool] = field(default_factory=dict)

    def observe(self, batch: Batch) -> None:
        for d, v in zip(batch.device.tolist(), batch.value.tolist(), strict=True):
            bound = self.devices.get(d)
            if bound is None:
                continue
            above = v > bound
            if d in self._above and above and not self._above[d]:
                self.crossings += 1
            self._above[d] = above

    def as_dict(self) -> dict[str, float | int | None]:
        hours = self.device_hours
        return {
            "devices": len(self.devices),
            "crossings_per_device_hour": self.crossings / hours if hours else None,
            "raised_per_device_hour": self.raised / hours if hours else None,
            "raised_per_crossing": self.raised / self.crossings if self.crossings else None,
        }


def nominal_cadences(fleet: Fleet, conditions: Conditions) -> list[float]:
    """Each device's cadence before the spread (what ``apply`` gave it)."""
    k, types = len(conditions.cadences_s), len(fleet.naming.types)
    return [conditions.cadences_s[(d // types) % k] for d in range(fleet.devices)]


def apply(fleet: Fleet, conditions: Conditions, catalogue: Catalogue, seed: int) -> HoverStats:
    """Bend ``fleet`` to ``conditions`` (in place); the hovering devices, to watch."""
    rng = np.random.default_rng(seed + 7919)
    n = fleet.devices
    types = fleet.naming.types
    if conditions.cadences_s:
        cadence = np.asarray(nominal_cadences(fleet, conditions), np.float64)
        interval = cadence * 1000.0 * rng.uniform(0.8, 1.2, n)
        fleet.interval_ms = interval.astype(np.float32)
        fleet.next_due = fleet.start_ms + rng.uniform(0, 1, n) * fleet.interval_ms
    stats = HoverStats()
    if conditions.hover > 0:
        bounds = [catalogue[t].warning[1] for t in types]
        for d in np.flatnonzero(rng.uniform(0, 1, n) < conditions.hover).tolist():
            bound = bounds[int(fleet.stype[d])]
            if bound is None or not math.isfinite(bound):
                continue
            fleet.base[d] = bound
            fleet.amp[d] = 0.0
            fleet.drift_amp[d] = 0.0
            stats.devices[d] = float(bound)
    return stats
