"""Helpers built only on the Store Protocol: copy, exists, whole-object I/O, restore.

These are free functions, not Store methods, so a backend stays small. Each
is re-exported from [carmigrate.storage][].
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from carmigrate.errors import ChecksumMismatch, ColdObject, ObjectNotFound, StorageError
from carmigrate.storage._base import (
    BufferLike,
    ObjectInfo,
    Store,
    SupportsRestore,
    SupportsServerSideCopy,
)
from carmigrate.storage._io import SUPPORTED_CHECKSUMS, normalize_checksums
from carmigrate.storage._retry import RetryPolicy

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import BinaryIO

__all__ = [
    "copy_object",
    "exists",
    "read_bytes",
    "restore_object",
    "write_bytes",
]


def exists(store: Store, key: str) -> bool:
    """Whether an object exists under ``key`` (one ``stat``).

    Raises:
        InvalidKey: The key is not acceptable to the store.
        StorageError: The backend failed (a missing object is ``False``).
    """
    try:
        store.stat(key)
    except ObjectNotFound:
        return False
    return True


def read_bytes(
    store: Store, key: str, *, start: int = 0, end: int | None = None
) -> bytes:
    """Read ``[start, end)`` of an object into memory.

    Never returns short data: a read cut short raises.

    Raises:
        ObjectNotFound: No object has this key.
        ColdObject: The object must be restored first.
        StorageError: The backend failed or the read was cut short.
    """
    with store.open_read(key, start=start, end=end) as f:
        return f.read()


def write_bytes(
    store: Store,
    key: str,
    data: BufferLike,
    *,
    if_absent: bool = False,
    checksums: Mapping[str, str] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> ObjectInfo:
    """Write ``data`` as one object (``store.write`` with ``size`` set).

    Raises:
        ObjectExists: ``if_absent`` and the key holds an object.
        StorageError: See [Store.write][carmigrate.storage.Store.write];
            nothing is visible after a failure.
    """
    return store.write(
        key,
        data,
        size=len(memoryview(data).cast("B")),
        if_absent=if_absent,
        checksums=checksums,
        metadata=metadata,
    )


def _expected(
    info: ObjectInfo, checksums: Mapping[str, str] | None, *, verify: bool
) -> dict[str, str]:
    expected = normalize_checksums(checksums)
    if not verify:
        return expected
    for algo, digest in info.checksums.items():
        if algo not in SUPPORTED_CHECKSUMS:
            continue
        if algo in expected and expected[algo] != digest.lower():
            raise ChecksumMismatch(
                f"{info.key!r}: the source reports {algo} {digest}, but "
                f"{expected[algo]} was expected; nothing was copied",
                key=info.key,
                algorithm=algo,
                expected=expected[algo],
                actual=digest.lower(),
            )
        expected.setdefault(algo, digest.lower())
    return expected


def copy_object(
    source: Store,
    source_key: str,
    destination: Store,
    key: str | None = None,
    *,
    if_absent: bool = False,
    checksums: Mapping[str, str] | None = None,
    metadata: Mapping[str, str] | None = None,
    verify: bool = True,
    server_side: bool | None = None,
    retry: RetryPolicy | None = None,
) -> ObjectInfo:
    """Copy one object between (or within) stores.

    The copy happens on the server when the destination supports it for this
    source ([SupportsServerSideCopy][carmigrate.storage.SupportsServerSideCopy],
    for example two S3 stores on the same endpoint) and every expected
    checksum can be checked against the source's ``stat``; otherwise the
    bytes stream through this process in bounded memory, and the destination
    checks them before the object becomes visible.

    With ``verify``, the copy is also held to every digest the source
    vouches for (its ``stat().checksums``, such as an S3 single-part MD5).

    Transient failures (throttling, a connection cut mid-read) are retried
    from the start with ``retry``; since writes are atomic, a failed attempt
    leaves nothing at the destination. A checksum or size mismatch is
    permanent and not retried. After an
    ambiguous failure (the write completed but its answer was lost), a retry
    with ``if_absent`` can raise ``ObjectExists``.

    Args:
        source: Where to read.
        source_key: The object to copy.
        destination: Where to write.
        key: Destination key (default: ``source_key``).
        if_absent: Fail with ``ObjectExists`` rather than replace.
        checksums: Digests the copy must match (see ``Store.write``).
        metadata: User metadata for the copy; default: the source's, when the
            destination keeps metadata (otherwise it is dropped).
        verify: Also hold the copy to the source's own checksums.
        server_side: ``None`` decides automatically, ``False`` always streams,
            ``True`` requires a server-side copy.
        retry: Retry policy for transient errors (default ``RetryPolicy()``).

    Returns:
        The destination's ``ObjectInfo``.

    Raises:
        ObjectNotFound: The source object does not exist.
        ColdObject: The source object must be restored first.
        ObjectExists: ``if_absent`` and the destination key holds an object.
        StorageError: A checksum or size mismatch, ``server_side=True``
            without support, or a backend failure that outlasted the retries;
            nothing partial is visible at the destination.
    """
    dest_key = source_key if key is None else key
    policy = retry if retry is not None else RetryPolicy()
    can_server_copy = isinstance(destination, SupportsServerSideCopy) and (
        destination.can_copy_from(source)
    )
    if server_side and not can_server_copy:
        raise StorageError(
            f"{destination.url}: cannot copy on the server from {source.url}",
            key=dest_key,
        )

    def attempt() -> ObjectInfo:
        info = source.stat(source_key)
        if info.cold:
            raise ColdObject(
                f"{source.url}: {source_key!r} is in storage class {info.storage_class}; "
                "restore it first (see restore_object)",
                key=source_key,
                storage_class=info.storage_class,
                restore_in_progress=bool(info.restore and info.restore.in_progress),
            )
        expected = _expected(info, checksums, verify=verify)
        if (
            can_server_copy
            and server_side is not False
            and set(expected) <= set(info.checksums)
        ):
            assert isinstance(destination, SupportsServerSideCopy)
            copied = destination.copy_from(
                source, source_key, dest_key, if_absent=if_absent, metadata=metadata
            )
            if copied.size != info.size:
                raise StorageError(
                    f"{destination.url}: server-side copy of {source_key!r} gave "
                    f"{copied.size} bytes, the source has {info.size}",
                    key=dest_key,
                    transient=True,
                )
            return copied
        meta = metadata
        if meta is None and destination.capabilities.user_metadata and info.metadata:
            meta = info.metadata
        stream: BinaryIO
        with source.open_read(source_key) as stream:
            return destination.write(
                dest_key,
                stream,
                size=info.size,
                if_absent=if_absent,
                checksums=expected,
                metadata=meta,
            )

    return policy.call(attempt)


def restore_object(
    store: Store,
    key: str,
    *,
    days: int = 1,
    tier: str = "Standard",
    timeout: float | None = None,
    poll_interval: float = 60.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ObjectInfo:
    """Make a cold object readable: request a restore and wait for it.

    Returns at once if the object is not cold. Otherwise requests a restore
    (unless one is already in progress), then polls ``stat`` every
    ``poll_interval`` seconds until the object is readable. A restore from
    GLACIER takes minutes to hours, DEEP_ARCHIVE up to 48 hours: inject
    ``clock`` and ``sleep`` in tests.

    Args:
        store: The store holding the object.
        key: The object.
        days: How long the restored copy stays readable.
        tier: Retrieval tier (S3: ``Expedited``, ``Standard``, ``Bulk``).
        timeout: Give up after this many seconds (``None``: wait forever).
        poll_interval: Seconds between polls.
        clock: Monotonic clock, in seconds.
        sleep: Called between polls.

    Returns:
        The object's ``ObjectInfo`` once readable; ``restore.expiry`` says
        until when, if the backend reports it.

    Raises:
        ObjectNotFound: No object has this key.
        ColdObject: The store cannot restore (no
            [SupportsRestore][carmigrate.storage.SupportsRestore]), or the
            timeout passed; ``restore_in_progress`` tells which. The restore
            keeps going on the server after a timeout.
        StorageError: The backend failed.
    """
    info = store.stat(key)
    if not info.cold:
        return info
    if not isinstance(store, SupportsRestore):
        raise ColdObject(
            f"{store.url}: {key!r} is in storage class {info.storage_class} and the "
            "store cannot restore objects",
            key=key,
            storage_class=info.storage_class,
        )
    if info.restore is None or not info.restore.in_progress:
        store.request_restore(key, days=days, tier=tier)
    started = clock()
    while True:
        info = store.stat(key)
        if not info.cold:
            return info
        if timeout is not None and clock() - started >= timeout:
            raise ColdObject(
                f"{store.url}: the restore of {key!r} did not finish within {timeout} s; "
                "it continues on the server",
                key=key,
                storage_class=info.storage_class,
                restore_in_progress=True,
            )
        sleep(poll_interval)
