"""What a detector is: a class owning its per-device columns and judging one round.

To add a detector, subclass ``Detector``, declare its columns in ``fields``,
write ``evaluate`` (and ``message``), decorate it with ``@register`` and name
it in ``DetectorConfig.detectors``. It sees each device's readings in
event-time order, one round at a time (``Round``: unique devices, the
baseline before this reading), and reports a severity per device to its
``alarm``, which owns sustain / raise / escalate / hysteresis / clear /
cooldown and the alert budget. ``sustained`` and ``hysteresis`` say which of
the lifecycle's rules fit the detector.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple, cast

import numpy as np
import numpy.typing as npt

from flows.detectors import registry
from flows.detectors.config import F64, I64, Bool, DetectorConfig, TypeParams
from flows.detectors.lifecycle import Alarm, Events, Lifecycle
from flows.detectors.state import SlotArrays, Spec
from flows.slots import SlotMap


class Round(NamedTuple):
    """One round's readings (unique slots) and the pre-update state detectors share."""

    s: I64
    t: I64
    x: F64
    tix: npt.NDArray[np.intp]
    seen: Bool  # the device had a reading before this one
    warm: Bool  # its baseline is past the warm-up
    mean: F64
    sd: F64
    prev_ts: I64
    prev_val: F64
    interval: F64  # the device's typical interval between readings, ms (0: not known yet)
    rebase: Bool  # set by a detector: the baseline starts again after this reading


class Known(NamedTuple):
    """Every known slot's last reading and cadence, for ``advance``."""

    last_ts: I64
    last_val: F64
    interval: F64


class Detector:
    """One kind of anomaly for every device of a partition."""

    name: ClassVar[str]
    fields: ClassVar[Spec] = {}
    sustained: ClassVar[bool] = False  # judges a level: raise only once it has held
    hysteresis: ClassVar[bool] = True  # clear only after clear_readings calm readings

    def __init__(self, det: int, config: DetectorConfig, params: TypeParams, capacity: int):
        self.det = det
        self.config = config
        self.params = params
        self.state = SlotArrays(self.fields, capacity)
        self.alarm = Alarm(det, self.lifecycle(config), capacity)

    @classmethod
    def lifecycle(cls, config: DetectorConfig) -> Lifecycle:
        """This detector's alarm rules (``Flapping`` has its own)."""
        return Lifecycle(
            sustain_readings=config.sustain_readings if cls.sustained else 1,
            sustain_ms=config.sustain_ms if cls.sustained else 0,
            clear_readings=config.clear_readings if cls.hysteresis else 1,
            cooldown_ms=config.cooldown_ms,
            cooldown_intervals=config.cooldown_intervals,
        )

    def evaluate(self, r: Round, ev: Events) -> None:
        """Judge one round (before the baseline takes it in) and tell the alarm."""
        raise NotImplementedError

    def advance(self, watermark: int, known: Known, ev: Events) -> None:
        """The watermark moved; most detectors ignore it."""

    @staticmethod
    def message(sensor_type: str, unit: str, value: float, score: float, threshold: float) -> str:
        """Text of a raised or escalated alert."""
        raise NotImplementedError

    # -- state, for the bank's growth and snapshots -----------------------

    def fit(self, slots: SlotMap) -> None:
        self.state.fit(slots)
        self.alarm.state.fit(slots)

    def copy(self, n: int) -> dict[str, npt.NDArray[Any]]:
        return self.state.copy(n, f"{self.name}.") | self.alarm.state.copy(n, f"{self.name}.alarm.")

    def load(self, arrays: Mapping[str, npt.NDArray[Any]], n: int) -> None:
        self.state.load(arrays, n, f"{self.name}.")
        self.alarm.state.load(arrays, n, f"{self.name}.alarm.")

    def bytes_per_slot(self) -> int:
        return self.state.nbytes_per_slot() + self.alarm.state.nbytes_per_slot()


def detector_class(name: str) -> type[Detector]:
    """The registered class of ``name`` (``registry`` holds it untyped)."""
    return cast(type[Detector], registry.lookup(name))
