"""Labelled anomalies injected into the fleet's signals, and their ground truth.

An anomaly starts at a device's reading with probability ``rate`` (if that
device is not already in one), lasts a number of readings, and is recorded as
a ``Label`` when it ends. All draws come from ``hashrng`` keyed by the reading's
coordinates, so the same seed gives the same anomalies at the same readings
whatever the batch size or pacing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import msgspec
import numpy as np
import numpy.typing as npt

from iotpipe.errors import ConfigError
from simulators import hashrng


class Kind(IntEnum):
    """Anomaly kinds; 0 means none. The value is what the state arrays store."""

    NONE = 0
    SPIKE = 1
    LEVEL_SHIFT = 2
    DRIFT = 3
    STUCK = 4
    DROPOUT = 5
    NOISE_BURST = 6
    OUT_OF_RANGE = 7

    @property
    def label(self) -> str:
        return self.name.lower()


ANOMALY_KINDS: tuple[Kind, ...] = tuple(k for k in Kind if k is not Kind.NONE)
KIND_NAMES: tuple[str, ...] = tuple(k.label for k in ANOMALY_KINDS)
# Kinds that last a single reading (or a few, for out-of-range) by nature.
_SHORT = {Kind.SPIKE: 1, Kind.OUT_OF_RANGE: 3}

SALT_ONSET, SALT_KIND, SALT_LEN, SALT_MAG, SALT_SIGN, SALT_BURST = 101, 102, 103, 104, 105, 106


class Label(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One line of ground truth: what was injected where (ts in ms, inclusive)."""

    device_id: str
    sensor_type: str
    site: str
    category: str  # "anomaly" or "fault"
    kind: str
    start_ts: int
    end_ts: int
    readings: int = 0
    detail: str = ""
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class RawLabel:
    """A label before naming: device index instead of strings (cheap to collect)."""

    device: int
    category: str
    kind: str
    start_ts: int
    end_ts: int
    readings: int = 0
    detail: str = ""
    truncated: bool = False


@dataclass(frozen=True)
class AnomalyConfig:
    """How often anomalies start (per reading), which kinds, how long (readings)."""

    rate: float = 0.0
    weights: dict[str, float] = field(default_factory=lambda: dict.fromkeys(KIND_NAMES, 1.0))
    min_length: int = 5
    max_length: int = 30

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ConfigError(f"anomaly rate {self.rate} must be within [0, 1]")
        unknown = set(self.weights) - set(KIND_NAMES)
        if unknown:
            raise ConfigError(
                f"unknown anomaly kind(s) {sorted(unknown)}; known: {', '.join(KIND_NAMES)}"
            )
        if any(w < 0 for w in self.weights.values()) or sum(self.weights.values()) <= 0:
            raise ConfigError("anomaly weights must be >= 0 with a positive total")
        if not 1 <= self.min_length <= self.max_length <= 60_000:
            raise ConfigError("anomaly lengths need 1 <= min <= max <= 60000 readings")

    def cumulative(self) -> npt.NDArray[np.float64]:
        """Cumulative probabilities in ``ANOMALY_KINDS`` order, for ``searchsorted``."""
        w = np.array([self.weights.get(n, 0.0) for n in KIND_NAMES], dtype=np.float64)
        out: npt.NDArray[np.float64] = np.cumsum(w / w.sum())
        out[-1] = 1.0
        return out


def parse_mix(text: str) -> dict[str, float]:
    """``"spike=3,stuck=1"`` -> weights; kinds not named get 0. Empty: all equal."""
    if not text.strip():
        return dict.fromkeys(KIND_NAMES, 1.0)
    weights: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.strip().partition("=")
        try:
            weights[name.strip()] = float(value) if sep else 1.0
        except ValueError:
            raise ConfigError(f"anomaly mix: {part!r} is not kind=weight") from None
    AnomalyConfig(weights=weights)  # validates names and weights
    return weights


