"""Per-tenant pacing: token buckets per tenant, applied through a store wrapper.

The engine's [Limits][carmigrate.migrate.Limits] are global: one rate for
the whole run. A backend migration of many users also needs each user held
to a rate of their own, so one large account cannot turn the run into a
spike on its backend. The recipes do that in two parts:

- the plan interleaves tenants (round robin, each tenant's items in listing
  order), so the engine's global order already shares the run fairly;
- the source store is wrapped: before a worker touches an item's source
  (its ``stat``, the first call of every attempt), it waits for its tenant's
  token buckets.

A worker waiting for its tenant's tokens holds one slot of
``Limits.concurrency``. Interleaving keeps that rare: a tenant only waits
when its share of the run is above its rate, typically at the tail when
only its items are left, and then the run goes at that tenant's rate,
which is the point. Pacing needs in-process workers (the default thread
pool): stores opened by remote workers are not wrapped.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, BinaryIO

import attrs

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from carmigrate.storage import Capabilities, ObjectInfo, Store, WriteData

__all__ = ["TenantLimits", "TenantPacer"]


def _opt_positive(
    instance: object, attribute: attrs.Attribute[Any], value: float | None
) -> None:
    if value is not None and not value > 0:
        msg = f"{attribute.name} must be positive, got {value}"
        raise ValueError(msg)


def _opt_float(value: float | None) -> float | None:
    return None if value is None else float(value)


@attrs.frozen(kw_only=True)
class TenantLimits:
    """Rates every tenant is held to, on top of the run's global limits.

    Each tenant gets its own token buckets, holding at most one second's
    worth (a single item larger than that goes once the bucket is full and
    leaves it in debt, so the average rate holds).

    Attributes:
        items_per_second: Items a tenant may start per second, if limited.
        bytes_per_second: Bytes (by object size) a tenant may start per
            second, if limited.
    """

    items_per_second: float | None = attrs.field(
        default=None, converter=_opt_float, validator=_opt_positive
    )
    bytes_per_second: float | None = attrs.field(
        default=None, converter=_opt_float, validator=_opt_positive
    )

    @property
    def active(self) -> bool:
        """Whether any rate is set."""
        return self.items_per_second is not None or self.bytes_per_second is not None


class _Bucket:
    """``rate`` tokens per second, at most ``rate`` saved up; may go into debt."""

    __slots__ = ("_stamp", "_tokens", "rate")

    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self._tokens = rate
        self._stamp = now

    def wait(self, n: float, now: float) -> float:
        self._tokens = min(self.rate, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        need = min(n, self.rate)
        return 0.0 if self._tokens >= need else (need - self._tokens) / self.rate

    def take(self, n: float) -> None:
        self._tokens -= n


class TenantPacer:
    """Token buckets per tenant, shared by every worker thread.

    State: one pair of buckets (items, bytes) per tenant seen, the total time
    each tenant waited, and a lock. Thread-safe.

    Args:
        limits: The per-tenant rates.
        clock: Monotonic clock in seconds (tests inject one).
        sleep: Sleep function (tests inject one).
    """

    def __init__(
        self,
        limits: TenantLimits,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[_Bucket | None, _Bucket | None]] = {}
        self._waited: dict[str, float] = {}

    def acquire(self, tenant: str, nbytes: int) -> float:
        """Wait until ``tenant`` may start an item of ``nbytes`` bytes, then take the tokens.

        Returns:
            The seconds this call waited.
        """
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                items, size = self._buckets.get(tenant) or self._new(tenant, now)
                wait = max(
                    items.wait(1, now) if items is not None else 0.0,
                    size.wait(nbytes, now) if size is not None else 0.0,
                )
                if wait <= 0:
                    if items is not None:
                        items.take(1)
                    if size is not None:
                        size.take(nbytes)
                    if waited:
                        self._waited[tenant] = self._waited.get(tenant, 0.0) + waited
                    return waited
            self._sleep(wait)
            waited += wait

    def _new(self, tenant: str, now: float) -> tuple[_Bucket | None, _Bucket | None]:
        lim = self.limits
        pair = (
            None
            if lim.items_per_second is None
            else _Bucket(lim.items_per_second, now),
            None
            if lim.bytes_per_second is None
            else _Bucket(lim.bytes_per_second, now),
        )
        self._buckets[tenant] = pair
        return pair

    def waited(self) -> dict[str, float]:
        """Seconds each tenant has waited so far (tenants that never waited are left out)."""
        with self._lock:
            return dict(self._waited)


class PacedStore:
    """A store whose ``stat`` of a planned source key first waits for its tenant.

    Everything else is passed through unchanged; ``url`` and
    ``capabilities`` are the wrapped store's, so the engine takes it for the
    plan's source.

    State: the wrapped store, the pacer and the key → (tenant, size) map.
    """

    def __init__(
        self, inner: Store, pacer: TenantPacer, keys: Mapping[str, tuple[str, int]]
    ) -> None:
        self._inner = inner
        self._pacer = pacer
        self._keys = keys

    @property
    def url(self) -> str:
        """The wrapped store's URL."""
        return self._inner.url

    @property
    def capabilities(self) -> Capabilities:
        """The wrapped store's capabilities."""
        return self._inner.capabilities

    def stat(self, key: str) -> ObjectInfo:
        """Wait for the key's tenant (if it is a planned key), then ``stat``."""
        planned = self._keys.get(key)
        if planned is not None:
            self._pacer.acquire(*planned)
        return self._inner.stat(key)

    def open_read(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> BinaryIO:
        """Passed through."""
        return self._inner.open_read(key, start=start, end=end)

    def write(
        self,
        key: str,
        data: WriteData,
        *,
        size: int | None = None,
        if_absent: bool = False,
        checksums: Mapping[str, str] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Passed through."""
        return self._inner.write(
            key,
            data,
            size=size,
            if_absent=if_absent,
            checksums=checksums,
            metadata=metadata,
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Passed through."""
        return self._inner.list(prefix)

    def delete(self, key: str) -> None:
        """Passed through."""
        self._inner.delete(key)

    def close(self) -> None:
        """Does nothing: the wrapped store belongs to the caller."""
