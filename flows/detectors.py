"""Anomaly detectors for every device at once: numpy over slots, no Bytewax, no I/O.

Why this shape: with 100,000 devices a micro-batch of
10,000 readings holds about one reading per device, so the work is vectorised
*across* devices. Per-device state lives in arrays indexed by the device's
``SlotMap`` slot. A batch is sorted by (slot, ts, value) and applied in
*rounds*: round k holds the k-th reading of every device that has at least k
readings in the batch, so the sequential maths (EWMA, rate, stuck runs) sees
each device's readings in event-time order while every round is one numpy pass.

Detectors (names as they appear in ``Alert.detector``):

``threshold``       outside the catalogue's warning / critical bounds, optionally
                    only once sustained for ``threshold_sustain_ms``.
``ewma``            more than ``k_sigma`` (warning) / ``k_sigma_critical``
                    (critical) standard deviations from the device's EWMA mean,
                    after ``ewma_warmup`` readings. The update clips a reading to
                    ``ewma_clip_sigma`` so an outlier cannot inflate the variance
                    that is supposed to expose it.
``rate_of_change``  |dvalue| between consecutive readings beyond the type's
                    ``max_rate`` (per second) times dt, plus a noise allowance of
                    ``rate_noise_sigma`` sigmas of a difference (sqrt(2) EWMA
                    sigma); ``rate_critical_factor`` times that rate is critical.
``stuck``           the same value (within ``stuck_epsilon`` of the run's first
                    value) for at least ``stuck_min_count`` readings AND
                    ``stuck_min_duration_ms`` (per type from the catalogue's
                    ``stuck_min_count`` / ``stuck_min_s`` where set).
``silence``         no reading for more than ``silence_timeout_ms`` of event time,
                    checked by ``advance(watermark)``.
``out_of_range``    outside the type's physical ``range`` (always critical).

Lifecycle, per (device, detector), all in event time so a replay gives the
same events:

- ``raised`` when the condition starts (severity ``warning`` or ``critical``);
  ``alert_id = alert_id(device, sensor_type, detector, ts_of_the_raising_event)``.
- ``escalated`` when severity rises while active (at most once: warning to
  critical); a falling severity emits nothing, the episode keeps its peak.
- ``cleared`` at the first reading where the condition no longer holds; its
  severity is the episode's peak, so it is routed where the raise went.
- Escalated and cleared events reuse the episode's ``alert_id``; ``state``
  tells them apart, so ``(alert_id, state)`` is unique and idempotent sinks
  can de-duplicate on it.
- Repeats are suppressed while active; after a clear, a new episode is not
  raised before ``cleared_ts + cooldown_ms`` unless it is more severe than the
  last one (a critical is never held back by an earlier warning's cooldown).
  For ``silence`` the raise is deferred to the end of the cooldown instead.
- Stale readings (ts not after the device's last applied reading, e.g. a
  duplicate) and non-finite values are counted and skipped.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

from flows.slots import SlotMap, by_slot_then_time
from iotpipe.catalogue import Catalogue
from iotpipe.errors import ConfigError
from iotpipe.model import Alert, AlertState, Severity, alert_id

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]

THRESHOLD: Final = 0
EWMA: Final = 1
RATE: Final = 2
STUCK: Final = 3
SILENCE: Final = 4
OUT_OF_RANGE: Final = 5
DETECTORS: Final[tuple[str, ...]] = (
    "threshold",
    "ewma",
    "rate_of_change",
    "stuck",
    "silence",
    "out_of_range",
)
STATES: Final[tuple[AlertState, ...]] = ("raised", "escalated", "cleared")
SEVERITIES: Final[dict[int, Severity]] = {0: "info", 1: "warning", 2: "critical"}
SQRT2: Final = math.sqrt(2.0)
NO_TS: Final = -(2**62)  # "never"; far from int64 limits so ts arithmetic cannot overflow


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
    min_std_fraction: float = 1e-4  # sigma floor, as a fraction of the type's range span
    rate_critical_factor: float = 5.0
    rate_noise_sigma: float = 4.0
    stuck_epsilon: float = 1e-9
    stuck_min_count: int = 10
    stuck_min_duration_ms: int = 120_000
    silence_timeout_ms: int = 60_000
    threshold_sustain_ms: int = 0
    cooldown_ms: int = 60_000

    def __post_init__(self) -> None:
        unknown = sorted(set(self.detectors) - set(DETECTORS))
        if unknown:
            raise ConfigError(f"unknown detector(s) {unknown}; choose from {list(DETECTORS)}")
        checks = {
            "ewma_alpha": 0 < self.ewma_alpha <= 1,
            "ewma_var_alpha": 0 < self.ewma_var_alpha <= 1,
            "ewma_warmup": self.ewma_warmup >= 1,
            "k_sigma": self.k_sigma > 0,
            "k_sigma_critical": self.k_sigma_critical >= self.k_sigma,
            "ewma_clip_sigma": self.ewma_clip_sigma > 0,
            "min_std_fraction": self.min_std_fraction > 0,
            "rate_critical_factor": self.rate_critical_factor >= 1,
            "rate_noise_sigma": self.rate_noise_sigma >= 0,
            "stuck_epsilon": self.stuck_epsilon >= 0,
            "stuck_min_count": self.stuck_min_count >= 2,
            "stuck_min_duration_ms": self.stuck_min_duration_ms >= 0,
            "silence_timeout_ms": self.silence_timeout_ms > 0,
            "threshold_sustain_ms": self.threshold_sustain_ms >= 0,
            "cooldown_ms": self.cooldown_ms >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = {name: getattr(self, name) for name in bad}
            raise ConfigError(f"detector config out of range: {values}")

    def enabled(self, detector: int) -> bool:
        return DETECTORS[detector] in self.detectors


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


@dataclass
class DetectorStats:
    """Counters for metrics; part of the snapshot so they survive a restart."""

    readings: int = 0
    stale: int = 0
    non_finite: int = 0
    alerts: int = 0


@dataclass
class DetectorSnapshot:
    """Picklable state: per-slot arrays trimmed to the devices known at snapshot time."""

    config: DetectorConfig
    n_slots: int
    arrays: dict[str, npt.NDArray[Any]]
    watermark: int
    stats: DetectorStats
    version: int = 1


# name -> (dtype, fill for unused slots). Lifecycle fields are per detector.
_CORE: Final[dict[str, tuple[type[np.generic], float | int]]] = {
    "last_ts": (np.int64, NO_TS),
    "last_val": (np.float64, 0.0),
    "count": (np.int32, 0),  # readings applied, capped (see _count_cap)
    "mean": (np.float64, 0.0),
    "var": (np.float64, 0.0),
    "stuck_ref": (np.float64, 0.0),
    "stuck_since": (np.int64, NO_TS),
    "stuck_count": (np.int32, 0),  # capped at stuck_min_count
    "warn_since": (np.int64, NO_TS),
    "crit_since": (np.int64, NO_TS),
}
_LIFECYCLE: Final[dict[str, tuple[type[np.generic], float | int]]] = {
    "active": (np.bool_, False),
    "sev": (np.int8, 0),  # active: current peak; inactive: the last episode's peak
    "raised_ts": (np.int64, NO_TS),
    "cleared_ts": (np.int64, NO_TS),
}
FIELDS: Final[dict[str, tuple[type[np.generic], float | int]]] = {
    **_CORE,
    **{f"{d}.{k}": spec for d in DETECTORS for k, spec in _LIFECYCLE.items()},
}
BYTES_PER_DEVICE: Final = sum(np.dtype(dt).itemsize for dt, _ in FIELDS.values())


@dataclass
class _Events:
    """Columns of the events found in one call; turned into Alerts at the end."""

    parts: list[tuple[npt.NDArray[Any], ...]] = field(default_factory=list)

    def add(
        self,
        slot: I64,
        det: int,
        state: int,
        sev: npt.NDArray[Any],
        ts: I64,
        id_ts: I64,
        value: F64,
        score: F64,
        thr: F64,
    ) -> None:
        if slot.size:
            n = slot.size
            self.parts.append(
                (
                    slot,
                    np.full(n, det, np.int64),
                    np.full(n, state, np.int64),
                    sev.astype(np.int64),
                    ts,
                    id_ts,
                    value,
                    score,
                    thr,
                )
            )


class _Round(NamedTuple):
    """One round's readings (unique slots) and the pre-update state detectors share."""

    s: I64
    t: I64
    x: F64
    tix: npt.NDArray[np.intp]
    seen: Bool
    warm: Bool
    mean: F64
    sd: F64


