"""Which alerts go where: de-duplication, per-device rate limits, signatures.

Pure logic, no I/O, so unit tests drive it with a fake clock.

- De-duplication: an ``(alert_id, state)`` pair seen within the horizon is a
  duplicate (a replay after a crash, or at-least-once redelivery) and goes
  nowhere. ``alert_id`` is deterministic, so replays have the same id.
- Rate limit: a token bucket per device limits *notifications* (MQTT, webhook,
  log). Kafka still receives every alert, so the record is complete; what is
  held back is counted. Follow-ups (escalated / cleared) of an alert that was
  notified always pass, so a receiver never keeps an open alarm that was
  closed; follow-ups of a suppressed alert are suppressed too.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from iotpipe.model import Alert

SIGNATURE_HEADER = "X-Iotpipe-Signature"
ALERT_SIGNATURE = "iotpipe-signature"  # Kafka record header and MQTT v5 user property


def sign(body: bytes, secret: str) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of the exact request body."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(body: bytes, secret: str, header: str) -> bool:
    """What a receiver does: constant-time compare of the signature header."""
    return hmac.compare_digest(sign(body, secret), header)


class Verdict(StrEnum):
    NOTIFY = "notify"  # Kafka + the routed targets
    RECORD_ONLY = "record_only"  # Kafka only (rate-limited)
    DUPLICATE = "duplicate"  # nowhere


@dataclass
class GateStats:
    duplicates: int = 0
    suppressed: int = 0
    suppressed_by_device: dict[str, int] = field(default_factory=dict)


class AlertGate:
    """Decides, per alert, whether it is new and whether it may notify."""

    def __init__(
        self,
        *,
        horizon_s: float,
        per_minute: float,
        burst: int,
        max_entries: int = 200_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.horizon_s = horizon_s
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_entries = max_entries
        self.stats = GateStats()
        self._clock = clock
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._buckets: dict[str, tuple[float, float]] = {}  # device -> (tokens, at)
        self._notified: OrderedDict[str, bool] = OrderedDict()  # alert_id -> notified?

    def remember(self, alert_id: str, state: str) -> None:
        """Mark as already emitted (seeding from the alerts topic at start-up)."""
        self._seen[(alert_id, state)] = self._clock()
        self._trim(self._seen)
        self._notified[alert_id] = True  # unknown; prefer delivering its follow-ups
        self._trim(self._notified)

    def decide(self, alert: Alert) -> Verdict:
        now = self._clock()
        self._expire(now)
        key = (alert.alert_id, alert.state)
        if key in self._seen:
            self.stats.duplicates += 1
            return Verdict.DUPLICATE
        self._seen[key] = now
        self._trim(self._seen)
        earlier = self._notified.get(alert.alert_id)
        if earlier is not None and alert.state != "raised":
            allowed = earlier  # a follow-up shares its alarm's fate
        else:
            allowed = self._take_token(alert.device_id, now)
        self._notified[alert.alert_id] = allowed or bool(earlier)
        self._notified.move_to_end(alert.alert_id)
        self._trim(self._notified)
        if allowed:
            return Verdict.NOTIFY
        self.stats.suppressed += 1
        by_device = self.stats.suppressed_by_device
        by_device[alert.device_id] = by_device.get(alert.device_id, 0) + 1
        return Verdict.RECORD_ONLY

    def _take_token(self, device_id: str, now: float) -> bool:
        if self.rate <= 0:
            return True
        tokens, at = self._buckets.get(device_id, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._buckets[device_id] = (tokens - 1.0, now)
            return True
        self._buckets[device_id] = (tokens, now)
        return False

    def _expire(self, now: float) -> None:
        seen = self._seen
        while seen:
            _key, at = next(iter(seen.items()))
            if now - at <= self.horizon_s:
                break
            seen.popitem(last=False)

    def _trim(self, table: OrderedDict[Any, Any]) -> None:
        while len(table) > self.max_entries:
            table.popitem(last=False)
