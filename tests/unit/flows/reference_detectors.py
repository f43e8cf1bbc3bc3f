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
    FLAPPING,
    GAP_CAP,
    HOUR_MS,
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
    pending: int = 0
    pending_since: int = NO_TS
    calm: int = 0
    muted: bool = False


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
    interval: float = 0.0  # the learned gap between readings, ms
    far: int = 0  # ewma: readings in a row beyond k_sigma
    repeat: float = 0.5  # stuck: share of readings equal to the run so far
    window_start: int = NO_TS  # the alert budget's
    raises: int = 0
    held: int = 0
    last_held: int = NO_TS
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
        for s, dev in self.devices.items():
            if cfg.enabled("silence"):
                ep = dev.episodes[SILENCE]
                timeout = self._silence_timeout(dev)
                due = max(dev.last_ts + timeout, ep.cleared_ts + self._cooldown(dev))
                if not ep.active and due < self.watermark:
                    quiet = (due - dev.last_ts) / 1000.0
                    thr = timeout / 1000.0
                    self._transition(s, SILENCE, due, 1, dev.last_val, quiet, thr, events)
            flap = dev.episodes[FLAPPING]
            if flap.active and self.watermark > dev.last_held + HOUR_MS:
                self._clear_flapping(s, dev.last_val, events)
        return self._alerts(events)

    def _budgeted(self) -> bool:
        return self.config.enabled("flapping") and self.config.alert_budget_per_hour > 0

    def _cooldown(self, dev: _Device) -> int:
        cfg = self.config
        return max(cfg.cooldown_ms, int(cfg.cooldown_intervals * dev.interval))

    def _admit(self, s: int, t: int, sev: int, value: float, events: list[Event]) -> bool:
        dev = self.devices[s]
        if t >= dev.window_start + HOUR_MS:
            dev.window_start, dev.raises = t, 0
        if dev.raises < self.config.alert_budget_per_hour:
            dev.raises += 1
            return True
        dev.held += 1
        dev.last_held = t
        self._report_flapping(s, t, sev, value, events)
        return False

    def _report_flapping(self, s: int, t: int, sev: int, value: float, events: list[Event]) -> None:
        dev = self.devices[s]
        budget = float(self.config.alert_budget_per_hour)
        self._transition(s, FLAPPING, t, sev, value, float(dev.held), budget, events)

    def _clear_flapping(self, s: int, value: float, events: list[Event]) -> None:
        dev = self.devices[s]
        budget = float(self.config.alert_budget_per_hour)
        t = dev.last_held + HOUR_MS
        self._transition(s, FLAPPING, t, 0, value, float(dev.held), budget, events)
        dev.held = 0

    def _silence_timeout(self, dev: _Device) -> int:
        cfg = self.config
        if dev.interval == 0 and cfg.silence_interval_factor > 0:
            return max(cfg.silence_timeout_ms, cfg.silence_first_timeout_ms)
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
        inside: bool | None = None,
    ) -> None:
        cfg = self.config
        dev = self.devices[s]
        ep = dev.episodes[det]
        sustained = det in (THRESHOLD, EWMA)
        hysteresis = det not in (SILENCE, FLAPPING)
        calm_in = sev == 0 and (inside is None or inside)
        if not ep.active:
            ep.calm = 0
            if sev > 0:
                if ep.pending == 0:
                    ep.pending_since = t
                ep.pending += 1
            else:
                ep.pending, ep.pending_since = 0, NO_TS
            n_need = cfg.sustain_readings if sustained else 1
            ms_need = cfg.sustain_ms if sustained else 0
            held = ep.pending >= n_need and t - ep.pending_since >= ms_need
            cooldown = 0 if det == FLAPPING else self._cooldown(dev)
            if sev > 0 and held and (t >= ep.cleared_ts + cooldown or sev > ep.sev):
                ep.pending, ep.pending_since = 0, NO_TS
                admit = True
                if det != FLAPPING and self._budgeted():
                    admit = self._admit(s, t, sev, value, events)
                ep.active, ep.sev, ep.raised_ts, ep.muted = True, sev, t, not admit
                if admit:
                    events.append((s, det, 0, sev, t, t, value, score, thr))
            return
        ep.pending, ep.pending_since = 0, NO_TS
        ep.calm = ep.calm + 1 if calm_in else 0
        if sev > ep.sev:
            ep.sev = sev
            if ep.muted:
                self._report_flapping(s, t, sev, value, events)
            else:
                events.append((s, det, 1, sev, t, ep.raised_ts, value, score, thr))
        elif calm_in and ep.calm >= (cfg.clear_readings if hysteresis else 1):
            ep.active, ep.cleared_ts, ep.calm = False, t, 0
            if not ep.muted:
                events.append((s, det, 2, ep.sev, t, ep.raised_ts, value, score, thr))
            ep.muted = False

    def _reading(self, s: int, t: int, x: float, events: list[Event]) -> None:  # noqa: PLR0915
        """Every detector on one reading, in the bank's order, top to bottom: long on
        purpose, to be read."""
        cfg = self.config
        dev = self.devices.setdefault(s, _Device())
        if t <= dev.last_ts:
            return
        spec = self.catalogue[self.slots.type_names[int(self.slots.slot_type[s])]]
        seen = dev.last_ts != NO_TS
        rebase = False
        min_sd = cfg.min_std_fraction * (spec.range[1] - spec.range[0])
        sd = max(math.sqrt(dev.var), min_sd)
        warm = dev.count >= cfg.ewma_warmup

        wl, wh = spec.warning
        cl, ch = spec.critical
        wlo, whi = (-INF if wl is None else wl), (INF if wh is None else wh)
        clo, chi = (-INF if cl is None else cl), (INF if ch is None else ch)
        if cfg.enabled("threshold"):
            sev = 2 if (x < clo or x > chi) else 1 if (x < wlo or x > whi) else 0
            fw_hi = whi if math.isfinite(whi) else chi
            fw_lo = wlo if math.isfinite(wlo) else clo
            margin = min(cfg.deadband_sigma * sd, 0.25 * (fw_hi - fw_lo))
            inside = fw_lo + margin <= x <= fw_hi - margin
            hi, lo = (chi, clo) if sev == 2 else (fw_hi, fw_lo)
            high = x > hi if sev > 0 else abs(hi - x) <= abs(x - lo)
            bound = hi if high else lo
            excess = x - bound if high else bound - x
            self._transition(s, THRESHOLD, t, sev, x, excess, bound, events, inside)

        if cfg.enabled("ewma"):
            z = abs(x - dev.mean) / sd if warm else 0.0
            sev = 2 if z > cfg.k_sigma_critical else 1 if z > cfg.k_sigma else 0
            thr = cfg.k_sigma_critical if sev == 2 else cfg.k_sigma
            inside = z <= max(cfg.k_sigma - cfg.deadband_sigma, 0.0)
            self._transition(s, EWMA, t, sev, x, z, thr, events, inside)
            if cfg.changepoint_readings:
                dev.far = dev.far + 1 if sev > 0 else 0
                if dev.far >= cfg.changepoint_readings:
                    dev.far, rebase = 0, True

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
            waived = dev.repeat ** (min(count, min_count) - 1) < cfg.stuck_improbable
            stuck = count >= min_count and (t - dev.stuck_since >= min_ms or waived)
            if seen and count < min_count:
                dev.repeat += cfg.stuck_repeat_alpha * (float(same) - dev.repeat)
            thr = min_ms / 1000.0
            self._transition(s, STUCK, t, int(stuck), x, duration, thr, events)

        if cfg.enabled("silence") and dev.episodes[SILENCE].active:
            when = max(t, dev.episodes[SILENCE].raised_ts)
            quiet = (t - dev.last_ts) / 1000.0
            thr = self._silence_timeout(dev) / 1000.0
            self._transition(s, SILENCE, when, 0, x, quiet, thr, events)

        if cfg.enabled("out_of_range"):
            lo, hi = spec.range
            out = x < lo or x > hi
            high = x > hi if out else abs(hi - x) <= abs(x - lo)
            bound = hi if high else lo
            excess = x - bound if high else bound - x
            self._transition(s, OUT_OF_RANGE, t, 2 if out else 0, x, excess, bound, events)

        if dev.episodes[FLAPPING].active and t >= dev.last_held + HOUR_MS:
            self._clear_flapping(s, dev.last_val, events)

        d = x - dev.mean
        if warm:
            lim = cfg.ewma_clip_sigma * sd
            d = min(max(d, -lim), lim)
        welford = 1.0 / (dev.count + 1)
        alpha = max(cfg.ewma_alpha, welford)
        beta = max(cfg.ewma_var_alpha, welford)
        dev.mean = dev.mean + alpha * d
        dev.var = (1 - beta) * (dev.var + beta * d * d)
        dev.count = 0 if rebase else dev.count + 1
        if seen:
            gap = float(t - dev.last_ts)
            if dev.interval > 0:
                capped = min(gap, GAP_CAP * dev.interval)
                dev.interval = dev.interval + cfg.interval_alpha * (capped - dev.interval)
            else:
                dev.interval = gap
        dev.last_ts, dev.last_val = t, x