def event_message(
    detector: str,
    state: AlertState,
    sensor_type: str,
    unit: str,
    value: float,
    score: float,
    threshold: float,
) -> str:
    """Human text for an alert; shared with the reference so both agree to the letter."""
    if state == "cleared":
        return f"{detector} cleared: {sensor_type} {value:g} {unit}"
    if detector == "threshold":
        return f"{sensor_type} {value:g} {unit} is beyond the bound {threshold:g} by {score:g}"
    if detector == "ewma":
        return f"{sensor_type} {value:g} {unit} is {score:.1f} sigma from its EWMA mean"
    if detector == "rate_of_change":
        return f"{sensor_type} changed at {score:.1f}x its max rate {threshold:g} {unit}/s"
    if detector == "stuck":
        return f"{sensor_type} stuck at {value:g} {unit} for {score:g} s"
    if detector == "silence":
        return f"no {sensor_type} reading for {score:g} s (last {value:g} {unit})"
    return f"{sensor_type} {value:g} {unit} is outside the physical range (bound {threshold:g})"


def make_alert(
    slots: SlotMap,
    units: tuple[str, ...],
    slot: int,
    det: int,
    state: int,
    sev: int,
    ts: int,
    id_ts: int,
    value: float,
    score: float,
    threshold: float,
) -> Alert:
    """One Alert from event columns; non-finite numbers become 0 so the JSON stays valid."""
    tix = int(slots.slot_type[slot])
    device = slots.device_ids[slot]
    sensor_type = slots.type_names[tix]
    detector = DETECTORS[det]
    value = value if math.isfinite(value) else 0.0
    score = score if math.isfinite(score) else 0.0
    threshold = threshold if math.isfinite(threshold) else 0.0
    state_name = STATES[state]
    return Alert(
        alert_id=alert_id(device, sensor_type, detector, id_ts),
        device_id=device,
        sensor_type=sensor_type,
        site=slots.site_names[int(slots.slot_site[slot])],
        detector=detector,
        severity=SEVERITIES[sev],
        ts=ts,
        value=value,
        score=score,
        threshold=threshold,
        message=event_message(
            detector, state_name, sensor_type, units[tix], value, score, threshold
        ),
        state=state_name,
    )


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


