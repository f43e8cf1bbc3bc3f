"""Each device's running baseline: last reading, cadence, and an EWMA mean and variance.

Shared by the statistical detectors (``ewma`` scores against it, ``rate_of_change``
takes its noise allowance from it) and updated once per reading, after every
detector has judged that reading against the state before it. The cadence
(``interval``: an EWMA of the gaps between readings, each capped at
``GAP_CAP`` times the estimate so one outage does not teach a device to be
quiet) scales the silence timeout and every alarm's cooldown, so each device is
judged in its own reporting rhythm.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np

from flows.detectors.base import Round
from flows.detectors.config import F64, I64, NO_TS, DetectorConfig, TypeParams
from flows.detectors.state import SlotArrays, Spec

GAP_CAP: Final = 4.0

BASELINE_FIELDS: Final[Spec] = {
    "last_ts": (np.int64, NO_TS),
    "last_val": (np.float64, 0.0),
    "count": (np.int32, 0),  # readings applied, capped (see count_cap)
    "mean": (np.float64, 0.0),
    "var": (np.float64, 0.0),
    "interval": (np.float64, 0.0),  # ms; 0 until a second reading
}


class Baseline:
    """Welford at the start, then an EWMA clipped so an outlier cannot widen its own sigma."""

    def __init__(self, config: DetectorConfig, params: TypeParams, capacity: int) -> None:
        self.config = config
        self.params = params
        self.state = SlotArrays(BASELINE_FIELDS, capacity)
        # count only matters until warm and until 1/(n+1) drops below alpha
        self.count_cap = max(
            config.ewma_warmup, math.ceil(1.0 / min(config.ewma_alpha, config.ewma_var_alpha))
        )

    def round(self, s: I64, t: I64, x: F64, tix: np.ndarray) -> Round:
        a = self.state
        n, prev_ts = a["count"][s], a["last_ts"][s]
        return Round(
            s=s, t=t, x=x, tix=tix, seen=prev_ts != NO_TS, warm=n >= self.config.ewma_warmup,
            mean=a["mean"][s], sd=np.maximum(np.sqrt(a["var"][s]), self.params.min_sd[tix]),
            prev_ts=prev_ts, prev_val=a["last_val"][s], interval=a["interval"][s],
            rebase=np.zeros(s.size, np.bool_),
        )  # fmt: skip

    def update(self, r: Round) -> None:
        a, cfg, s = self.state, self.config, r.s
        n, var = a["count"][s], a["var"][s]
        d = r.x - r.mean
        lim = cfg.ewma_clip_sigma * r.sd
        d = np.where(r.warm, np.clip(d, -lim, lim), d)
        # 1/(n+1) while that is larger than alpha: exact running mean and variance at the
        # start (Welford), so the warm-up does not end with a variance biased towards 0.
        welford = 1.0 / (n + 1)
        alpha = np.maximum(cfg.ewma_alpha, welford)
        beta = np.maximum(cfg.ewma_var_alpha, welford)
        a["mean"][s] = r.mean + alpha * d
        a["var"][s] = (1 - beta) * (var + beta * d * d)
        # a rebased device learns again from its next reading (Welford from n = 0)
        a["count"][s] = np.where(r.rebase, 0, np.minimum(n + 1, self.count_cap))
        est = r.interval
        gap = (r.t - r.prev_ts).astype(np.float64)
        learned = est + cfg.interval_alpha * (np.minimum(gap, GAP_CAP * est) - est)
        a["interval"][s] = np.where(r.seen, np.where(est > 0, learned, gap), 0.0)
        a["last_ts"][s] = r.t
        a["last_val"][s] = r.x
