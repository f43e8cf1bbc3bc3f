"""The one retry pause for HTTP writers (InfluxDB, webhooks): jittered doubling, Retry-After first.

Full jitter in the upper half of each step keeps a fleet of writers that
failed together from retrying together; a server that says when to come back
(429/503 with ``Retry-After``) is believed, up to the same cap.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from tenacity import RetryCallState


def retry_after_s(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class Backoff:
    """A tenacity ``wait``: ``initial_s`` doubling per attempt up to ``max_s``, jittered.

    An exception with a ``retry_after`` attribute (seconds) sets the pause
    instead, capped at ``max_s``.
    """

    initial_s: float
    max_s: float

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        after = getattr(exc, "retry_after", None)
        if after is not None:
            return float(min(after, self.max_s))
        ceiling = min(self.max_s, self.initial_s * 2 ** (state.attempt_number - 1))
        return random.uniform(ceiling / 2, ceiling)
