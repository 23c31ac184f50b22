"""Token buckets for the run limits."""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    """A token bucket: ``rate`` tokens per second, at most ``capacity`` saved up.

    A request for more tokens than the capacity goes through once the bucket
    is full and leaves it in debt, so one large object is never blocked for
    ever, and the average rate still holds.

    State: the tokens and the time they were last counted.
    """

    def __init__(
        self,
        rate: float,
        capacity: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = rate
        self.capacity = rate if capacity is None else capacity
        self._clock = clock
        self._tokens = self.capacity
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(
            self.capacity, self._tokens + (now - self._stamp) * self.rate
        )
        self._stamp = now

    def wait_time(self, n: float) -> float:
        """Seconds until ``n`` tokens may be taken (0 if now)."""
        self._refill()
        need = min(n, self.capacity)
        if self._tokens >= need:
            return 0.0
        return (need - self._tokens) / self.rate

    def take(self, n: float) -> None:
        """Take ``n`` tokens (the bucket may go into debt)."""
        self._refill()
        self._tokens -= n
