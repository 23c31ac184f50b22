"""FlakyStore: a fault injector that wraps any Store."""

from __future__ import annotations

import io
import random
import threading
import time
from typing import TYPE_CHECKING, BinaryIO, Final, Literal, TypeVar, final

from carmigrate.errors import BackendUnavailable, StorageError
from carmigrate.storage import (
    SupportsPresignedUrls,
    SupportsRestore,
    SupportsServerSideCopy,
    SupportsTemporaryCleanup,
)
from carmigrate.storage.lowlevel import StoreWrapper

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from carmigrate.storage import Store

__all__ = ["FlakyStore"]

_T = TypeVar("_T")

STORE_METHODS: Final = ("stat", "open_read", "write", "list", "delete")

OPTIONAL_METHODS: Final[dict[type, str]] = {
    SupportsServerSideCopy: "copy_from",
    SupportsRestore: "request_restore",
    SupportsPresignedUrls: "presign",
    SupportsTemporaryCleanup: "remove_temporary",
}
"""The method of each optional Protocol that can be made to fail."""


class _BreakingReader(io.RawIOBase):
    """Delivers ``limit`` bytes of ``inner``, then raises (a dropped connection)."""

    def __init__(
        self, inner: BinaryIO, limit: int, make_error: Callable[[int], StorageError]
    ):
        super().__init__()
        self._inner = inner
        self._left = limit
        self._done = 0
        self._make_error = make_error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        if not len(view):
            return 0
        if self._left <= 0:
            # only an error if the real stream had more to give
            if self._inner.read(1):
                raise self._make_error(self._done)
            return 0
        data = self._inner.read(min(len(view), self._left))
        n = len(data)
        view[:n] = data
        self._left -= n
        self._done += n
        return n

    def close(self) -> None:
        if not self.closed:
            try:
                self._inner.close()
            finally:
                super().close()


