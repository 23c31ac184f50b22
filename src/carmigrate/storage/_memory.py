"""MemoryStore: the reference backend, held in a dict."""

from __future__ import annotations

import datetime
import hashlib
import io
import threading
from typing import TYPE_CHECKING, BinaryIO, final

import attrs

from carmigrate.digests import algorithm
from carmigrate.errors import ObjectExists, ObjectNotFound, StorageError
from carmigrate.storage._base import (
    Capabilities,
    ObjectInfo,
    Store,
    WriteData,
    derive_capabilities,
)
from carmigrate.storage._io import (
    check_range,
    clip_range,
    iter_chunks,
    normalize_checksums,
    size_mismatch,
    verify_checksums,
)
from carmigrate.storage._keys import (
    DEFAULT_MAX_KEY_LENGTH,
    validate_key,
    validate_prefix,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

__all__ = ["MemoryStore"]


@attrs.frozen
class _Entry:
    data: bytes
    info: ObjectInfo


@final
class MemoryStore:
    """A store held in memory: the reference backend for tests and dry runs.

    Every object is kept as ``bytes`` with its MD5 and SHA-256, computed at
    write time, so ``stat`` reports both. Writes are atomic and
    ``if_absent`` is race-free (one lock guards the dict). Server-side copy
    works between objects of the same instance. Nothing is shared between
    instances, even with the same name.

    State: the objects, guarded by a lock; safe to use from several threads.

    Args:
        name: Shown in ``url`` (``memory://name``); has no other meaning.
    """

    def __init__(self, name: str = "") -> None:
        self._name = name
        self._objects: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._capabilities = derive_capabilities(
            Capabilities(
                sorted_listing=True,
                atomic_write=True,
                conditional_write=True,
                native_checksums=frozenset({"md5", "sha256"}),
                user_metadata=True,
                max_key_length=DEFAULT_MAX_KEY_LENGTH,
            ),
            self,
        )

    def __repr__(self) -> str:
        return f"MemoryStore({self._name!r})"

    @property
    def url(self) -> str:
        """``memory://`` followed by the store's name."""
        return f"memory://{self._name}"

    @property
    def capabilities(self) -> Capabilities:
        """Sorted listing, atomic conditional writes, MD5 and SHA-256, metadata,
        server-side copy within the store, keys of at most 1,024 bytes.
        """  # noqa: D205
        return self._capabilities

    def _get(self, key: str) -> _Entry:
        validate_key(key)
        with self._lock:
            entry = self._objects.get(key)
        if entry is None:
            raise ObjectNotFound(f"{self.url}: no object {key!r}", key=key)
        return entry

    def stat(self, key: str) -> ObjectInfo:
        """Describe an object (see [Store.stat][carmigrate.storage.Store.stat])."""
        return self._get(key).info

    def open_read(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> BinaryIO:
        """Open a range of an object (see [Store.open_read][carmigrate.storage.Store.open_read])."""
        check_range(start, end)
        data = self._get(key).data
        begin, stop = clip_range(start, end, len(data))
        return io.BytesIO(data[begin:stop])

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
        """Store an object atomically (see [Store.write][carmigrate.storage.Store.write])."""
        validate_key(key)
        expected = normalize_checksums(checksums)
        if if_absent:
            with self._lock:
                if key in self._objects:
                    raise ObjectExists(f"{self.url}: {key!r} already exists", key=key)
        buf = bytearray()
        for chunk in iter_chunks(data):
            buf += chunk
        if size is not None and len(buf) != size:
            raise size_mismatch(self.url, key, size, len(buf))
        body = bytes(buf)
        del buf
        digests = {
            "md5": hashlib.md5(body, usedforsecurity=False).hexdigest(),
            "sha256": hashlib.sha256(body).hexdigest(),
        }
        for algo in expected:
            if algo not in digests:
                digests[algo] = algorithm(algo).digest(body)
        verify_checksums(expected, digests, url=self.url, key=key)
        info = ObjectInfo(
            key=key,
            size=len(body),
            mtime=datetime.datetime.now(datetime.UTC),
            etag=digests["md5"],
            checksums={a: digests[a] for a in ("md5", "sha256")},
            metadata=dict(metadata or {}),
        )
        with self._lock:
            if if_absent and key in self._objects:
                raise ObjectExists(f"{self.url}: {key!r} already exists", key=key)
            self._objects[key] = _Entry(body, info)
        return attrs.evolve(info, checksums={**info.checksums, **digests})

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects under ``prefix`` in key order, as of the call."""
        validate_prefix(prefix)
        with self._lock:
            infos = [e.info for k, e in self._objects.items() if k.startswith(prefix)]
        infos.sort(key=lambda i: i.key)
        return iter(infos)

    def delete(self, key: str) -> None:
        """Remove an object; a missing key is not an error."""
        validate_key(key)
        with self._lock:
            self._objects.pop(key, None)

    def can_copy_from(self, source: Store) -> bool:
        """True only for this same instance."""
        return source is self

    def copy_from(
        self,
        source: Store,
        source_key: str,
        key: str,
        *,
        if_absent: bool = False,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Copy an object within this store (see [SupportsServerSideCopy][carmigrate.storage.SupportsServerSideCopy])."""
        if source is not self:
            raise StorageError(
                f"{self.url}: server-side copy only works within the same MemoryStore",
                key=key,
            )
        validate_key(key)
        entry = self._get(source_key)
        info = attrs.evolve(
            entry.info,
            key=key,
            mtime=datetime.datetime.now(datetime.UTC),
            metadata=dict(entry.info.metadata if metadata is None else metadata),
        )
        with self._lock:
            if if_absent and key in self._objects:
                raise ObjectExists(f"{self.url}: {key!r} already exists", key=key)
            self._objects[key] = _Entry(entry.data, info)
        return info

    def close(self) -> None:
        """Nothing to release; the objects stay readable."""

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
