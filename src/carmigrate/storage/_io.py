"""Stream plumbing shared by the backends: chunking, digests, checked readers."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, BinaryIO, Final

from carmigrate.digests import MultiHasher, algorithm_names, normalize_digests
from carmigrate.errors import ChecksumMismatch, SizeMismatch, StorageError

if TYPE_CHECKING:
    from carmigrate.storage._base import BufferLike, WriteData

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "SUPPORTED_CHECKSUMS",
    "CheckedRangeReader",
    "Digests",
    "check_range",
    "clip_range",
    "iter_chunks",
    "normalize_checksums",
    "open_checked",
    "size_mismatch",
    "verify_checksums",
]

DEFAULT_CHUNK_SIZE: Final = 1024 * 1024
"""Chunk size for streaming copies (1 MiB)."""

SUPPORTED_CHECKSUMS: Final = algorithm_names()
"""Algorithms accepted in ``write(checksums=...)``: every name in the digest
registry ([carmigrate.digests][]) at import time."""


def normalize_checksums(checksums: Mapping[str, str] | None) -> dict[str, str]:
    """Check the ``checksums`` argument of ``write`` and lower-case it.

    For backend authors: call it first in ``write``, so that bad arguments
    fail before anything is written.

    Args:
        checksums: Expected digests by algorithm name (any spelling the
            registry accepts, e.g. ``"SHA-256"``), as hex.

    Returns:
        A new dict: registry names (see [carmigrate.digests][]) to lowercase
        hex digests (empty for ``None``).

    Raises:
        ValueError: An unknown algorithm, or a digest that is not hex of the
            algorithm's length.
    """
    return normalize_digests(checksums)


Digests = MultiHasher
"""Incremental digests of several algorithms over the same bytes (the registry's
[MultiHasher][carmigrate.digests.MultiHasher])."""


def verify_checksums(
    expected: Mapping[str, str], actual: Mapping[str, str], *, url: str, key: str
) -> None:
    """Raise ``ChecksumMismatch`` if any expected digest differs from the actual one."""
    for algo, want in sorted(expected.items()):
        got = actual.get(algo)
        if got != want:
            raise ChecksumMismatch(
                f"{url}: checksum mismatch for {key!r}: {algo} expected {want}, "
                f"got {got}; nothing was written",
                key=key,
                algorithm=algo,
                expected=want,
                actual=got,
            )


def size_mismatch(url: str, key: str, declared: int, actual: int) -> SizeMismatch:
    """The error for a source whose length differs from the declared size."""
    return SizeMismatch(
        f"{url}: {key!r} was declared as {declared} bytes but the source gave "
        f"{actual}{'+' if actual > declared else ''}; nothing was written",
        key=key,
        declared=declared,
        actual=actual,
    )


def iter_chunks(
    data: WriteData, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> Iterator[BufferLike]:
    """Yield the bytes of ``data`` in chunks, never holding a stream whole.

    For backend authors: the one way to consume the
    [WriteData][carmigrate.storage.WriteData] given to ``write``. Bytes-like
    values are sliced (no copy); readable objects are read with
    ``read(chunk_size)`` until ``b""``; other iterables are passed through
    (empty chunks dropped). Errors raised by the source propagate unchanged.

    Args:
        data: What ``write`` was given.
        chunk_size: Size of the slices and reads (iterables keep their own
            chunk sizes).

    Yields:
        Non-empty bytes-like chunks, in order.

    Raises:
        TypeError: ``data`` is none of these, or an iterable yields something
            that is not bytes-like.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        view = memoryview(data).cast("B")
        for off in range(0, len(view), chunk_size):
            yield view[off : off + chunk_size]
        return
    read = getattr(data, "read", None)
    if callable(read):
        chunk: object = read(chunk_size)
        while chunk:
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise TypeError(
                    f"read() returned {type(chunk).__name__}, expected bytes "
                    "(open the file in binary mode)"
                )
            yield chunk
            chunk = read(chunk_size)
        return
    anything: object = data
    if isinstance(anything, str) or not isinstance(anything, Iterable):
        raise TypeError(
            f"cannot write {type(anything).__name__}: pass bytes, a binary stream "
            "or an iterable of bytes"
        )
    item: object
    for item in anything:
        if not isinstance(item, (bytes, bytearray, memoryview)):
            raise TypeError(f"data yielded {type(item).__name__}, expected bytes")
        if len(item):
            yield item


def check_range(start: int, end: int | None) -> None:
    """Reject negative or reversed ranges.

    Raises:
        ValueError: ``start < 0`` or ``end < start``.
    """
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if end is not None and end < start:
        raise ValueError(f"end ({end}) must be >= start ({start})")


def clip_range(start: int, end: int | None, size: int) -> tuple[int, int]:
    """Clip ``[start, end)`` to an object of ``size`` bytes, slice-style."""
    stop = size if end is None else min(end, size)
    begin = min(start, size)
    return begin, max(begin, stop)


class CheckedRangeReader(io.RawIOBase):
    """A raw reader that delivers exactly ``length`` bytes or raises.

    ``fill(buffer)`` reads into ``buffer`` and returns the count (``0`` at the
    source's end). If the source ends before ``length`` bytes, ``readinto``
    raises a transient ``StorageError`` naming the key and the offsets: short
    data never passes for a complete read. Errors raised by ``fill`` (already
    translated by the backend) propagate. ``on_close`` runs once on close.

    State: the count of bytes delivered so far.
    """

    def __init__(
        self,
        fill: Callable[[memoryview], int],
        *,
        length: int,
        url: str,
        key: str,
        offset: int = 0,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self._fill = fill
        self._length = length
        self._done = 0
        self._url = url
        self._key = key
        self._offset = offset
        self._on_close = on_close

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        """Read up to ``len(buffer)`` bytes of the range; ``0`` at its end."""
        remaining = self._length - self._done
        if remaining <= 0:
            return 0
        view = memoryview(buffer).cast("B")
        want = min(len(view), remaining)
        if want == 0:
            return 0
        n = self._fill(view[:want])
        if n <= 0:
            raise StorageError(
                f"{self._url}: read of {self._key!r} ended early, at byte "
                f"{self._offset + self._done} of the range "
                f"[{self._offset}, {self._offset + self._length})",
                key=self._key,
                transient=True,
            )
        self._done += n
        return n

    def close(self) -> None:
        if not self.closed:
            try:
                if self._on_close is not None:
                    self._on_close()
            finally:
                super().close()


def open_checked(raw: io.RawIOBase, buffer_size: int = 256 * 1024) -> BinaryIO:
    """Wrap a raw reader in a buffered binary stream."""
    return io.BufferedReader(raw, buffer_size=buffer_size)
