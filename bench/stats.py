"""The arithmetic of the benchmark report: percentiles, spread, loss, aggregate equality.

Kept free of I/O so the unit tests can pin it down: a benchmark whose maths is
wrong reports confident nonsense.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PERCENTILES = (50, 95, 99)


def latency_summary(samples_ms: Sequence[float] | np.ndarray) -> dict[str, float | int | None]:
    """p50/p95/p99/max (seconds) of latencies given in milliseconds; None when empty."""
    arr = np.asarray(samples_ms, dtype=np.float64)
    if arr.size == 0:
        return {"n": 0, "p50_s": None, "p95_s": None, "p99_s": None, "max_s": None}
    # "linear" (numpy's default) interpolates between neighbours, the textbook definition.
    p = np.percentile(arr, PERCENTILES)
    return {
        "n": int(arr.size),
        "p50_s": float(p[0]) / 1000,
        "p95_s": float(p[1]) / 1000,
        "p99_s": float(p[2]) / 1000,
        "max_s": float(arr.max()) / 1000,
    }


def spread(values: Iterable[float]) -> dict[str, float | int]:
    """Median and spread (min, max, relative half-range) over repeated runs."""
    vals = sorted(float(v) for v in values if v is not None and not math.isnan(float(v)))
    if not vals:
        return {
            "n": 0,
            "median": math.nan,
            "min": math.nan,
            "max": math.nan,
            "spread_pct": math.nan,
        }
    med = statistics.median(vals)
    half = (vals[-1] - vals[0]) / 2
    return {
        "n": len(vals),
        "median": med,
        "min": vals[0],
        "max": vals[-1],
        "spread_pct": 100 * half / med if med else math.nan,
    }


@dataclass
class Delivery:
    """What arrived, judged by each device's ``seq`` against what was sent."""

    sent: int
    received: int
    unique: int
    duplicates: int
    missing: int
    gaps: int  # devices with a hole in their seq run
    per_device_missing: dict[str, int] = field(default_factory=dict)

    @property
    def delivered_fraction(self) -> float:
        return self.unique / self.sent if self.sent else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "received": self.received,
            "unique": self.unique,
            "duplicates": self.duplicates,
            "missing": self.missing,
            "devices_with_gaps": self.gaps,
            "delivered_fraction": self.delivered_fraction,
        }


def account(seqs: Mapping[str, Sequence[int]], sent: int) -> Delivery:
    """Loss and duplicates from per-device seq lists read back from Kafka.

    ``sent`` is what the producer says it published. Duplicates are repeats of a
    (device, seq); a gap is a device whose seen seqs do not form one run
    (a reading missing in the middle, which the total alone could hide).
    """
    received = unique = gaps = 0
    per_missing: dict[str, int] = {}
    for device, seq in seqs.items():
        received += len(seq)
        distinct = set(seq)
        unique += len(distinct)
        if distinct:
            hole = (max(distinct) - min(distinct) + 1) - len(distinct)
            if hole:
                gaps += 1
                per_missing[device] = hole
    return Delivery(
        sent=sent,
        received=received,
        unique=unique,
        duplicates=received - unique,
        missing=max(sent - unique, 0),
        gaps=gaps,
        per_device_missing=per_missing,
    )


AggKey = tuple[str, int]  # (device_id, window start ms)
AggValue = tuple[int, float, float, float]  # count, mean, min, max


@dataclass
class Comparison:
    """Result of checking every peer's aggregates against the reference on a sample."""

    sample: int
    mismatches: list[str]

    @property
    def ok(self) -> bool:
        return self.sample > 0 and not self.mismatches


def compare_aggregates(
    reference: Mapping[AggKey, AggValue],
    peers: Mapping[str, Mapping[AggKey, AggValue]],
    sample_keys: Sequence[AggKey],
    rel_tol: float = 1e-9,
) -> Comparison:
    """Every peer must hold the reference's count/mean/min/max for each sampled window.

    Means are compared with a relative tolerance: numpy and Python sum floats in
    a different order, which moves the last bits and nothing more.
    """
    mismatches: list[str] = []
    for key in sample_keys:
        want = reference[key]
        for name, got_all in peers.items():
            got = got_all.get(key)
            if got is None:
                mismatches.append(f"{name}: {key} missing")
            elif got[0] != want[0] or not all(
                math.isclose(g, w, rel_tol=rel_tol, abs_tol=1e-9)
                for g, w in zip(got[1:], want[1:], strict=True)
            ):
                mismatches.append(f"{name}: {key} {got} != reference {want}")
    return Comparison(sample=len(sample_keys), mismatches=mismatches)


def is_sustained(run: Mapping[str, Any], budget_s: float, carried: float = 0.95) -> bool:
    """A run kept up: every reading delivered, the offered rate carried into Kafka, and the
    p99 event-to-aggregate latency within the budget."""
    p99 = run.get("p99_aggregate_s")
    return (
        run.get("delivered_fraction") == 1.0
        and float(run.get("kafka_rate") or 0) >= carried * float(run["offered_rate"])
        and p99 is not None
        and float(p99) <= budget_s
        and not run.get("failed_processes")
    )
