"""The loss check: every reading the simulator sent must come back out of Kafka.

The simulator numbers each device's readings 0, 1, 2, ... (``seq`` counts the
readings it actually sent, so a dropout anomaly leaves no gap). Reading the
readings topics back, per device:

- a seq seen more than once is a duplicate: allowed (delivery is at least
  once), but counted and reported;
- a gap below the highest seq seen is a lost reading;
- readings lost at the very end of a device's run leave no gap, so the total
  of distinct readings is also compared with what the simulator says the
  broker confirmed: a shortfall there is loss as well.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class SeqLedger:
    """Seq numbers seen per device, as compact arrays once sealed."""

    _seen: dict[str, list[int]] = field(default_factory=dict)

    def add(self, device_id: str, seq: int) -> None:
        self._seen.setdefault(device_id, []).append(seq)

    def add_many(self, pairs: Iterable[tuple[str, int]]) -> None:
        for device_id, seq in pairs:
            self.add(device_id, seq)

    @property
    def devices(self) -> int:
        return len(self._seen)

    def check(self, sent: int | None) -> LossReport:
        """Compare with ``sent`` (the simulator's confirmed count; None if unknown)."""
        received = distinct = gaps = 0
        dup_devices = 0
        worst: list[tuple[str, int]] = []
        for device_id, seqs in self._seen.items():
            arr = np.asarray(seqs, dtype=np.int64)
            uniq = np.unique(arr)
            received += len(arr)
            distinct += len(uniq)
            if len(arr) > len(uniq):
                dup_devices += 1
            missing = int(uniq[-1]) + 1 - len(uniq) if len(uniq) else 0
            if missing:
                gaps += missing
                worst.append((device_id, missing))
        tail = max(sent - distinct - gaps, 0) if sent is not None else 0
        worst.sort(key=lambda x: -x[1])
        return LossReport(
            sent=sent,
            received=received,
            distinct=distinct,
            duplicates=received - distinct,
            devices=len(self._seen),
            devices_with_duplicates=dup_devices,
            missing_gaps=gaps,
            missing_tail=tail,
            worst_devices=dict(worst[:5]),
        )


@dataclass(frozen=True)
class LossReport:
    """What the read-back found; ``lost == 0`` is the demo's pass mark."""

    sent: int | None
    received: int
    distinct: int
    duplicates: int
    devices: int
    devices_with_duplicates: int
    missing_gaps: int  # holes below a device's highest seq
    missing_tail: int  # sent (per the simulator) but not accounted for by seq numbers
    worst_devices: dict[str, int]

    @property
    def lost(self) -> int:
        return self.missing_gaps + self.missing_tail

    @property
    def expected(self) -> int:
        """Readings that should have arrived: the simulator's count, or what seq implies."""
        implied = self.distinct + self.missing_gaps
        return max(self.sent, implied) if self.sent is not None else implied

    @property
    def delivered_fraction(self) -> float:
        return 1.0 if self.expected == 0 else (self.expected - self.lost) / self.expected

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.sent is not None and self.distinct >= self.sent

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "sent": self.sent,
            "received": self.received,
            "distinct": self.distinct,
            "duplicates": self.duplicates,
            "devices": self.devices,
            "devices_with_duplicates": self.devices_with_duplicates,
            "missing_gaps": self.missing_gaps,
            "missing_tail": self.missing_tail,
            "lost": self.lost,
            "delivered_fraction": round(self.delivered_fraction, 6),
            "worst_devices": self.worst_devices,
        }
