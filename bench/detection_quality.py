"""Detection quality: the detectors scored against the simulator's labelled anomalies.

    python -m bench.detection_quality [--devices 2000] [--hours 6] [--seed 1]
        [--anomaly-rate 0.0005] [--anomaly-mix ""] [--set k_sigma=5 ...]
    python -m bench.detection_quality --skab ../shared/datasets/skab [--tune]

The second form scores the same detectors on real labelled data instead (see
``bench/skab_quality.py``; results in ``bench/results/skab_quality.json``).

Why this exists: the detectors have unit tests that make each one fire on a
hand-made signal, but nothing said how well the whole bank does on a fleet
that looks like production. Here a seeded ``simulators.fleet.Fleet`` (default
anomaly mix: every kind equally likely) is stepped through simulated time with
no MQTT or Kafka: every step's readings are encoded exactly as the simulator
sends them (``PayloadEncoder``, 3 decimals) and handed as one micro-batch of
Kafka values to ``flows.partition.PartitionState.on_values`` -- the same entry
point the Bytewax step uses -- with a simulated wall clock, so watermarks,
idle handling and the silence detector behave as in a live flow. One partition
holds the whole fleet (the flow partitions by sensor-type topic; the devices'
clocks agree, so one watermark changes nothing).

Scoring (``score``), on ``raised`` alert events only (escalations and clears
belong to an episode that was already raised):

- Only labels of category ``anomaly`` count; transport/data faults (clock skew,
  duplicates...) are not the detectors' job and are dropped.
- A label is *detected* if a raised alert of the same device has
  ``start_ts <= ts <= end_ts + allowance``. The allowance is ``GRACE_MS``
  (2 min: the end of a level shift or a stuck run shows up one reading after
  the label's last reading, and the stuck detector needs its minimum duration)
  and, for ``dropout``, also the silence timeout: the silence detector can only
  speak once the device has been quiet that long.
- Detection delay = first matching alert ts - ``start_ts``.
- An alert is a *true positive* if it lies in some scored label's window on its
  device, otherwise a *false positive* -- unless it lies only in the window of a
  *censored* label: one whose window reaches past the end of the run, where the
  detectors never had the chance to see it through. Those labels and their
  alerts are left out of both precision and recall rather than guessed at.

Precision depends on the anomaly rate (false alarms do not scale with it, true
positives do), so false positives are also reported per 1,000 device-hours.
Results go to stdout and ``bench/results/detection_quality.json``.
"""

from __future__ import annotations

import argparse
import bisect
import json
import platform
import shlex
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench import conditions as bench_conditions
from bench import skab_quality
from bench.conditions import Conditions, HoverStats
from flows.detectors import DETECTORS, DetectorConfig
from flows.partition import FlowConfig, PartitionState
from iotpipe.catalogue import Catalogue, load_catalogue
from iotpipe.model import Alert
from simulators.anomalies import KIND_NAMES, AnomalyConfig, Label, RawLabel, parse_mix
from simulators.fleet import Fleet, FleetConfig
from simulators.names import site_names
from simulators.payloads import PayloadEncoder
from simulators.truth import FLEET_WIDE, TruthWriter

RESULTS = Path(__file__).parent / "results"
GRACE_MS = 120_000
START_MS = 1_764_000_000_000  # fixed event-time origin: the same seed gives the same run
DEFAULT_RATE = 0.0005  # per reading: ~1 anomaly per device per 6 h at 10 s intervals
DEFAULT_STEP_MS = 1_000  # event time per micro-batch (a live flow polls about this often)
TARGET_RECALL = 0.95
TARGET_PRECISION = 0.9


@dataclass(frozen=True, slots=True)
class Raised:
    """The part of a raised alert scoring needs."""

    device_id: str
    detector: str
    ts: int


@dataclass
class KindScore:
    """Recall and delays of one anomaly kind."""

    labels: int = 0
    detected: int = 0
    censored: int = 0
    delays_ms: list[int] = field(default_factory=list)
    first_detector: Counter[str] = field(default_factory=Counter)

    @property
    def recall(self) -> float | None:
        return self.detected / self.labels if self.labels else None

    def delay_s(self, q: float) -> float | None:
        """Percentile ``q`` of the detection delay, in seconds (None if nothing found)."""
        if not self.delays_ms:
            return None
        return float(np.percentile(np.asarray(self.delays_ms, np.float64), q)) / 1000.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "detected": self.detected,
            "recall": self.recall,
            "median_delay_s": self.delay_s(50),
            "p95_delay_s": self.delay_s(95),
            "censored": self.censored,
            "first_detector": dict(self.first_detector.most_common()),
        }