class DetectorBank:
    """All detectors for all devices of one flow partition, as per-slot numpy state."""

    def __init__(self, catalogue: Catalogue, slots: SlotMap, config: DetectorConfig) -> None:
        self.catalogue = catalogue
        self.slots = slots
        self.config = config
        self.params = TypeParams.build(catalogue, slots.type_names, config)
        self.watermark = NO_TS
        self.stats = DetectorStats()
        # count only matters until warm and until 1/(n+1) drops below alpha
        self._count_cap = max(
            config.ewma_warmup, math.ceil(1.0 / min(config.ewma_alpha, config.ewma_var_alpha))
        )
        self._a: dict[str, npt.NDArray[Any]] = {
            name: np.full(slots.capacity, fill, dtype=dt) for name, (dt, fill) in FIELDS.items()
        }

    # -- state management -------------------------------------------------

    def _fit(self) -> None:
        """Grow every per-slot array when the SlotMap has grown (geometric, via ``fit``)."""
        if len(self._a["last_ts"]) < self.slots.capacity:
            for name, (_, fill) in FIELDS.items():
                self._a[name] = self.slots.fit(self._a[name], fill)

    def snapshot(self) -> DetectorSnapshot:
        """An independent, picklable copy of the state (for Bytewax recovery)."""
        n = len(self.slots)
        return DetectorSnapshot(
            config=self.config,
            n_slots=n,
            arrays={name: arr[:n].copy() for name, arr in self._a.items()},
            watermark=self.watermark,
            stats=copy.copy(self.stats),
        )

    @classmethod
    def restore(
        cls,
        state: object,
        catalogue: Catalogue,
        slots: SlotMap,
        config: DetectorConfig | None = None,
    ) -> DetectorBank:
        """Resume from ``snapshot()``; ``slots`` must be the SlotMap restored with it.

        ``config`` overrides the snapshot's (e.g. retuned thresholds after a restart).
        """
        if not isinstance(state, DetectorSnapshot) or state.version != 1:
            raise ConfigError(f"not a detector snapshot: {type(state).__name__}")
        if len(slots) < state.n_slots:
            raise ConfigError(
                f"detector snapshot has {state.n_slots} devices, the slot map {len(slots)}"
            )
        bank = cls(catalogue, slots, config or state.config)
        for name, arr in state.arrays.items():
            if name in bank._a:
                bank._a[name][: state.n_slots] = arr
        bank.watermark = state.watermark
        bank.stats = copy.copy(state.stats)
        return bank

    @staticmethod
    def bytes_per_device() -> int:
        """Detector state per device slot (the SlotMap's own few bytes not included)."""
        return BYTES_PER_DEVICE

    # -- lifecycle --------------------------------------------------------

    def _transition(
        self,
        det: int,
        idx: I64,
        ts: I64,
        sev_new: npt.NDArray[np.int8],
        value: F64,
        score: F64,
        thr: F64,
        ev: _Events,
    ) -> None:
        """Apply one condition per slot in ``idx`` (unique) to the detector's lifecycle."""
        name = DETECTORS[det]
        active = self._a[f"{name}.active"]
        sev = self._a[f"{name}.sev"]
        raised_ts = self._a[f"{name}.raised_ts"]
        cleared_ts = self._a[f"{name}.cleared_ts"]
        act = active[idx]
        cur = sev[idx]
        up = sev_new > cur
        on = sev_new > 0
        rise = ~act & on & ((ts >= cleared_ts[idx] + self.config.cooldown_ms) | up)
        esc = act & up
        clr = act & ~on
        if rise.any():
            r = idx[rise]
            active[r] = True
            sev[r] = sev_new[rise]
            raised_ts[r] = ts[rise]
            ev.add(
                r, det, 0, sev_new[rise], ts[rise], ts[rise], value[rise], score[rise], thr[rise]
            )
        if esc.any():
            e = idx[esc]
            sev[e] = sev_new[esc]
            ev.add(e, det, 1, sev_new[esc], ts[esc], raised_ts[e], value[esc], score[esc], thr[esc])
        if clr.any():
            c = idx[clr]
            active[c] = False
            cleared_ts[c] = ts[clr]
            ev.add(c, det, 2, sev[c], ts[clr], raised_ts[c], value[clr], score[clr], thr[clr])

    # -- the hot path -----------------------------------------------------

    def process(
        self,
        slots: npt.ArrayLike,
        ts: npt.ArrayLike,
        values: npt.ArrayLike,
        order: I64 | None = None,
    ) -> list[Alert]:
        """One micro-batch of readings (any order, any mix of devices); returns alert events.

        ``order``: the batch sorted by (slot, time), if the caller has it already.
        """
        s = np.asarray(slots, dtype=np.int64).ravel()
        t = np.asarray(ts, dtype=np.int64).ravel()
        x = np.asarray(values, dtype=np.float64).ravel()
        if not s.size == t.size == x.size:
            raise ValueError(f"batch columns differ in length: {s.size}, {t.size}, {x.size}")
        self._fit()
        if s.size == 0:
            return []
        if int(s.min()) < 0 or int(s.max()) >= len(self.slots):
            raise ValueError("batch holds a slot the SlotMap does not know")
        finite = np.isfinite(x)
        if not finite.all():
            self.stats.non_finite += int(s.size - np.count_nonzero(finite))
            s, t, x = s[finite], t[finite], x[finite]
            order = None
            if s.size == 0:
                return []
        with np.errstate(over="ignore", invalid="ignore"):  # absurd values must not warn
            return self._process(s, t, x, by_slot_then_time(s, t) if order is None else order)

    def _process(self, s: I64, t: I64, x: F64, order: I64) -> list[Alert]:
        s, t, x = s[order], t[order], x[order]
        same = (s[1:] == s[:-1]) & (t[1:] == t[:-1])
        if same.any():  # readings of one device at one instant: by value, whatever the arrival
            order = np.lexsort((x, t, s))
            s, t, x = s[order], t[order], x[order]
        n = s.size
        ev = _Events()
        new_dev = np.empty(n, dtype=np.bool_)
        new_dev[0] = True
        np.not_equal(s[1:], s[:-1], out=new_dev[1:])
        starts = np.flatnonzero(new_dev)
        if starts.size == n:  # the usual case: one reading per device
            self._round(s, t, x, ev)
        else:
            lengths = np.diff(np.append(starts, n))
            rank = np.arange(n) - np.repeat(starts, lengths)
            by_round = np.argsort(rank, kind="stable")  # keeps slot order within a round
            edges = np.cumsum(np.bincount(rank))
            begin = 0
            for end in edges.tolist():
                sel = by_round[begin:end]
                self._round(s[sel], t[sel], x[sel], ev)
                begin = end
        return self._alerts(ev)

    def _round(self, s: I64, t: I64, x: F64, ev: _Events) -> None:
        """Readings with unique slots: evaluate every detector on pre-update state, then update."""
        a, cfg = self._a, self.config
        fresh = t > a["last_ts"][s]
        if not fresh.all():
            self.stats.stale += int(s.size - np.count_nonzero(fresh))
            s, t, x = s[fresh], t[fresh], x[fresh]
            if s.size == 0:
                return
        self.stats.readings += int(s.size)
        tix = self.slots.slot_type[s].astype(np.intp)
        n = a["count"][s]
        mean, var = a["mean"][s], a["var"][s]
        r = _Round(
            s=s, t=t, x=x, tix=tix, seen=n > 0, warm=n >= cfg.ewma_warmup, mean=mean,
            sd=np.maximum(np.sqrt(var), self.params.min_sd[tix]),
        )  # fmt: skip
        if cfg.enabled(SILENCE):
            self._silence_back(r, ev)
        if cfg.enabled(THRESHOLD):
            self._threshold(r, ev)
        if cfg.enabled(OUT_OF_RANGE):
            self._out_of_range(r, ev)
        if cfg.enabled(EWMA):
            self._ewma(r, ev)
        if cfg.enabled(RATE) and r.seen.any():
            self._rate(r, ev)
        if cfg.enabled(STUCK):
            self._stuck(r, ev)
        # EWMA update, clipped once warm so an outlier cannot widen its own sigma.
        d = x - mean
        lim = cfg.ewma_clip_sigma * r.sd
        d = np.where(r.warm, np.clip(d, -lim, lim), d)
        # 1/(n+1) while that is larger than alpha: exact running mean and variance at the
        # start (Welford), so the warm-up does not end with a variance biased towards 0.
        welford = 1.0 / (n + 1)
        alpha = np.maximum(cfg.ewma_alpha, welford)
        beta = np.maximum(cfg.ewma_var_alpha, welford)
        a["mean"][s] = mean + alpha * d
        a["var"][s] = (1 - beta) * (var + beta * d * d)
        a["count"][s] = np.minimum(n + 1, self._count_cap)
        a["last_ts"][s] = t
        a["last_val"][s] = x

    def _silence_back(self, r: _Round, ev: _Events) -> None:
        """A reading from a silent device clears its silence (never before the raise)."""
        back = self._a["silence.active"][r.s]
        if back.any():
            idx = r.s[back]
            when = np.maximum(r.t[back], self._a["silence.raised_ts"][idx])
            quiet = (r.t[back] - self._a["last_ts"][idx]) / 1000.0
            thr = np.full(idx.size, self.config.silence_timeout_ms / 1000.0)
            off = np.zeros(idx.size, dtype=np.int8)
            self._transition(SILENCE, idx, when, off, r.x[back], quiet, thr, ev)

    def _threshold(self, r: _Round, ev: _Events) -> None:
        """Catalogue bounds; a level counts once it has held for ``threshold_sustain_ms``."""
        a, s, t = self._a, r.s, r.t
        level = threshold_level(r.x, r.tix, self.params)
        warn_since, crit_since = a["warn_since"][s], a["crit_since"][s]
        warn_since = np.where(level >= 1, np.where(warn_since == NO_TS, t, warn_since), NO_TS)
        crit_since = np.where(level >= 2, np.where(crit_since == NO_TS, t, crit_since), NO_TS)
        a["warn_since"][s] = warn_since
        a["crit_since"][s] = crit_since
        sustain = self.config.threshold_sustain_ms
        sev = np.where(
            (level >= 2) & (t - crit_since >= sustain),
            2,
            np.where((level >= 1) & (t - warn_since >= sustain), 1, 0),
        ).astype(np.int8)
        bound, excess = threshold_bound(r.x, sev, r.tix, self.params)
        self._transition(THRESHOLD, s, t, sev, r.x, excess, bound, ev)

    def _out_of_range(self, r: _Round, ev: _Events) -> None:
        """Outside the physical range: a faulty sensor, always critical."""
        lo, hi = self.params.range_lo[r.tix], self.params.range_hi[r.tix]
        out = (r.x < lo) | (r.x > hi)
        if out.any() or self._a["out_of_range.active"][r.s].any():
            bound, excess = side_and_excess(r.x, lo, hi, out)
            sev = np.where(out, 2, 0).astype(np.int8)
            self._transition(OUT_OF_RANGE, r.s, r.t, sev, r.x, excess, bound, ev)

    def _ewma(self, r: _Round, ev: _Events) -> None:
        """z-score against the device's EWMA before this reading (after the warm-up)."""
        cfg = self.config
        z = np.where(r.warm, np.abs(r.x - r.mean) / r.sd, 0.0)
        sev = np.where(z > cfg.k_sigma_critical, 2, np.where(z > cfg.k_sigma, 1, 0))
        thr = np.where(sev == 2, cfg.k_sigma_critical, cfg.k_sigma)
        self._transition(EWMA, r.s, r.t, sev.astype(np.int8), r.x, z, thr, ev)

    def _rate(self, r: _Round, ev: _Events) -> None:
        """Jump since the device's previous reading beyond max_rate * dt plus noise slack."""
        cfg = self.config
        i = np.flatnonzero(r.seen)
        s = r.s[i]
        mr = self.params.max_rate[r.tix[i]]  # nan (no limit): every comparison is False
        dt = (r.t[i] - self._a["last_ts"][s]) / 1000.0
        dx = np.abs(r.x[i] - self._a["last_val"][s])
        # A difference of two noisy readings has sqrt(2) sigma: noise alone is no jump.
        slack = cfg.rate_noise_sigma * SQRT2 * r.sd[i]
        sev = np.where(
            dx > cfg.rate_critical_factor * mr * dt + slack,
            2,
            np.where(dx > mr * dt + slack, 1, 0),
        ).astype(np.int8)
        self._transition(RATE, s, r.t[i], sev, r.x[i], dx / dt / mr, mr, ev)

    def _stuck(self, r: _Round, ev: _Events) -> None:
        """Runs of equal values (within epsilon of the run's first) by count and duration."""
        a, cfg, s, t, x = self._a, self.config, r.s, r.t, r.x
        ref, since = a["stuck_ref"][s], a["stuck_since"][s]
        same = r.seen & (np.abs(x - ref) <= cfg.stuck_epsilon)
        count = np.where(same, a["stuck_count"][s] + 1, 1)
        duration = (t - np.where(r.seen, since, t)) / 1000.0  # of the run so far / just ended
        since = np.where(same, since, t)
        min_count, min_ms = self.params.stuck_count[r.tix], self.params.stuck_ms[r.tix]
        stuck = (count >= min_count) & (t - since >= min_ms)
        a["stuck_ref"][s] = np.where(same, ref, x)
        a["stuck_since"][s] = since
        a["stuck_count"][s] = np.minimum(count, min_count)
        thr = min_ms / 1000.0
        self._transition(STUCK, s, t, stuck.astype(np.int8), x, duration, thr, ev)

    def advance(self, watermark_ms: int) -> list[Alert]:
        """The event-time watermark moved: raise ``silence`` for devices quiet past the timeout."""
        self._fit()
        self.watermark = max(self.watermark, int(watermark_ms))
        if not self.config.enabled(SILENCE) or len(self.slots) == 0:
            return []
        a, cfg = self._a, self.config
        n = len(self.slots)
        last_ts = a["last_ts"][:n]
        # A silence inside a cooldown is raised when the cooldown ends, if still silent.
        due = np.maximum(
            last_ts + cfg.silence_timeout_ms, a["silence.cleared_ts"][:n] + cfg.cooldown_ms
        )
        quiet = (last_ts != NO_TS) & ~a["silence.active"][:n] & (due < self.watermark)
        idx = np.flatnonzero(quiet).astype(np.int64)
        if idx.size == 0:
            return []
        ev = _Events()
        ts = due[idx]
        ones = np.ones(idx.size, dtype=np.int8)
        quiet_s = (ts - last_ts[idx]) / 1000.0
        thr = np.full(idx.size, cfg.silence_timeout_ms / 1000.0)
        self._transition(SILENCE, idx, ts, ones, a["last_val"][idx], quiet_s, thr, ev)
        return self._alerts(ev)

    def _alerts(self, ev: _Events) -> list[Alert]:
        """Events as Alerts, ordered by (ts, slot, detector) whatever the batch order was."""
        if not ev.parts:
            return []
        cols = [np.concatenate(c) for c in zip(*ev.parts, strict=True)]
        slot, det, ts = cols[0], cols[1], cols[4]
        order = np.lexsort((det, slot, ts))
        rows = zip(*(c[order].tolist() for c in cols), strict=True)
        out = [make_alert(self.slots, self.params.units, *row) for row in rows]
        self.stats.alerts += len(out)
        return out