class AnomalyState:
    """Per-device anomaly state as arrays (17 bytes/device) and the injection maths."""

    def __init__(self, devices: int, config: AnomalyConfig, seed: int) -> None:
        self.config = config
        self.seed = seed
        self.kind = np.zeros(devices, np.uint8)
        self.left = np.zeros(devices, np.uint16)
        self.length = np.zeros(devices, np.uint16)
        self.param = np.zeros(devices, np.float32)
        self.start = np.zeros(devices, np.int64)
        self.last = np.zeros(devices, np.int64)
        self._cum = config.cumulative()
        self._kinds = np.array([int(k) for k in ANOMALY_KINDS], np.uint8)
        self.labels: list[RawLabel] = []

    @property
    def nbytes(self) -> int:
        arrays = (self.kind, self.left, self.length, self.param, self.start, self.last)
        return sum(a.nbytes for a in arrays)

    def apply(
        self,
        idx: npt.NDArray[np.int64],
        n: npt.NDArray[np.uint32],
        ts: npt.NDArray[np.int64],
        value: npt.NDArray[np.float64],
        low: npt.NDArray[np.float64],
        high: npt.NDArray[np.float64],
        scale: npt.NDArray[np.float64],
    ) -> npt.NDArray[np.bool_]:
        """Alter ``value`` in place for readings in an anomaly; returns which to emit.

        ``idx`` holds each device at most once. ``low``/``high``/``scale`` are per
        row (the device's type's range and typical variation).
        """
        keep = np.ones(idx.size, bool)
        if self.config.rate <= 0.0 and not self.left.any():
            return keep
        left = self.left[idx]
        if self.config.rate > 0.0:
            onset = (left == 0) & (
                hashrng.uniform(self.seed, idx, n, SALT_ONSET) < self.config.rate
            )
            if onset.any():
                self._start(idx[onset], n[onset], ts[onset], value[onset], low[onset],
                            high[onset], scale[onset])  # fmt: skip
                left = self.left[idx]
        active = left > 0
        if not active.any():
            return keep
        rows = np.flatnonzero(active)
        dev = idx[rows]
        kind = self.kind[dev]
        param = self.param[dev].astype(np.float64)
        pos = (self.length[dev] - self.left[dev]).astype(np.float64)
        v = value[rows]
        add = (kind == Kind.SPIKE) | (kind == Kind.LEVEL_SHIFT)
        v[add] += param[add]
        drift = kind == Kind.DRIFT
        v[drift] += param[drift] * (pos[drift] + 1.0) / self.length[dev[drift]]
        fixed = (kind == Kind.STUCK) | (kind == Kind.OUT_OF_RANGE)
        v[fixed] = param[fixed]
        burst = kind == Kind.NOISE_BURST
        if burst.any():
            z = hashrng.normal(self.seed, dev[burst], n[rows][burst], SALT_BURST)
            v[burst] += param[burst] * (z + np.sign(z))  # never close to zero
        inside = ~fixed
        v[inside] = np.clip(v[inside], low[rows][inside], high[rows][inside])
        value[rows] = v
        keep[rows[kind == Kind.DROPOUT]] = False
        self.last[dev] = ts[rows]
        self.left[dev] -= 1
        ended = dev[self.left[dev] == 0]
        for d in ended.tolist():
            self.labels.append(self._label(d))
        return keep

    def _start(
        self,
        dev: npt.NDArray[np.int64],
        n: npt.NDArray[np.uint32],
        ts: npt.NDArray[np.int64],
        value: npt.NDArray[np.float64],
        low: npt.NDArray[np.float64],
        high: npt.NDArray[np.float64],
        scale: npt.NDArray[np.float64],
    ) -> None:
        u_kind = hashrng.uniform(self.seed, dev, n, SALT_KIND)
        kind = self._kinds[np.searchsorted(self._cum, u_kind, side="right").clip(0, 6)]
        u_len = hashrng.uniform(self.seed, dev, n, SALT_LEN)
        lo, hi = self.config.min_length, self.config.max_length
        length = (lo + np.floor(u_len * (hi - lo + 1))).astype(np.int64)
        for k, most in _SHORT.items():
            length[kind == k] = np.minimum(length[kind == k], most)
        u_mag = hashrng.uniform(self.seed, dev, n, SALT_MAG)
        up = np.where(high - value >= value - low, 1.0, -1.0)  # towards the room
        param = np.zeros(dev.size, np.float64)
        spike = kind == Kind.SPIKE
        param[spike] = up[spike] * scale[spike] * (4.0 + 4.0 * u_mag[spike])
        shift = (kind == Kind.LEVEL_SHIFT) | (kind == Kind.DRIFT)
        param[shift] = up[shift] * scale[shift] * (2.5 + 2.5 * u_mag[shift])
        burst = kind == Kind.NOISE_BURST
        param[burst] = scale[burst] * (1.0 + 2.0 * u_mag[burst])
        stuck = kind == Kind.STUCK
        param[stuck] = np.round(value[stuck], 3)
        oor = kind == Kind.OUT_OF_RANGE
        above = hashrng.uniform(self.seed, dev, n, SALT_SIGN) < 0.5
        span = (high - low) * (0.05 + 0.45 * u_mag)
        param[oor] = np.where(above, high + span, low - span)[oor]
        self.kind[dev] = kind
        self.left[dev] = length
        self.length[dev] = length
        self.param[dev] = param
        self.start[dev] = ts
        self.last[dev] = ts

    def _label(self, d: int, *, truncated: bool = False) -> RawLabel:
        kind = Kind(int(self.kind[d]))
        done = int(self.length[d]) - int(self.left[d])
        detail = ""
        if kind not in (Kind.DROPOUT, Kind.STUCK):
            detail = f"param={float(self.param[d]):.6g}"
        return RawLabel(
            device=d,
            category="anomaly",
            kind=kind.label,
            start_ts=int(self.start[d]),
            end_ts=int(self.last[d]),
            readings=done,
            detail=detail,
            truncated=truncated,
        )

    def open_labels(self) -> list[RawLabel]:
        """Anomalies still running (at shutdown): labelled up to the last reading."""
        return [self._label(d, truncated=True) for d in np.flatnonzero(self.left > 0).tolist()]
