"""Tunables and the catalogue's numbers per sensor type, shared by every detector."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from flows.detectors import registry
from iotpipe.catalogue import Catalogue
from iotpipe.errors import ConfigError
from iotpipe.model import AlertState, Severity

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]

THRESHOLD: Final = 0
EWMA: Final = 1
RATE: Final = 2
STUCK: Final = 3
SILENCE: Final = 4
OUT_OF_RANGE: Final = 5
FLAPPING: Final = 6
DETECTORS: Final = registry.DETECTORS
STATES: Final[tuple[AlertState, ...]] = ("raised", "escalated", "cleared")
SEVERITIES: Final[dict[int, Severity]] = {0: "info", 1: "warning", 2: "critical"}
SQRT2: Final = math.sqrt(2.0)
NO_TS: Final = -(2**62)  # "never"; far from int64 limits so ts arithmetic cannot overflow
HOUR_MS: Final = 3_600_000


@dataclass(frozen=True)
class DetectorConfig:
    """Tunables shared by all sensor types; bounds and max_rate come from the catalogue."""

    detectors: tuple[str, ...] = DETECTORS
    ewma_alpha: float = 0.02  # bench/detection_quality: 0.05 let the mean follow slow drifts
    ewma_var_alpha: float = 0.01  # slower than the mean: a steadier sigma, fewer false alarms
    ewma_warmup: int = 30
    k_sigma: float = 4.5  # 4.0: ~35 false alarms per 1000 device-hours from noise tails alone
    k_sigma_critical: float = 8.0
    ewma_clip_sigma: float = 4.0
    # A change point: this many readings in a row beyond k_sigma and the baseline starts
    # again from the next reading (a new warm-up), so a level shift raises once and then
    # becomes the new normal instead of keeping its alarm on for hours. 0: never.
    changepoint_readings: int = 30
    min_std_fraction: float = 1e-4  # sigma floor, as a fraction of the type's range span
    rate_critical_factor: float = 5.0
    rate_noise_sigma: float = 4.0
    stuck_epsilon: float = 1e-9
    stuck_min_count: int = 10
    stuck_min_duration_ms: int = 120_000
    # A run of equal readings this unlikely given the device's own repeat rate (learned
    # with stuck_repeat_alpha) is stuck at the minimum count, without waiting for the
    # duration: a 1 s sensor that never repeats a value is stuck after 10 equal ones,
    # a coarse one that often repeats still needs the duration. 0: always wait.
    stuck_improbable: float = 1e-6
    stuck_repeat_alpha: float = 0.01
    silence_timeout_ms: int = 60_000  # the floor; see silence_interval_factor
    # A device is silent after this many of its own typical intervals, if that is longer
    # than silence_timeout_ms: a sensor that reports every 5 minutes is not silent
    # between two readings. 0: the fixed timeout.
    silence_interval_factor: float = 5.0
    # Before a device's interval is known (one reading so far) this is its timeout, if
    # longer: a 5-minute sensor is not silent a minute after its first reading.
    silence_first_timeout_ms: int = 600_000
    # Each device's typical interval: an EWMA of the gaps between its readings (each
    # capped at GAP_CAP x the estimate, so one outage does not teach it to be quiet).
    interval_alpha: float = 0.1
    # The alarm lifecycle (lifecycle.py). threshold and ewma raise once their condition
    # has held for sustain_readings readings and sustain_ms; every alarm but silence
    # clears only after clear_readings readings in a row back inside the deadband
    # (deadband_sigma of the device's noise inside the bound); after a clear, a new
    # episode waits max(cooldown_ms, cooldown_intervals x the device's interval).
    sustain_readings: int = 1
    sustain_ms: int = 0
    clear_readings: int = 3
    deadband_sigma: float = 1.0
    cooldown_ms: int = 60_000
    cooldown_intervals: float = 5.0
    # At most this many raised alerts per device (slot) per hour; the excess is counted
    # and rolled into one "flapping" alarm (if that detector is enabled). 0: no budget.
    alert_budget_per_hour: int = 10

    def __post_init__(self) -> None:
        known = (*DETECTORS, *(n for n in registry.names() if n not in DETECTORS))
        unknown = sorted(set(self.detectors) - set(known))
        if unknown:
            raise ConfigError(f"unknown detector(s) {unknown}; choose from {list(known)}")
        checks = {
            "ewma_alpha": 0 < self.ewma_alpha <= 1,
            "ewma_var_alpha": 0 < self.ewma_var_alpha <= 1,
            "ewma_warmup": self.ewma_warmup >= 1,
            "k_sigma": self.k_sigma > 0,
            "k_sigma_critical": self.k_sigma_critical >= self.k_sigma,
            "ewma_clip_sigma": self.ewma_clip_sigma > 0,
            "changepoint_readings": 0 <= self.changepoint_readings < 2**15,
            "min_std_fraction": self.min_std_fraction > 0,
            "rate_critical_factor": self.rate_critical_factor >= 1,
            "rate_noise_sigma": self.rate_noise_sigma >= 0,
            "stuck_epsilon": self.stuck_epsilon >= 0,
            "stuck_min_count": self.stuck_min_count >= 2,
            "stuck_min_duration_ms": self.stuck_min_duration_ms >= 0,
            "stuck_improbable": 0 <= self.stuck_improbable < 1,
            "stuck_repeat_alpha": 0 < self.stuck_repeat_alpha <= 1,
            "silence_timeout_ms": self.silence_timeout_ms > 0,
            "silence_interval_factor": self.silence_interval_factor >= 0,
            "silence_first_timeout_ms": self.silence_first_timeout_ms >= 0,
            "interval_alpha": 0 < self.interval_alpha <= 1,
            "sustain_readings": 1 <= self.sustain_readings < 2**15,
            "sustain_ms": self.sustain_ms >= 0,
            "clear_readings": 1 <= self.clear_readings < 2**15,
            "deadband_sigma": self.deadband_sigma >= 0,
            "cooldown_ms": self.cooldown_ms >= 0,
            "cooldown_intervals": self.cooldown_intervals >= 0,
            "alert_budget_per_hour": self.alert_budget_per_hour >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = {name: getattr(self, name) for name in bad}
            raise ConfigError(f"detector config out of range: {values}")

    def enabled(self, detector: str) -> bool:
        return detector in self.detectors


@dataclass(frozen=True)
class TypeParams:
    """Catalogue values per type index (``SlotMap.type_names`` order); None -> +-inf / nan."""

    warn_lo: F64
    warn_hi: F64
    crit_lo: F64
    crit_hi: F64
    range_lo: F64
    range_hi: F64
    max_rate: F64
    min_sd: F64
    stuck_count: I64
    stuck_ms: I64
    units: tuple[str, ...]

    @classmethod
    def build(
        cls, catalogue: Catalogue, type_names: list[str], config: DetectorConfig
    ) -> TypeParams:
        missing = [n for n in type_names if n not in catalogue]
        if missing:
            raise ConfigError(f"sensor type(s) {missing} are not in the catalogue")
        types = [catalogue[n] for n in type_names]

        def col(values: list[float | None], none: float) -> F64:
            return np.array([none if v is None else v for v in values], dtype=np.float64)

        inf = math.inf
        return cls(
            warn_lo=col([t.warning[0] for t in types], -inf),
            warn_hi=col([t.warning[1] for t in types], inf),
            crit_lo=col([t.critical[0] for t in types], -inf),
            crit_hi=col([t.critical[1] for t in types], inf),
            range_lo=col([t.range[0] for t in types], -inf),
            range_hi=col([t.range[1] for t in types], inf),
            max_rate=col([t.max_rate for t in types], math.nan),
            min_sd=col([config.min_std_fraction * (t.range[1] - t.range[0]) for t in types], 1.0),
            stuck_count=np.array(
                [t.stuck_min_count or config.stuck_min_count for t in types], np.int64
            ),
            stuck_ms=np.array(
                [
                    config.stuck_min_duration_ms if t.stuck_min_s is None else t.stuck_min_s * 1000
                    for t in types
                ],
                np.int64,
            ),
            units=tuple(t.unit for t in types),
        )
