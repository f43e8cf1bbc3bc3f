"""Plain per-reading reference for ``flows.detectors``: the same rules, one reading at a time.

Slow on purpose and written without numpy in the loop, so the tests can check
that the vectorised, round-based ``DetectorBank`` gives exactly the alerts of
the obvious sequential algorithm, whatever the batching and order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from flows.detectors import (
    DETECTORS,
    EWMA,
    GAP_CAP,
    NO_TS,
    OUT_OF_RANGE,
    RATE,
    SILENCE,
    SQRT2,
    STUCK,
    THRESHOLD,
    DetectorConfig,
    make_alert,
)
from flows.slots import SlotMap
from iotpipe.catalogue import Catalogue
from iotpipe.model import Alert

INF = math.inf


@dataclass
class _Episode:
    active: bool = False
    sev: int = 0
    raised_ts: int = NO_TS
    cleared_ts: int = NO_TS


@dataclass
class _Device:
    count: int = 0
    last_ts: int = NO_TS
    last_val: float = 0.0
    mean: float = 0.0
    var: float = 0.0
    stuck_ref: float = 0.0
    stuck_since: int = NO_TS
    stuck_count: int = 0
    warn_since: int = NO_TS
    crit_since: int = NO_TS
    interval: float = 0.0  # the silence detector's learned gap between readings, ms
    episodes: list[_Episode] = field(default_factory=lambda: [_Episode() for _ in DETECTORS])


Event = tuple[int, int, int, int, int, int, float, float, float]


class ReferenceDetectors:
    """Same constructor and ``process`` / ``advance`` as ``DetectorBank``; no snapshots."""

    def __init__(self, catalogue: Catalogue, slots: SlotMap, config: DetectorConfig) -> None:
        self.catalogue = catalogue
        self.slots = slots
        self.config = config
        self.devices: dict[int, _Device] = {}
        self.watermark = NO_TS
        self.units = tuple(catalogue[n].unit for n in slots.type_names)

    def process(
        self, slots: Iterable[int], ts: Iterable[int], values: Iterable[float]
    ) -> list[Alert]:
        rows = sorted(
            (int(s), int(t), float(v))
            for s, t, v in zip(slots, ts, values, strict=True)
            if math.isfinite(float(v))
        )
        events: list[Event] = []
        for s, t, x in rows:
            self._reading(s, t, x, events)
        return self._alerts(events)

    def advance(self, watermark_ms: int) -> list[Alert]:
        cfg = self.config
        self.watermark = max(self.watermark, watermark_ms)
        events: list[Event] = []
        if cfg.enabled("silence"):
            for s, dev in self.devices.items():
                ep = dev.episodes[SILENCE]
                timeout = self._silence_timeout(dev)
                due = max(dev.last_ts + timeout, ep.cleared_ts + cfg.cooldown_ms)
                if not ep.active and due < self.watermark:
                    quiet = (due - dev.last_ts) / 1000.0
                    thr = timeout / 1000.0
                    self._transition(s, SILENCE, due, 1, dev.last_val, quiet, thr, events)
        return self._alerts(events)

    def _silence_timeout(self, dev: _Device) -> int:
        cfg = self.config
        return max(cfg.silence_timeout_ms, int(cfg.silence_interval_factor * dev.interval))

    def _alerts(self, events: list[Event]) -> list[Alert]:
        events.sort(key=lambda e: (e[4], e[0], e[1]))
        return [make_alert(self.slots, self.units, *e) for e in events]

    def _transition(
        self,
        s: int,
        det: int,
        t: int,
        sev: int,
        value: float,
        score: float,
        thr: float,
        events: list[Event],
    ) -> None:
        ep = self.devices[s].episodes[det]
        if not ep.active:
            if sev > 0 and (t >= ep.cleared_ts + self.config.cooldown_ms or sev > ep.sev):
                ep.active, ep.sev, ep.raised_ts = True, sev, t
                events.append((s, det, 0, sev, t, t, value, score, thr))
        elif sev > ep.sev:
            ep.sev = sev
            events.append((s, det, 1, sev, t, ep.raised_ts, value, score, thr))
        elif sev == 0:
            ep.active, ep.cleared_ts = False, t
            events.append((s, det, 2, ep.sev, t, ep.raised_ts, value, score, thr))

    def _reading(self, s: int, t: int, x: float, events: list[Event]) -> None:  # noqa: PLR0915
        """Every detector on one reading, top to bottom: long on purpose, to be read."""
        cfg = self.config
        dev = self.devices.setdefault(s, _Device())
        if t <= dev.last_ts:
            return
        spec = self.catalogue[self.slots.type_names[int(self.slots.slot_type[s])]]
        seen = dev.count > 0
        if cfg.enabled("silence") and dev.episodes[SILENCE].active:
            when = max(t, dev.episodes[SILENCE].raised_ts)
            quiet = (t - dev.last_ts) / 1000.0
            thr = self._silence_timeout(dev) / 1000.0
            self._transition(s, SILENCE, when, 0, x, quiet, thr, events)
        if cfg.enabled("silence") and seen:
            gap = float(t - dev.last_ts)
            if dev.interval > 0:
                capped = min(gap, GAP_CAP * dev.interval)
                dev.interval = dev.interval + cfg.silence_interval_alpha * (capped - dev.interval)
            else:
                dev.interval = gap

        wl, wh = spec.warning
        cl, ch = spec.critical
        wlo, whi = (-INF if wl is None else wl), (INF if wh is None else wh)
        clo, chi = (-INF if cl is None else cl), (INF if ch is None else ch)
        if cfg.enabled("threshold"):
            level = 2 if (x < clo or x > chi) else 1 if (x < wlo or x > whi) else 0
            if level >= 1:
                dev.warn_since = t if dev.warn_since == NO_TS else dev.warn_since
            else:
                dev.warn_since = NO_TS
            if level >= 2:
                dev.crit_since = t if dev.crit_since == NO_TS else dev.crit_since
            else:
                dev.crit_since = NO_TS
            sustain = cfg.threshold_sustain_ms
            if level >= 2 and t - dev.crit_since >= sustain:
                sev = 2
            elif level >= 1 and t - dev.warn_since >= sustain:
                sev = 1
            else:
                sev = 0
            fw_hi = whi if math.isfinite(whi) else chi
            fw_lo = wlo if math.isfinite(wlo) else clo
            hi, lo = (chi, clo) if sev == 2 else (fw_hi, fw_lo)
            high = x > hi if sev > 0 else abs(hi - x) <= abs(x - lo)
            bound = hi if high else lo
            excess = x - bound if high else bound - x
            self._transition(s, THRESHOLD, t, sev, x, excess, bound, events)

        if cfg.enabled("out_of_range"):
            lo, hi = spec.range
            out = x < lo or x > hi
            high = x > hi if out else abs(hi - x) <= abs(x - lo)
            bound = hi if high else lo
            excess = x - bound if high else bound - x
            self._transition(s, OUT_OF_RANGE, t, 2 if out else 0, x, excess, bound, events)

        min_sd = cfg.min_std_fraction * (spec.range[1] - spec.range[0])
        sd = max(math.sqrt(dev.var), min_sd)
        warm = dev.count >= cfg.ewma_warmup
        if cfg.enabled("ewma"):
            z = abs(x - dev.mean) / sd if warm else 0.0
            sev = 2 if z > cfg.k_sigma_critical else 1 if z > cfg.k_sigma else 0
            thr = cfg.k_sigma_critical if sev == 2 else cfg.k_sigma
            self._transition(s, EWMA, t, sev, x, z, thr, events)

        if cfg.enabled("rate_of_change") and seen:
            mr = math.nan if spec.max_rate is None else spec.max_rate
            dt = (t - dev.last_ts) / 1000.0
            dx = abs(x - dev.last_val)
            slack = cfg.rate_noise_sigma * SQRT2 * sd
            if dx > cfg.rate_critical_factor * mr * dt + slack:
                sev = 2
            elif dx > mr * dt + slack:
                sev = 1
            else:
                sev = 0
            self._transition(s, RATE, t, sev, x, dx / dt / mr, mr, events)

        if cfg.enabled("stuck"):
            same = seen and abs(x - dev.stuck_ref) <= cfg.stuck_epsilon
            count = dev.stuck_count + 1 if same else 1
            duration = (t - (dev.stuck_since if seen else t)) / 1000.0
            if not same:
                dev.stuck_ref, dev.stuck_since = x, t
            min_count = spec.stuck_min_count or cfg.stuck_min_count
            min_ms = (
                cfg.stuck_min_duration_ms
                if spec.stuck_min_s is None
                else int(spec.stuck_min_s * 1000)
            )
            dev.stuck_count = min(count, min_count)
            stuck = count >= min_count and t - dev.stuck_since >= min_ms
            thr = min_ms / 1000.0
            self._transition(s, STUCK, t, int(stuck), x, duration, thr, events)

        d = x - dev.mean
        if warm:
            lim = cfg.ewma_clip_sigma * sd
            d = min(max(d, -lim), lim)
        welford = 1.0 / (dev.count + 1)
        alpha = max(cfg.ewma_alpha, welford)
        beta = max(cfg.ewma_var_alpha, welford)
        dev.mean = dev.mean + alpha * d
        dev.var = (1 - beta) * (dev.var + beta * d * d)
        dev.count += 1
        dev.last_ts, dev.last_val = t, x
