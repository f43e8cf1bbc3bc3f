"""The device fleet: per-device state as numpy arrays, stepped through simulated time.

Nothing here is one Python object per device. A step finds every device whose
next report is due before the step's end (one vectorised comparison over the
fleet), computes their values in one pass, schedules their next report, and
repeats for devices fast enough to report twice in one step.

Signal of a device of a type with ``typical = [mean, amplitude, noise]``::

    base + amp * sin(2 pi * time_of_day + phase)     daily cycle
         + drift_amp * sin(2 pi * t / drift_period + drift_phase)   slow drift
         + noise * z                                  white noise
    clipped to the type's valid range

with per-device base, amplitude, noise, phase and drift drawn once from the seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from iotpipe.catalogue import Catalogue, SensorType
from iotpipe.errors import ConfigError
from simulators import hashrng
from simulators.anomalies import AnomalyConfig, AnomalyState, RawLabel
from simulators.names import Naming

SALT_NOISE, SALT_JITTER = 1, 2
DAY_S = 86_400.0
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Batch:
    """Readings of one step, ordered by event time; ``device`` indexes the fleet."""

    device: I64
    ts: I64
    value: F64
    seq: I64

    def __len__(self) -> int:
        return int(self.device.size)

    @staticmethod
    def empty() -> Batch:
        z = np.zeros(0, np.int64)
        return Batch(z, z, np.zeros(0, np.float64), z)

    @staticmethod
    def concat(parts: list[Batch]) -> Batch:
        """Join parts and order by event time (stable: a device's order is kept)."""
        if not parts:
            return Batch.empty()
        if len(parts) == 1:
            b = parts[0]
        else:
            b = Batch(
                np.concatenate([p.device for p in parts]),
                np.concatenate([p.ts for p in parts]),
                np.concatenate([p.value for p in parts]),
                np.concatenate([p.seq for p in parts]),
            )
        order = np.argsort(b.ts, kind="stable")
        return Batch(b.device[order], b.ts[order], b.value[order], b.seq[order])


@dataclass(frozen=True)
class FleetConfig:
    """What the fleet looks like; everything else follows from ``seed``."""

    devices: int = 1000
    types: tuple[str, ...] = ()  # empty: every type in the catalogue
    sites: tuple[str, ...] = ("site",)
    device_prefix: str = "dev"
    interval_s: float = 10.0
    interval_spread: float = 0.2  # device interval = interval * U(1 - s, 1 + s)
    jitter: float = 0.1  # each gap = device interval * U(1 - j, 1 + j)
    start_ms: int = 0
    seed: int = 0
    anomalies: AnomalyConfig = field(default_factory=AnomalyConfig)
    skew_fraction: float = 0.0  # share of devices whose clock is off
    skew_max_s: float = 120.0

    def __post_init__(self) -> None:
        if self.interval_s <= 0:
            raise ConfigError(f"interval {self.interval_s}s must be > 0")
        if not 0 <= self.interval_spread < 1 or not 0 <= self.jitter < 1:
            raise ConfigError("interval spread and jitter must be within [0, 1)")
        if not 0 <= self.skew_fraction <= 1 or self.skew_max_s < 0:
            raise ConfigError("clock-skew fraction must be within [0, 1], max skew >= 0")


def type_signal(t: SensorType) -> tuple[float, float, float]:
    """[mean, daily amplitude, noise sd]; derived from the range if not given."""
    if t.typical is not None:
        return t.typical
    low, high = t.range
    return ((low + high) / 2, (high - low) * 0.05, (high - low) * 0.01)


class Fleet:
    """N simulated devices; ``advance(until_ms)`` returns the readings due before then."""

    def __init__(self, config: FleetConfig, catalogue: Catalogue) -> None:
        types = config.types or tuple(catalogue.types)
        unknown = [t for t in types if t not in catalogue]
        if unknown:
            known = ", ".join(sorted(catalogue.names))
            raise ConfigError(f"unknown sensor type(s) {', '.join(unknown)}; known: {known}")
        self.config = config
        self.naming = Naming(config.devices, tuple(types), config.sites, config.device_prefix)
        self.seed = config.seed
        n = config.devices
        specs = [catalogue[t] for t in types]
        sig = np.array([type_signal(s) for s in specs], np.float64)
        self.type_low = np.array([s.range[0] for s in specs], np.float64)
        self.type_high = np.array([s.range[1] for s in specs], np.float64)
        self.type_scale = np.maximum(sig[:, 1], 3.0 * sig[:, 2])
        rng = np.random.default_rng(config.seed)
        idx = np.arange(n, dtype=np.int64)
        # Types round-robin (balanced); sites in contiguous blocks, like real gateways.
        self.stype = (idx % len(types)).astype(np.uint8)
        self.site = (idx * len(config.sites) // n).astype(np.uint16)
        mean, amp, sd = sig[self.stype, 0], sig[self.stype, 1], sig[self.stype, 2]
        f32 = np.float32
        self.base = (mean + rng.normal(0.0, 1.0, n) * (0.5 * amp + sd)).astype(f32)
        self.amp = (amp * rng.uniform(0.6, 1.4, n)).astype(f32)
        self.noise = (sd * rng.uniform(0.8, 1.2, n)).astype(f32)
        self.phase = rng.uniform(-np.pi - 0.5, -np.pi + 0.5, n).astype(f32)  # low at night
        self.drift_amp = (amp * rng.uniform(0.0, 0.3, n)).astype(f32)
        self.drift_period = rng.uniform(2 * DAY_S, 14 * DAY_S, n).astype(f32)
        self.drift_phase = rng.uniform(0, 2 * np.pi, n).astype(f32)
        spread = config.interval_spread
        self.interval_ms = config.interval_s * 1000.0 * rng.uniform(1 - spread, 1 + spread, n)
        self.interval_ms = self.interval_ms.astype(f32)
        # First reports staggered over one interval, so the fleet does not report in unison.
        self.next_due = config.start_ms + rng.uniform(0, 1, n) * self.interval_ms
        self.n = np.zeros(n, np.uint32)  # readings generated (also while silent)
        self.seq = np.zeros(n, np.uint32)  # readings sent
        skewed = rng.uniform(0, 1, n) < config.skew_fraction
        skew = rng.uniform(-config.skew_max_s, config.skew_max_s, n) * 1000.0
        self.skew_ms = np.where(skewed, skew, 0).astype(np.int32)
        self.anomalies = AnomalyState(n, config.anomalies, config.seed)
        self.first_ts: int | None = None
        self.last_ts: int | None = None

    @property
    def start_ms(self) -> int:
        return self.config.start_ms

    @property
    def devices(self) -> int:
        return self.config.devices

    @property
    def nbytes(self) -> int:
        """Memory held per fleet (state arrays only)."""
        arrays = (
            self.stype, self.site, self.base, self.amp, self.noise, self.phase,
            self.drift_amp, self.drift_period, self.drift_phase, self.interval_ms,
            self.next_due, self.n, self.seq, self.skew_ms,
        )  # fmt: skip
        return sum(a.nbytes for a in arrays) + self.anomalies.nbytes

    def readings_per_second(self) -> float:
        """Mean readings per simulated second of the whole fleet."""
        return float(np.sum(1000.0 / self.interval_ms.astype(np.float64)))

    def advance(self, until_ms: float) -> Batch:
        """Every reading due before ``until_ms`` (simulated epoch ms), in time order."""
        parts: list[Batch] = []
        while True:
            idx = np.flatnonzero(self.next_due < until_ms)
            if idx.size == 0:
                break
            parts.append(self._report(idx))
        batch = Batch.concat(parts)
        if len(batch):
            first, last = int(batch.ts[0]), int(batch.ts[-1])
            self.first_ts = first if self.first_ts is None else min(self.first_ts, first)
            self.last_ts = last if self.last_ts is None else max(self.last_ts, last)
        return batch

    def values(self, idx: I64, n: npt.NDArray[np.uint32], t_ms: F64) -> F64:
        """Anomaly-free values of devices ``idx`` at reading ``n``, time ``t_ms``."""
        t = t_ms / 1000.0
        day = np.sin(2 * np.pi * (t % DAY_S) / DAY_S + self.phase[idx])
        slow = np.sin(2 * np.pi * (t / self.drift_period[idx]) + self.drift_phase[idx])
        z = hashrng.normal(self.seed, idx, n, SALT_NOISE)
        v = self.base[idx] + self.amp[idx] * day + self.drift_amp[idx] * slow
        v += self.noise[idx] * z
        st = self.stype[idx]
        out: F64 = np.clip(v, self.type_low[st], self.type_high[st])
        return out

    def _report(self, idx: I64) -> Batch:
        due = self.next_due[idx]
        n = self.n[idx]
        value = self.values(idx, n, due)
        ts = due.astype(np.int64) + self.skew_ms[idx]
        u = hashrng.uniform(self.seed, idx, n, SALT_JITTER)
        self.next_due[idx] = due + self.interval_ms[idx] * (1.0 + self.config.jitter * (2 * u - 1))
        self.n[idx] = n + 1
        st = self.stype[idx]
        keep = self.anomalies.apply(
            idx, n, ts, value, self.type_low[st], self.type_high[st], self.type_scale[st]
        )
        seq = self.seq[idx].astype(np.int64)
        self.seq[idx] += keep.astype(np.uint32)
        if keep.all():
            return Batch(idx, ts, value, seq)
        return Batch(idx[keep], ts[keep], value[keep], seq[keep])

    def take_labels(self) -> list[RawLabel]:
        """Labels of anomalies that ended since the last call."""
        labels, self.anomalies.labels = self.anomalies.labels, []
        return labels

    def final_labels(self) -> list[RawLabel]:
        """At the end of a run: running anomalies and the skewed devices' clocks."""
        labels = self.take_labels() + self.anomalies.open_labels()
        if self.first_ts is not None and self.last_ts is not None:
            for d in np.flatnonzero(self.skew_ms).tolist():
                labels.append(
                    RawLabel(
                        device=d,
                        category="fault",
                        kind="clock_skew",
                        start_ts=self.first_ts,
                        end_ts=self.last_ts,
                        readings=int(self.seq[d]),
                        detail=f"skew_ms={int(self.skew_ms[d])}",
                    )
                )
        return labels

    @property
    def exhausted(self) -> bool:
        """A fleet never runs out (a replay does)."""
        return False
