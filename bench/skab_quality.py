"""Detection quality on real, independently labelled data: the SKAB pump testbed.

    python -m bench.detection_quality --skab ../shared/datasets/skab [--tune]

Why: the simulator's labels were made by the people who tuned the detectors,
so its scores flatter them. SKAB (Skoltech Anomaly Benchmark; GPL-3.0, read
from where it lies and never copied into this repository) records a real
water pump, one reading per second on 8 channels, with faults induced by hand
(valve closures, cavitation, imbalance...) and labelled by the experimenters.

How it is replayed: each recording is 8 devices, one per channel (its own
sensor type), fed in event-time order to the flow's own ``DetectorBank`` in
micro-batches of ``STEP_S`` seconds with the watermark advanced after each,
as a partition would. The channels have no catalogue bounds (nobody published
any), so what is judged is the statistical detectors, stuck, silence and the
lifecycle; each channel's physical range is taken wide around the clean
recording's values (``anomaly-free/``), which only sets the noise floor.

Event-level score: a labelled anomaly (a run of ``anomaly == 1``) is detected
when an alert is raised on its recording inside ``[start, end + grace]``; an
alert is a true positive when it lies inside some such window, otherwise
false. ``precision`` is over alerts, ``recall`` over events, and the share of
time labelled anomalous is the precision a detector raising at random would
get (``chance``). The clean recording gives false alerts per hour.

Split (``--tune``): the settings are chosen on ``valve1/`` (16 recordings) and
reported on ``valve2/`` and ``other/`` (18), which the tuning never saw.
"""

from __future__ import annotations

import csv
import itertools
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from flows.detectors import DetectorBank, DetectorConfig
from flows.slots import SlotMap
from iotpipe.catalogue import Catalogue, SensorType
from iotpipe.model import Alert

STEP_S = 5
GRACE_S = 30
TRAIN = ("valve1",)
TEST = ("valve2", "other")
CLEAN = "anomaly-free"
# (name, value) pairs tried by --tune on the training split
GRID: dict[str, tuple[float | int, ...]] = {  # see tune()
    "k_sigma": (4.5, 6.0, 8.0),
    "sustain_readings": (1, 3),
    "ewma_alpha": (0.02, 0.005),
}


@dataclass
class Recording:
    """One CSV: per-second rows of the 8 channels and the labelled anomaly runs."""

    name: str
    ts: np.ndarray  # ms
    values: dict[str, np.ndarray]
    events: list[tuple[int, int]]  # (start_ms, end_ms) of each anomaly run


def channel_type(column: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in column.lower()).strip("_")


def read_recording(path: Path, root: Path) -> Recording:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f, delimiter=";"))
    if not rows:
        raise ValueError(f"{path}: no rows")
    ts = np.array(
        [int(datetime.fromisoformat(r["datetime"]).timestamp() * 1000) for r in rows], np.int64
    )
    channels = [c for c in rows[0] if c not in ("datetime", "anomaly", "changepoint")]
    values = {channel_type(c): np.array([float(r[c]) for r in rows]) for c in channels}
    flags = [float(r.get("anomaly") or 0) > 0 for r in rows]
    events: list[tuple[int, int]] = []
    for i, on in enumerate(flags):
        if on and (i == 0 or not flags[i - 1]):
            start = int(ts[i])
        if on and (i + 1 == len(flags) or not flags[i + 1]):
            events.append((start, int(ts[i])))
    return Recording(str(path.relative_to(root)), ts, values, events)


def load(root: Path, groups: Iterable[str]) -> list[Recording]:
    data = root / "data"
    if not data.is_dir():
        raise SystemExit(f"SKAB data not found under {root} (expected {data}/); see --skab")
    files = [p for g in groups for p in sorted((data / g).glob("*.csv"), key=_numeric)]
    return [read_recording(p, data) for p in files]


def _numeric(p: Path) -> tuple[int, str]:
    return (int(p.stem), "") if p.stem.isdigit() else (0, p.stem)


def catalogue_for(clean: Recording) -> Catalogue:
    """A type per channel, its range wide around the clean recording (the noise floor)."""
    types = {}
    for name, v in clean.values.items():
        lo, hi = float(v.min()), float(v.max())
        span = max(hi - lo, abs(hi), 1e-6)
        types[name] = SensorType(name=name, unit="-", range=(lo - 10 * span, hi + 10 * span))
    return Catalogue(types=types)


