"""Retries with exponential backoff and full jitter."""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, TypeVar

import attrs

from carmigrate.errors import CarmigrateError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["RetryPolicy"]

T = TypeVar("T")


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be >= 1, got {value}")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How often and how patiently to retry transient storage errors.

    Only errors whose ``transient`` attribute is true are retried. The delay
    before retry ``n`` (1-based) is drawn uniformly from
    ``[0, min(max_delay, base_delay * 2 ** (n - 1))]`` ("full jitter"), or is
    exactly that bound when ``jitter`` is false.

    Attributes:
        max_attempts: Total attempts, the first included (1 = no retry).
        base_delay: Upper bound of the first delay, in seconds.
        max_delay: Cap on any single delay, in seconds.
        jitter: Randomise delays (recommended: spreads out throttled clients).
        sleep: Called with each delay; inject a fake in tests.
        rng: Source of jitter; inject a seeded ``random.Random`` for
            reproducible delays.
    """

    max_attempts: int = attrs.field(default=6, validator=_positive)
    base_delay: float = 0.2
    max_delay: float = 20.0
    jitter: bool = True
    sleep: Callable[[float], None] = attrs.field(default=time.sleep, eq=False)
    rng: random.Random = attrs.field(factory=random.Random, eq=False, repr=False)

    def delay(self, retry: int) -> float:
        """The delay in seconds before retry number ``retry`` (1-based)."""
        bound = min(self.max_delay, self.base_delay * (2 ** max(0, retry - 1)))
        return self.rng.uniform(0, bound) if self.jitter else bound

    def call(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` until it returns, retrying transient carmigrate errors.

        Returns:
            What ``fn`` returned.

        Raises:
            CarmigrateError: The last error, once it is permanent or
                ``max_attempts`` is reached. Other exceptions propagate at
                once.
        """
        attempt = 1
        while True:
            try:
                return fn()
            except CarmigrateError as e:
                if not e.transient or attempt >= self.max_attempts:
                    raise
            self.sleep(self.delay(attempt))
            attempt += 1


class VendorPassthrough(Exception):
    """A vendor error a backend wants to inspect before translation (see ``call_translated``)."""

    def __init__(self, code: str, original: BaseException) -> None:
        super().__init__(code)
        self.code = code
        self.original = original


def call_translated(
    policy: RetryPolicy,
    fn: Callable[[], T],
    translate: Callable[[BaseException], CarmigrateError | None],
    code_of: Callable[[BaseException], str | None],
    passthrough: frozenset[str] = frozenset(),
) -> T:
    """Call a vendor SDK's ``fn`` with ``policy``'s retries; a backend's one retry loop.

    Each exception is first given its vendor error code by ``code_of``: a
    code in ``passthrough`` raises ``VendorPassthrough`` at once,
    untranslated, for the caller to handle. Otherwise ``translate`` turns it
    into a carmigrate error (``None``: not the backend's, re-raised as is);
    a transient one is retried until ``policy.max_attempts``.
    """
    attempt = 1
    while True:
        try:
            return fn()
        except Exception as e:
            code = code_of(e)
            if code and code in passthrough:
                raise VendorPassthrough(code, e) from e
            err = translate(e)
            if err is None:
                raise
            if not err.transient or attempt >= policy.max_attempts:
                raise err from e
        policy.sleep(policy.delay(attempt))
        attempt += 1