@dataclass
class Score:
    """What ``score`` found: per kind, and over all alerts."""

    kinds: dict[str, KindScore]
    true_positives: int = 0
    false_positives: int = 0
    ignored: int = 0  # alerts that only match censored labels
    fp_by_detector: Counter[str] = field(default_factory=Counter)
    tp_by_detector: Counter[str] = field(default_factory=Counter)

    @property
    def labels(self) -> int:
        return sum(k.labels for k in self.kinds.values())

    @property
    def detected(self) -> int:
        return sum(k.detected for k in self.kinds.values())

    @property
    def recall(self) -> float | None:
        return self.detected / self.labels if self.labels else None

    @property
    def precision(self) -> float | None:
        n = self.true_positives + self.false_positives
        return self.true_positives / n if n else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "per_kind": {name: k.as_dict() for name, k in self.kinds.items()},
            "overall": {
                "labels": self.labels,
                "detected": self.detected,
                "recall": self.recall,
                "precision": self.precision,
                "true_positive_alerts": self.true_positives,
                "false_positive_alerts": self.false_positives,
                "ignored_alerts": self.ignored,
            },
            "false_positives_by_detector": {d: self.fp_by_detector[d] for d in DETECTORS},
            "true_positives_by_detector": {d: self.tp_by_detector[d] for d in DETECTORS},
        }


def allowance_ms(kind: str, grace_ms: int, silence_timeout_ms: int) -> int:
    """How long after a label's end a matching alert still counts (see module doc)."""
    return grace_ms + (silence_timeout_ms if kind == "dropout" else 0)


def score(
    labels: Iterable[Label],
    alerts: Iterable[Raised],
    *,
    grace_ms: int = GRACE_MS,
    silence_timeout_ms: int = DetectorConfig().silence_timeout_ms,
    silence_ms: Mapping[str, int] | None = None,
    horizon_ts: int | None = None,
    kinds: Sequence[str] = KIND_NAMES,
) -> Score:
    """Match raised alerts to labels (rules in the module docstring).

    ``horizon_ts`` is the last event time the detectors were able to judge
    (the final watermark); labels whose window ends after it are censored.
    None: nothing is censored. ``silence_ms``: each device's own silence timeout
    where it differs from ``silence_timeout_ms`` (a 5-minute sensor's is longer).
    """
    silence_ms = silence_ms or {}
    result = Score(kinds={k: KindScore() for k in kinds})
    # device -> [(window start, window end, label index, scored?)], by window start
    windows: dict[str, list[tuple[int, int, int, bool]]] = defaultdict(list)
    kept: list[Label] = []
    for label in labels:
        if label.category != "anomaly":
            continue
        ks = result.kinds.setdefault(label.kind, KindScore())
        timeout = silence_ms.get(label.device_id, silence_timeout_ms)
        hi = label.end_ts + allowance_ms(label.kind, grace_ms, timeout)
        scored = horizon_ts is None or hi <= horizon_ts
        if scored:
            ks.labels += 1
        else:
            ks.censored += 1
        windows[label.device_id].append((label.start_ts, hi, len(kept), scored))
        kept.append(label)
    for w in windows.values():
        w.sort()
    max_len = {d: max(hi - lo for lo, hi, _, _ in w) for d, w in windows.items()}
    first: dict[int, Raised] = {}
    for alert in sorted(alerts, key=lambda a: (a.ts, a.device_id, a.detector)):
        w = windows.get(alert.device_id, [])
        # windows starting at or before ts, and not so long ago that none could still be open
        top = bisect.bisect_right(w, (alert.ts, 2**63, 2**63, True))
        bottom = bisect.bisect_left(w, (alert.ts - max_len.get(alert.device_id, 0), -(2**63), -1))
        hits = [(i, scored) for lo, hi, i, scored in w[bottom:top] if lo <= alert.ts <= hi]
        if any(scored for _, scored in hits):
            result.true_positives += 1
            result.tp_by_detector[alert.detector] += 1
        elif hits:
            result.ignored += 1
        else:
            result.false_positives += 1
            result.fp_by_detector[alert.detector] += 1
        for i, scored in hits:
            if scored and i not in first:
                first[i] = alert
    for i, alert in first.items():
        label = kept[i]
        ks = result.kinds[label.kind]
        ks.detected += 1
        ks.delays_ms.append(alert.ts - label.start_ts)
        ks.first_detector[alert.detector] += 1
    return result