@final
class FlakyStore(StoreWrapper):
    """Wrap a store and make some of its calls fail, slowly or in the middle.

    The wrapper implements exactly the optional Protocols of the wrapped
    store (server-side copy, restore, presigned URLs, temporary cleanup),
    forwarding them, and its ``capabilities`` are the wrapped store's with
    those flags derived from what it implements (see
    [StoreWrapper][carmigrate.storage.lowlevel.StoreWrapper]): a FlakyStore
    around a cold-tier S3 store restores, one around a LocalStore does not.

    Calls to the five Store methods (or those named in ``methods``, which
    may also name ``copy_from``, ``request_restore``, ``presign`` and
    ``remove_temporary`` when the wrapped store has them) are counted from
    1. A counted call fails if its number is in ``fail_calls``, or with
    probability ``probability`` (drawn from a ``random.Random(seed)``, so
    runs repeat). A failing call raises ``BackendUnavailable`` when
    ``transient`` is true, else a permanent ``StorageError``:

    - ``when="before"`` (default): the error is raised instead of calling
      the wrapped store, so nothing happens;
    - ``when="after"``: the wrapped store is called and then the error is
      raised, as when an answer is lost on the way back (a ``write`` has
      then happened although the caller sees an error).

    With ``truncate_reads_at=n``, a failing ``open_read`` does not raise:
    it returns a stream that delivers ``n`` bytes and then raises the error
    on the next read, like a connection cut mid-body. It never returns short
    data silently. ``latency`` seconds are slept (with ``sleep``) before
    every forwarded call, counted or not (``close`` and ``can_copy_from``
    excepted).

    State: the call counter, the random generator and a log of
    ``(call number, method, key, outcome)``, guarded by a lock (thread-safe).

    Args:
        store: The store to wrap.
        fail_calls: Numbers (1-based) of the counted calls that fail.
        probability: Chance that any other counted call fails.
        seed: Seed of the random generator.
        transient: Raise transient errors (``BackendUnavailable``) or
            permanent ones (``StorageError``).
        methods: Which methods are counted and may fail (default: the five
            Store methods).
        when: Fail ``"before"`` or ``"after"`` calling the wrapped store.
        truncate_reads_at: Turn failing ``open_read`` calls into streams that
            break after this many bytes.
        latency: Seconds to sleep before every call.
        sleep: The sleep function (inject a fake to keep tests fast).

    Raises:
        ValueError: ``methods`` names a method that is not a Store method or
            an optional method of the wrapped store, ``probability`` is
            outside [0, 1], or ``when`` is neither ``"before"`` nor
            ``"after"``.
    """

    def __init__(
        self,
        store: Store,
        /,
        *,
        fail_calls: Iterable[int] = (),
        probability: float = 0.0,
        seed: int = 0,
        transient: bool = True,
        methods: Iterable[str] | None = None,
        when: Literal["before", "after"] = "before",
        truncate_reads_at: int | None = None,
        latency: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(store)
        choices = STORE_METHODS + tuple(
            method
            for protocol, method in OPTIONAL_METHODS.items()
            if isinstance(self, protocol)
        )
        chosen = tuple(STORE_METHODS if methods is None else methods)
        unknown = set(chosen) - set(choices)
        if unknown:
            raise ValueError(
                f"unknown methods {sorted(unknown)}; choose from {choices} "
                f"(optional methods only where {store!r} has them)"
            )
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {probability}")
        if when not in ("before", "after"):
            raise ValueError(f"when must be 'before' or 'after', not {when!r}")
        self._fail_calls = frozenset(fail_calls)
        self._probability = probability
        self._rng = random.Random(seed)  # noqa: S311 - fault injection, not crypto
        self._transient = transient
        self._methods = frozenset(chosen)
        self._when = when
        self._truncate_at = truncate_reads_at
        self._latency = latency
        self._sleep = sleep
        self._lock = threading.Lock()
        self._calls = 0
        self._failures = 0
        self._log: list[tuple[int, str, str, str]] = []

    @property
    def calls(self) -> int:
        """How many counted calls were made."""
        with self._lock:
            return self._calls

    @property
    def failures(self) -> int:
        """How many faults were injected."""
        with self._lock:
            return self._failures

    @property
    def log(self) -> list[tuple[int, str, str, str]]:
        """``(call number, method, key, outcome)`` per counted call, in order.

        ``outcome`` is ``"ok"``, ``"fail"`` or ``"truncate"``; ``"ok"`` is
        recorded before the wrapped call, whose own errors are not logged.
        ``key`` is the prefix for ``list``, the destination key for
        ``copy_from`` and ``""`` for ``remove_temporary``.
        """
        with self._lock:
            return list(self._log)

    def _decide(self, method: str, key: str) -> tuple[int, bool]:
        if self._latency:
            self._sleep(self._latency)
        if method not in self._methods:
            return 0, False
        with self._lock:
            self._calls += 1
            number = self._calls
            fail = number in self._fail_calls or (
                self._probability > 0 and self._rng.random() < self._probability
            )
            if fail:
                self._failures += 1
            truncate = fail and method == "open_read" and self._truncate_at is not None
            outcome = "truncate" if truncate else ("fail" if fail else "ok")
            self._log.append((number, method, key, outcome))
        return number, fail

    def _error(
        self, number: int, method: str, key: str, detail: str = ""
    ) -> StorageError:
        message = (
            f"{self.url}: injected fault in call {number} ({method} {key!r}){detail}"
        )
        if self._transient:
            return BackendUnavailable(message, key=key)
        return StorageError(message, key=key, transient=False)

    def forward(self, method: str, key: str, call: Callable[[], _T]) -> _T:
        """Count the call and fail it, before or after ``call``, if its turn came."""
        number, fail = self._decide(method, key)
        if fail and self._when == "before":
            raise self._error(number, method, key)
        result = call()
        if fail:
            close = getattr(result, "close", None)
            if callable(close):
                close()
            raise self._error(number, method, key)
        return result

    def open_read(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> BinaryIO:
        """The wrapped ``open_read``, possibly failing or breaking mid-stream."""
        number, fail = self._decide("open_read", key)
        if fail and self._truncate_at is not None:
            inner = self.inner.open_read(key, start=start, end=end)
            return io.BufferedReader(
                _BreakingReader(
                    inner,
                    self._truncate_at,
                    lambda done: self._error(
                        number, "open_read", key, f": connection cut after {done} bytes"
                    ),
                )
            )
        if fail and self._when == "before":
            raise self._error(number, "open_read", key)
        stream = self.inner.open_read(key, start=start, end=end)
        if fail:
            stream.close()
            raise self._error(number, "open_read", key)
        return stream
