"""The new providers of a bag backfill: named stores, and the names of bags and their members.

The recipe's members are named by destination key, so the same object at two
providers needs two names: a [ReplicaStore][carmigrate.recipes.ReplicaStore]
puts the provider's name in front of every key of the store it wraps.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

import attrs

from carmigrate.errors import PlanError
from carmigrate.storage import (
    ObjectInfo,
    Store,
    SupportsServerSideCopy,
    SupportsUploadCleanup,
    UploadCleanup,
    is_local_url,
    open_store,
)
from carmigrate.storage.lowlevel import derive_capabilities

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping
    from typing import BinaryIO

    from carmigrate.recipes._bag_register import StorageManifest
    from carmigrate.storage import Capabilities, WriteData

__all__ = ["ReplicaStore"]

_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def unit_name(m: StorageManifest) -> str:
    """The work ledger's unit of a bag version: ``bag:<space>/<id>/v<version>``."""
    return f"bag:{m.bag_id}"


def member_key(provider: str, m: StorageManifest, path: str) -> str:
    """The member of a file of a bag version at a provider: ``<provider>/<key there>``."""
    return f"{provider}/{m.location.prefix}/{path}"


class ReplicaStore:
    """A new provider's store, named: its keys are ``<name>/<key of the store>``.

    The recipe's members are named by destination key, so the same object
    at two providers must have two names: this store gives the provider's
    name as the first segment of every key and forwards the rest to the
    store it wraps (server-side copies and pending-upload cleanup included,
    when the wrapped store has them).

    State: the wrapped store (closed by ``close``).

    Args:
        name: The provider's name (letters, digits, ``_``, ``.``, ``-``;
            not ``primary``).
        store: Its store (or URL, opened here with ``open_store``; a local
            folder that does not exist is made).

    Raises:
        PlanError: A bad name.
        StorageError: The URL cannot be opened.
    """

    def __init__(self, name: str, store: Store | str) -> None:
        if not _NAME.match(name) or name == "primary":
            raise PlanError(f"bad provider name {name!r} (letters, digits, _ . -)")
        self.name = name
        if isinstance(store, str):  # a destination: a local folder is made
            store = open_store(
                store, **({"create": True} if is_local_url(store) else {})
            )
        self.inner: Store = store
        self._prefix = f"{name}/"

    def __repr__(self) -> str:
        return f"ReplicaStore({self.name!r}, {self.inner!r})"

    @property
    def url(self) -> str:
        """The wrapped store's URL with ``#replica=<name>``."""
        return f"{self.inner.url}#replica={self.name}"

    @property
    def capabilities(self) -> Capabilities:
        """The wrapped store's."""
        return derive_capabilities(self.inner.capabilities, self)

    def _in(self, key: str) -> str:
        if not key.startswith(self._prefix):
            raise PlanError(f"{key!r} is not a key of provider {self.name!r}")
        return key[len(self._prefix) :]

    def _out(self, info: ObjectInfo) -> ObjectInfo:
        return attrs.evolve(info, key=self._prefix + info.key)

    def stat(self, key: str) -> ObjectInfo:
        """See [Store.stat][carmigrate.storage.Store.stat]."""
        return self._out(self.inner.stat(self._in(key)))

    def open_read(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> BinaryIO:
        """See [Store.open_read][carmigrate.storage.Store.open_read]."""
        return self.inner.open_read(self._in(key), start=start, end=end)

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
        """See [Store.write][carmigrate.storage.Store.write]."""
        info = self.inner.write(
            self._in(key),
            data,
            size=size,
            if_absent=if_absent,
            checksums=checksums,
            metadata=metadata,
        )
        return self._out(info)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """See [Store.list][carmigrate.storage.Store.list] (keys outside the name: none)."""
        if not (prefix + "/").startswith(self._prefix) and not self._prefix.startswith(
            prefix
        ):
            return iter(())
        inner = prefix[len(self._prefix) :] if prefix.startswith(self._prefix) else ""
        return (self._out(i) for i in self.inner.list(inner))

    def delete(self, key: str) -> None:
        """See [Store.delete][carmigrate.storage.Store.delete]."""
        self.inner.delete(self._in(key))

    def can_copy_from(self, source: Store) -> bool:
        """Whether the wrapped store copies from ``source`` on the server."""
        inner = self.inner
        return isinstance(inner, SupportsServerSideCopy) and inner.can_copy_from(source)

    def copy_from(
        self,
        source: Store,
        source_key: str,
        key: str,
        *,
        if_absent: bool = False,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """See [SupportsServerSideCopy][carmigrate.storage.SupportsServerSideCopy]."""
        inner = self.inner
        if not isinstance(inner, SupportsServerSideCopy):
            raise PlanError(f"{inner.url} cannot copy on the server")
        info = inner.copy_from(
            source, source_key, self._in(key), if_absent=if_absent, metadata=metadata
        )
        return self._out(info)

    def abort_uploads(
        self, keys: Iterable[str], *, keep_resumable: Iterable[str] = ()
    ) -> UploadCleanup:
        """See [SupportsUploadCleanup][carmigrate.storage.SupportsUploadCleanup]."""
        inner = self.inner
        if not isinstance(inner, SupportsUploadCleanup):
            return UploadCleanup()
        done = inner.abort_uploads(
            (self._in(k) for k in keys),
            keep_resumable=(self._in(k) for k in keep_resumable),
        )

        def named(ups: Iterable[Any]) -> tuple[Any, ...]:
            return tuple(attrs.evolve(u, key=self._prefix + u.key) for u in ups)

        return UploadCleanup(
            aborted=named(done.aborted),
            kept=named(done.kept),
            failed=tuple(
                (attrs.evolve(u, key=self._prefix + u.key), why)
                for u, why in done.failed
            ),
        )

    def close(self) -> None:
        """Close the wrapped store."""
        self.inner.close()


def target(value: Any) -> ReplicaStore:
    """A provider from ``NAME=URL``, a ``(name, store)`` pair or itself."""
    if isinstance(value, ReplicaStore):
        return value
    if isinstance(value, str):
        name, sep, url = value.partition("=")
        if not sep or not url:
            raise PlanError(f"--to {value!r}: give NAME=URL")
        return ReplicaStore(name, url)
    name, store = value
    return ReplicaStore(name, store)


def parse_targets(values: Iterable[Any]) -> tuple[ReplicaStore, ...]:
    """The providers of the options (``PlanError``: a name given twice)."""
    out = tuple(target(v) for v in values)
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise PlanError(f"a provider is named twice: {names}")
    return out