@dataclass
class Run:
    """One simulated fleet through the flow's partition state."""

    labels: list[Label]
    alerts: list[Raised]
    readings: int
    start_ts: int
    end_ts: int
    horizon_ts: int
    wall_s: float
    hover: HoverStats = field(default_factory=HoverStats)
    silence_ms: dict[str, int] = field(default_factory=dict)  # devices' own silence timeouts
    cadence_s: dict[str, float] = field(default_factory=dict)  # with --cadences: nominal


def simulate(
    *,
    devices: int,
    hours: float,
    seed: int,
    anomaly_rate: float = DEFAULT_RATE,
    anomaly_mix: str = "",
    detectors: DetectorConfig | None = None,
    step_ms: int = DEFAULT_STEP_MS,
    sites: int = 10,
    catalogue: Catalogue | None = None,
    conditions: Conditions | None = None,
    jitter: float = 0.1,
) -> Run:
    """Run a labelled fleet through ``PartitionState`` in accelerated event time.

    The "wall clock" handed to the partition is the simulated time at the end of
    each step: a live flow receives a step's readings about then, so its idle
    logic (watermark moving on with wall time) sees the same thing. With
    ``conditions`` (``bench/conditions.py``) the hovering devices are left out of
    the labels and alerts and counted in ``Run.hover`` instead.
    """
    cat = catalogue or load_catalogue()
    config = FleetConfig(
        devices=devices,
        sites=site_names(sites),
        seed=seed,
        start_ms=START_MS,
        anomalies=AnomalyConfig(rate=anomaly_rate, weights=parse_mix(anomaly_mix)),
        jitter=jitter,
    )
    fleet = Fleet(config, cat)
    conditions = conditions or Conditions()
    hover = bench_conditions.apply(fleet, conditions, cat, seed)
    encoder = PayloadEncoder(fleet.naming, cat)
    truth = TruthWriter(None, fleet.naming)
    flow = FlowConfig(detectors=detectors or DetectorConfig())
    state = PartitionState(cat, flow)
    end = START_MS + int(hours * 3_600_000)
    raw: list[RawLabel] = []
    raised: list[Raised] = []

    def keep(alerts: list[Alert]) -> None:
        raised.extend(Raised(a.device_id, a.detector, a.ts) for a in alerts if a.state == "raised")

    began = time.perf_counter()
    readings = 0
    t = START_MS
    while t < end:
        t = min(t + step_ms, end)
        batch = fleet.advance(t)
        if hover.devices:
            hover.observe(batch)
        now = t / 1000.0
        if len(batch):
            values = encoder.messages(batch, fleet.stype[batch.device], fleet.site[batch.device])
            readings += len(values)
            keep(state.on_values(values, now=now).alerts)
        else:
            keep(state.on_idle(now=now).alerts)  # the simulated source is caught up
        raw += fleet.take_labels()
    # No ``state.flush()``: it reads the real wall clock for the detectors' watermark,
    # which here is unrelated to the simulated one. Every step already advanced the
    # detectors to the watermark; that watermark is the horizon for censoring.
    horizon = state.watermark()
    raw += fleet.final_labels()
    labels = [
        truth.name(r, int(fleet.stype[r.device]), int(fleet.site[r.device]))
        for r in raw
        if r.device != FLEET_WIDE and r.device not in hover.devices
    ]
    hovering = {fleet.naming.device_id(d) for d in hover.devices}
    hover.raised = sum(1 for a in raised if a.device_id in hovering)
    hover.device_hours = len(hovering) * hours
    cfg = flow.detectors
    own = np.maximum(cfg.silence_timeout_ms, cfg.silence_interval_factor * fleet.interval_ms)
    silence_ms, cadence_s = {}, {}
    if conditions.cadences_s:
        silence_ms = {fleet.naming.device_id(d): int(ms) for d, ms in enumerate(own.tolist())}
        nominal = bench_conditions.nominal_cadences(fleet, conditions)
        cadence_s = {fleet.naming.device_id(d): c for d, c in enumerate(nominal)}
    return Run(
        labels=labels,
        alerts=[a for a in raised if a.device_id not in hovering],
        readings=readings,
        start_ts=START_MS,
        end_ts=end,
        horizon_ts=horizon,
        wall_s=time.perf_counter() - began,
        hover=hover,
        silence_ms=silence_ms,
        cadence_s=cadence_s,
    )


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def table(result: Score, device_hours: float) -> str:
    """The figures as plain text (the JSON has the same and more)."""
    head = (
        f"{'kind':<13}{'labels':>7}{'found':>7}{'recall':>8}{'med s':>8}{'p95 s':>8}"
        f"  first detector"
    )
    lines = [head, "-" * len(head)]
    for name, k in result.kinds.items():
        firsts = ", ".join(f"{d} {n}" for d, n in k.first_detector.most_common(3))
        lines.append(
            f"{name:<13}{k.labels:>7}{k.detected:>7}{_fmt(k.recall, '.3f'):>8}"
            f"{_fmt(k.delay_s(50), '.0f'):>8}{_fmt(k.delay_s(95), '.0f'):>8}  {firsts}"
        )
    lines.append("-" * len(head))
    lines.append(
        f"{'all':<13}{result.labels:>7}{result.detected:>7}{_fmt(result.recall, '.3f'):>8}"
    )
    fp_rate = result.false_positives / device_hours * 1000 if device_hours else 0.0
    lines.append(
        f"precision {_fmt(result.precision, '.3f')}  "
        f"({result.true_positives} true / {result.false_positives} false positive alerts, "
        f"{fp_rate:.1f} false per 1000 device-hours, {result.ignored} censored)"
    )
    fps = ", ".join(f"{d} {result.fp_by_detector[d]}" for d in DETECTORS)
    lines.append(f"false positives by detector: {fps}")
    return "\n".join(lines)


