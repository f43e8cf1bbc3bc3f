"""Rate control: a token bucket, so a target rate holds on average without bursts."""

from __future__ import annotations

import time
from collections.abc import Callable

from iotpipe.errors import ConfigError


class TokenBucket:
    """``acquire(n)`` blocks until ``n`` tokens are available at ``rate`` tokens/s.

    ``burst`` caps how many unused tokens accumulate while the caller is slow,
    so a pause is not followed by a flood. A request larger than the burst goes
    into debt and waits it off, so any chunk size works.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ConfigError(f"rate {rate} must be > 0 readings/s")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate / 20)
        self._clock = clock
        self._sleep = sleep
        self._tokens = 0.0
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def acquire(self, n: float = 1.0, should_stop: Callable[[], bool] | None = None) -> bool:
        """Take ``n`` tokens, waiting as needed; False if ``should_stop`` said so first."""
        self._refill()
        self._tokens -= n
        while self._tokens < 0:
            if should_stop is not None and should_stop():
                return False
            self._sleep(min(0.05, -self._tokens / self.rate))
            self._refill()
        return True