def replay(rec: Recording, catalogue: Catalogue, config: DetectorConfig) -> list[Alert]:
    """Every alert event, the bank fed as a flow partition would be."""
    names = sorted(rec.values)
    slots = SlotMap(sorted(catalogue.names))
    # a slot is one device of one type: one per channel
    idx = slots.lookup([f"{rec.name}:{c}" for c in names], names, ["skab"] * len(names))
    bank = DetectorBank(catalogue, slots, config)
    n = rec.ts.size
    s = np.repeat(np.asarray(idx, np.int64), n)
    t = np.tile(rec.ts, len(names))
    x = np.concatenate([rec.values[c] for c in names])
    order = np.argsort(t, kind="stable")
    s, t, x = s[order], t[order], x[order]
    alerts: list[Alert] = []
    edges = np.searchsorted(t, np.arange(int(t[0]), int(t[-1]) + STEP_S * 1000, STEP_S * 1000))
    for lo, hi in itertools.pairwise([*edges.tolist(), t.size]):
        if hi <= lo:
            continue
        alerts += bank.process(s[lo:hi], t[lo:hi], x[lo:hi]) + bank.advance(int(t[hi - 1]))
    return alerts


def alarmed(rec: Recording, alerts: Sequence[Alert]) -> np.ndarray:
    """Per reading: some alarm of the recording active (raised, not yet cleared)."""
    on = np.zeros(rec.ts.size, np.bool_)
    start: dict[str, int] = {}
    for a in alerts:
        if a.state == "raised":
            start[a.alert_id] = a.ts
        elif a.state == "cleared" and a.alert_id in start:
            on |= (rec.ts >= start.pop(a.alert_id)) & (rec.ts < a.ts)
    for ts in start.values():
        on |= rec.ts >= ts
    return on


@dataclass
class SkabScore:
    events: int = 0
    detected: int = 0
    true_alerts: int = 0
    false_alerts: int = 0
    delays_s: list[float] = field(default_factory=list)
    labelled_s: float = 0.0
    total_s: float = 0.0
    # point-wise, as SKAB's own leaderboard scores: a reading is flagged while an alarm is on
    points: Counter[str] = field(default_factory=Counter)  # tp, fp, fn, tn
    by_detector: Counter[str] = field(default_factory=Counter)
    false_by_detector: Counter[str] = field(default_factory=Counter)

    @property
    def recall(self) -> float | None:
        return self.detected / self.events if self.events else None

    @property
    def precision(self) -> float | None:
        alerts = self.true_alerts + self.false_alerts
        return self.true_alerts / alerts if alerts else None

    @property
    def f1(self) -> float:
        p, r = self.precision or 0.0, self.recall or 0.0
        return 2 * p * r / (p + r) if p + r else 0.0

    def pointwise(self) -> dict[str, float | None]:
        """F1, false alarm rate and missing alarm rate over readings (SKAB's definitions)."""
        tp, fp, fn, tn = (self.points[k] for k in ("tp", "fp", "fn", "tn"))
        return {
            "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None,
            "far_pct": 100 * fp / (fp + tn) if fp + tn else None,
            "mar_pct": 100 * fn / (fn + tp) if fn + tp else None,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "pointwise": self.pointwise(),
            "events": self.events,
            "detected": self.detected,
            "recall": self.recall,
            "true_alerts": self.true_alerts,
            "false_alerts": self.false_alerts,
            "precision": self.precision,
            "f1": self.f1,
            "chance_precision": self.labelled_s / self.total_s if self.total_s else None,
            "median_delay_s": statistics.median(self.delays_s) if self.delays_s else None,
            "alerts_by_detector": dict(self.by_detector),
            "false_alerts_by_detector": dict(self.false_by_detector),
            "false_alerts_per_hour": self.false_alerts / (self.total_s - self.labelled_s) * 3600
            if self.total_s > self.labelled_s
            else None,
        }