def parse_overrides(items: Sequence[str]) -> DetectorConfig:
    """``k_sigma=5`` style overrides of ``DetectorConfig`` defaults (for experiments)."""
    types = {f.name: f.type for f in fields(DetectorConfig)}
    changes: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in types or name == "detectors":
            raise SystemExit(f"--set {item!r}: expected name=value, name a DetectorConfig number")
        changes[name] = int(value) if types[name] in ("int", int) else float(value)
    return replace(DetectorConfig(), **changes)


def per_cadence(
    run: Run, cadences: Sequence[float], grace_ms: int, config: DetectorConfig
) -> dict[str, Any]:
    """The score of each cadence's devices on their own (printed, and for the JSON)."""
    by_cadence = {}
    for cadence in cadences:
        mine = {d for d, c in run.cadence_s.items() if c == cadence}
        part = score(
            [lab for lab in run.labels if lab.device_id in mine],
            [a for a in run.alerts if a.device_id in mine],
            grace_ms=grace_ms, silence_timeout_ms=config.silence_timeout_ms,
            silence_ms=run.silence_ms, horizon_ts=run.horizon_ts,
        )  # fmt: skip
        by_cadence[f"{cadence:g}s"] = part.as_dict()
        kinds = ", ".join(f"{k} {_fmt(v.recall, '.2f')}" for k, v in part.kinds.items())
        print(f"every {cadence:g} s: recall {_fmt(part.recall, '.3f')}, precision "
              f"{_fmt(part.precision, '.3f')}, {part.false_positives} false ({kinds})")  # fmt: skip
    return by_cadence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--hours", type=float, default=6.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--anomaly-rate", type=float, default=DEFAULT_RATE)
    parser.add_argument("--anomaly-mix", default="", help="kind=weight,...; empty: all equal")
    parser.add_argument("--step-ms", type=int, default=DEFAULT_STEP_MS)
    parser.add_argument("--grace-ms", type=int, default=GRACE_MS)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a DetectorConfig default (repeatable)")  # fmt: skip
    parser.add_argument("--cadences", default="", help="device intervals in s, e.g. 1,60,300")
    parser.add_argument("--hover", type=float, default=0.0,
                        help="share of devices sat at their type's warning bound")  # fmt: skip
    parser.add_argument("--jitter", type=float, default=0.1, help="gap = interval * U(1 +- j)")
    parser.add_argument("--field", action="store_true",
                        help="--cadences 1,60,300 --hover 0.05 --jitter 0.5")  # fmt: skip
    parser.add_argument("--output", type=Path, default=None,
                        help="default bench/results/detection_quality[_field].json")  # fmt: skip
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--skab", type=Path, metavar="DIR", help="score on the SKAB data in DIR, not the simulator"
    )
    parser.add_argument(
        "--tune", action="store_true", help="with --skab: tune on valve1/, report on the rest"
    )
    args = parser.parse_args(argv)
    config = parse_overrides(args.set)
    if args.skab is not None:
        return skab_main(args, config, argv)
    if args.field:
        args.cadences = args.cadences or "1,60,300"
        args.hover = args.hover or 0.05
        args.jitter = 0.5 if args.jitter == 0.1 else args.jitter
    cadences = tuple(float(c) for c in args.cadences.split(",") if c.strip())
    conditions = Conditions(cadences_s=cadences, hover=args.hover)
    name = "detection_quality_field.json" if conditions.any else "detection_quality.json"
    args.output = args.output or RESULTS / name
    run = simulate(
        devices=args.devices,
        hours=args.hours,
        seed=args.seed,
        anomaly_rate=args.anomaly_rate,
        anomaly_mix=args.anomaly_mix,
        detectors=config,
        step_ms=args.step_ms,
        conditions=conditions,
        jitter=args.jitter,
    )
    result = score(
        run.labels,
        run.alerts,
        grace_ms=args.grace_ms,
        silence_timeout_ms=config.silence_timeout_ms,
        silence_ms=run.silence_ms,
        horizon_ts=run.horizon_ts,
    )
    device_hours = (args.devices - len(run.hover.devices)) * args.hours
    print(
        f"{args.devices} devices, {args.hours:g} h, seed {args.seed}, anomaly rate "
        f"{args.anomaly_rate:g}: {run.readings:,} readings, {len(run.alerts):,} raised alerts "
        f"in {run.wall_s:.1f} s"
    )
    print(table(result, device_hours))
    by_cadence = per_cadence(run, cadences, args.grace_ms, config)
    if run.hover.devices:
        h = run.hover.as_dict()
        print(
            f"hovering at a bound (not scored above): {h['devices']} devices, "
            f"{_fmt(h['crossings_per_device_hour'], '.1f')} crossings and "
            f"{_fmt(h['raised_per_device_hour'], '.2f')} raised alerts per device-hour "
            f"({_fmt(h['raised_per_crossing'], '.3f')} alerts per crossing)"
        )
    recall, precision = result.recall, result.precision
    met = (recall or 0) >= TARGET_RECALL and (precision or 0) >= TARGET_PRECISION
    print(f"target recall >= {TARGET_RECALL}, precision >= {TARGET_PRECISION}: "
          f"{'met' if met else 'NOT met'}")  # fmt: skip
    if not args.no_write:
        argv_text = sys.argv[1:] if argv is None else list(argv)
        doc = {
            "command": shlex.join(["python", "-m", "bench.detection_quality", *argv_text]),
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "host": {"python": platform.python_version(), "machine": platform.machine()},
            "params": {
                "devices": args.devices,
                "hours": args.hours,
                "seed": args.seed,
                "anomaly_rate": args.anomaly_rate,
                "anomaly_mix": args.anomaly_mix or "all kinds equally",
                "step_ms": args.step_ms,
                "grace_ms": args.grace_ms,
                "dropout_allowance_ms": allowance_ms(
                    "dropout", args.grace_ms, config.silence_timeout_ms
                ),
                "cadences_s": list(cadences) or "about 10 s",
                "hover": args.hover,
                "jitter": args.jitter,
            },
            "hovering": run.hover.as_dict(),
            "by_cadence": by_cadence,
            "detector_config": asdict(config),
            "readings": run.readings,
            "raised_alerts": len(run.alerts),
            "wall_s": round(run.wall_s, 2),
            "false_positives_per_1000_device_hours": (
                result.false_positives / device_hours * 1000 if device_hours else None
            ),
            "target": {"recall": TARGET_RECALL, "precision": TARGET_PRECISION, "met": met},
            **result.as_dict(),
        }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {args.output}")
    return 0


def skab_main(args: argparse.Namespace, config: DetectorConfig, argv: Sequence[str] | None) -> int:
    started = time.perf_counter()
    doc = skab_quality.evaluate(args.skab, config, args.tune)
    print(skab_quality.table(doc))
    wall_s = time.perf_counter() - started
    print(f"({wall_s:.1f} s)")
    if not args.no_write:
        argv_text = sys.argv[1:] if argv is None else list(argv)
        out = {
            "command": shlex.join(["python", "-m", "bench.detection_quality", *argv_text]),
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "detector_config": asdict(config),
            "wall_s": round(wall_s, 1),
            **doc,
        }
        path = args.output or RESULTS / "skab_quality.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
