"""Transport and data faults, for testing the pipeline rather than the detectors.

Applied to encoded messages (after the signal and anomalies), each one off by
default and labelled: late (held back, so it arrives after newer readings: out
of order), duplicate (sent twice), malformed (broken JSON, wrong type, NaN,
missing field), oversized (padded past the ingester's payload limit). Clock
skew lives in the fleet (it shifts ``ts``); connection storms in the MQTT
output. Draws are keyed by (device, seq), so they are deterministic too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from iotpipe.errors import ConfigError
from simulators import hashrng
from simulators.anomalies import RawLabel
from simulators.outgoing import Outgoing

SALT_LATE, SALT_DUP, SALT_BAD, SALT_BIG, SALT_VARIANT = 201, 202, 203, 204, 205
MALFORMED_VARIANTS = ("broken_json", "wrong_type", "nan_value", "missing_value")


@dataclass(frozen=True)
class FaultConfig:
    """Probability per reading of each fault; all zero means none."""

    late: float = 0.0
    late_delay_s: float = 30.0
    duplicate: float = 0.0
    malformed: float = 0.0
    oversized: float = 0.0
    oversize_bytes: int = 300_000

    def __post_init__(self) -> None:
        for name in ("late", "duplicate", "malformed", "oversized"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ConfigError(f"fault probability {name}={p} must be within [0, 1]")
        if self.late_delay_s <= 0:
            raise ConfigError("late delay must be > 0 seconds")
        if self.oversize_bytes < 1024:
            raise ConfigError("oversize bytes must be at least 1024")

    @property
    def any(self) -> bool:
        return any((self.late, self.duplicate, self.malformed, self.oversized))


def malformed(record: bytes, variant: str) -> bytes:
    """A broken version of one JSON reading."""
    head, _, tail = record.partition(b'"value":')
    number, comma, rest = tail.partition(b",")
    if variant == "broken_json":
        return record[: len(record) // 2]
    if variant == "wrong_type":
        return head + b'"value":"' + number + b'"' + comma + rest
    if variant == "nan_value":
        return head + b'"value":NaN' + comma + rest
    return head.rstrip(b",") + (b"," + rest if rest else b"}")  # missing_value


def oversized(record: bytes, size: int) -> bytes:
    """The reading padded with an extra field to ``size`` bytes (still valid JSON)."""
    pad = max(0, size - len(record) - 10)
    return record[:-1] + b',"pad":"' + b"x" * pad + b'"}'


class FaultInjector:
    """Applies the configured faults to each outgoing batch; holds late readings."""

    def __init__(self, config: FaultConfig, seed: int) -> None:
        self.config = config
        self.seed = seed
        self._held: list[tuple[int, bytes, int, int, int]] = []
        self.labels: list[RawLabel] = []

    def apply(
        self, out: Outgoing, ts: npt.NDArray[np.int64], seq: npt.NDArray[np.int64], now_ms: int
    ) -> Outgoing:
        """Faulty copy of ``out`` plus any held readings now due (appended: they are late)."""
        c = self.config
        if c.any and len(out):
            out = self._inject(out, ts, seq)
        return self._release(out, now_ms)

    def _draw(self, p: float, device: npt.NDArray[np.int64], seq: npt.NDArray[np.int64],
              salt: int) -> npt.NDArray[np.bool_]:  # fmt: skip
        if p <= 0:
            return np.zeros(device.size, bool)
        hit: npt.NDArray[np.bool_] = hashrng.uniform(self.seed, device, seq, salt) < p
        return hit

    def _inject(
        self, out: Outgoing, ts: npt.NDArray[np.int64], seq: npt.NDArray[np.int64]
    ) -> Outgoing:
        c = self.config
        dev = out.device
        # At most one fault per reading, so each label accounts for exactly one effect.
        bad = self._draw(c.malformed, dev, seq, SALT_BAD)
        big = self._draw(c.oversized, dev, seq, SALT_BIG) & ~bad
        late = self._draw(c.late, dev, seq, SALT_LATE) & ~bad & ~big
        dup = self._draw(c.duplicate, dev, seq, SALT_DUP) & ~late & ~bad & ~big
        if not (late.any() or dup.any() or bad.any() or big.any()):
            return out
        records = list(out.records)
        variants = hashrng.hash64(self.seed, dev, seq, SALT_VARIANT) % np.uint64(4)
        for i in np.flatnonzero(bad).tolist():
            name = MALFORMED_VARIANTS[int(variants[i])]
            records[i] = malformed(records[i], name)
            self._label(int(dev[i]), "malformed", int(ts[i]), f"seq={int(seq[i])} {name}")
        for i in np.flatnonzero(big).tolist():
            records[i] = oversized(records[i], c.oversize_bytes)
            self._label(int(dev[i]), "oversized", int(ts[i]), f"seq={int(seq[i])}")
        delay = int(c.late_delay_s * 1000)
        for i in np.flatnonzero(late).tolist():
            due = int(ts[i]) + delay
            self._held.append((due, records[i], int(dev[i]), int(out.stype[i]), int(out.site[i])))
            self._label(int(dev[i]), "late", int(ts[i]), f"seq={int(seq[i])} delay_ms={delay}")
        for i in np.flatnonzero(dup).tolist():
            self._label(int(dev[i]), "duplicate", int(ts[i]), f"seq={int(seq[i])}")
        counts = np.where(late, 0, np.where(dup, 2, 1))
        rows = np.repeat(np.arange(len(records)), counts)
        return Outgoing(
            [records[i] for i in rows.tolist()], dev[rows], out.stype[rows], out.site[rows]
        )

    def _label(self, device: int, kind: str, ts: int, detail: str) -> None:
        self.labels.append(RawLabel(device, "fault", kind, ts, ts, 1, detail))

    def _release(self, out: Outgoing, now_ms: int | None) -> Outgoing:
        if not self._held:
            return out
        due = [h for h in self._held if now_ms is None or h[0] <= now_ms]
        if not due:
            return out
        self._held = [h for h in self._held if not (now_ms is None or h[0] <= now_ms)]
        late = Outgoing(
            [h[1] for h in due],
            np.array([h[2] for h in due], np.int64),
            np.array([h[3] for h in due], np.int64),
            np.array([h[4] for h in due], np.int64),
        )
        return out.extend(late)

    def drain(self) -> Outgoing:
        """Every reading still held back (at the end of a run)."""
        return self._release(Outgoing.empty(), None)

    def take_labels(self) -> list[RawLabel]:
        labels, self.labels = self.labels, []
        return labels