def score(
    recordings: Sequence[Recording],
    catalogue: Catalogue,
    config: DetectorConfig,
    grace_s: int = GRACE_S,
) -> SkabScore:
    """Event-level recall, alert-level precision, over these recordings."""
    out = SkabScore()
    grace = grace_s * 1000
    for rec in recordings:
        alerts = replay(rec, catalogue, config)
        raised = [(a.ts, a.detector) for a in alerts if a.state == "raised"]
        windows = [(a, b + grace) for a, b in rec.events]
        out.events += len(rec.events)
        out.total_s += (int(rec.ts[-1]) - int(rec.ts[0])) / 1000 + 1
        out.labelled_s += sum((b - a) / 1000 + 1 for a, b in rec.events)
        for a, b in windows:
            hits = [ts for ts, _ in raised if a <= ts <= b]
            if hits:
                out.detected += 1
                out.delays_s.append((min(hits) - a) / 1000)
        for ts, det in raised:
            out.by_detector[det] += 1
            if any(a <= ts <= b for a, b in windows):
                out.true_alerts += 1
            else:
                out.false_alerts += 1
                out.false_by_detector[det] += 1
        truth = np.zeros(rec.ts.size, np.bool_)
        for a, b in rec.events:
            truth |= (rec.ts >= a) & (rec.ts <= b)
        flagged = alarmed(rec, alerts)
        out.points.update(
            tp=int((truth & flagged).sum()), fp=int((~truth & flagged).sum()),
            fn=int((truth & ~flagged).sum()), tn=int((~truth & ~flagged).sum()),
        )  # fmt: skip
    return out


Grid = dict[str, tuple[float | int, ...]]


def tune(
    train: Sequence[Recording], catalogue: Catalogue, base: DetectorConfig, grid: Grid = GRID
) -> tuple[DetectorConfig, float]:
    """The grid point with the best F1 on the training recordings."""
    best, best_f1 = base, -1.0
    names = list(grid)
    for combo in itertools.product(*(grid[n] for n in names)):
        changes: dict[str, Any] = dict(zip(names, combo, strict=True))
        config = replace(base, **changes)
        f1 = score(train, catalogue, config).f1
        if f1 > best_f1:
            best, best_f1 = config, f1
    return best, best_f1


def evaluate(root: Path, config: DetectorConfig, tune_on_train: bool) -> dict[str, Any]:
    """The whole SKAB report: default settings on both splits, tuned ones on the test split."""
    clean = load(root, (CLEAN,))[0]
    catalogue = catalogue_for(clean)
    train, test = load(root, TRAIN), load(root, TEST)
    doc: dict[str, Any] = {
        "dataset": str(root),
        "split": {"train": list(TRAIN), "test": list(TEST), "clean": CLEAN},
        "recordings": {"train": len(train), "test": len(test)},
        "step_s": STEP_S,
        "grace_s": GRACE_S,
        "given": {
            "train": score(train, catalogue, config).as_dict(),
            "test": score(test, catalogue, config).as_dict(),
            "clean": score([clean], catalogue, config).as_dict(),
        },
    }
    if tune_on_train:
        tuned, f1 = tune(train, catalogue, config)
        doc["tuned"] = {
            "settings": {n: getattr(tuned, n) for n in GRID},
            "train_f1": f1,
            "test": score(test, catalogue, tuned).as_dict(),
            "clean": score([clean], catalogue, tuned).as_dict(),
        }
    return doc


def table(doc: dict[str, Any]) -> str:
    def row(label: str, r: dict[str, Any]) -> str:
        pw = r["pointwise"]

        def f(v: float | None, spec: str = ".3f") -> str:
            return "-" if v is None else format(v, spec)

        return (
            f"{label:<14} {r['detected']:>3}/{r['events']:<3} {f(r['recall']):>7} "
            f"{r['true_alerts']:>6} {r['false_alerts']:>6} {f(r['precision']):>9} "
            f"{f(r['chance_precision']):>7} {f(r['f1']):>6} "
            f"{f(r['false_alerts_per_hour'], '.1f'):>8}"
            f"   {f(pw['f1']):>6} {f(pw['far_pct'], '.1f'):>6} {f(pw['mar_pct'], '.1f'):>6}"
        )

    lines = [
        f"{'SKAB':<14} {'found':>7} {'recall':>7} {'true':>6} {'false':>6} {'precision':>9} "
        f"{'chance':>7} {'F1':>6} {'false/h':>8}   {'pt F1':>6} {'FAR%':>6} {'MAR%':>6}"
    ]
    for split in ("train", "test", "clean"):
        lines.append(row(f"given {split}", doc["given"][split]))
    if "tuned" in doc:
        lines.append(row("tuned test", doc["tuned"]["test"]))
        lines.append(row("tuned clean", doc["tuned"]["clean"]))
        lines.append(f"tuned on {doc['split']['train']}: {doc['tuned']['settings']}")
    return "\n".join(lines)
