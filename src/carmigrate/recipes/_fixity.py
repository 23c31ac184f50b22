"""A fixity cache: digests verified per (location, object version), and replica checks that use it.

A replica whose objects went to a cold tier after they were verified can be
verified again without a restore: the digest read the last time is kept
with the object's version (its ETag), and a ``stat`` (which a cold object
answers) says whether it is still the same object. Any write gives the
object a new ETag, so a write invalidates its entry; the recipe also forgets
the entries of objects it is about to write.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, Final

import attrs

from carmigrate.errors import ObjectNotFound
from carmigrate.storage import read_bytes, write_bytes

if TYPE_CHECKING:
    from collections.abc import Mapping

    from carmigrate.recipes._bag_register import StorageLocation, StorageManifest
    from carmigrate.storage import ObjectInfo, Store

__all__ = ["FixityCache", "ReplicaCheck", "verify_replica"]

_CHUNK: Final = 1 << 20


def _version(info: ObjectInfo) -> str | None:
    """What names this version of an object: its ETag, else its modification time."""
    if info.etag:
        return f"etag:{info.etag}"
    if info.mtime is not None:
        return f"mtime:{info.mtime.isoformat()}"
    return None


class FixityCache:
    """Digests verified per (location, key, object version), as JSON records in a Store.

    A record is ``<sha256 of the location, 16 hex digits>/<key>.json``:
    the location, the key, the version and size of the object that was
    read, and its digests. The version is the object's ETag, or for a store
    without ETags (a local folder) its modification time (every write
    replaces the file, so it changes); an object with neither is never
    cached.

    State: the store (not closed by the cache).

    Args:
        store: Where the records are kept.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def __repr__(self) -> str:
        return f"FixityCache({self.store.url!r})"

    @staticmethod
    def _key(location: str, key: str) -> str:
        return f"{hashlib.sha256(location.encode()).hexdigest()[:16]}/{key}.json"

    def remember(
        self, location: str, info: ObjectInfo, digests: Mapping[str, str]
    ) -> bool:
        """Keep the digests of the object ``info`` describes (read and verified by the caller).

        Args:
            location: The store's URL.
            info: The object's ``stat`` taken *before* it was read (its
                ETag names the version that was read).
            digests: Its digests, by algorithm.

        Returns:
            Whether it was kept (not without an ETag or a modification time).

        Raises:
            StorageError: The cache's store failed.
        """
        version = _version(info)
        if version is None:
            return False
        record = {
            "location": location,
            "key": info.key,
            "version": version,
            "size": info.size,
            "digests": dict(sorted(digests.items())),
        }
        write_bytes(
            self.store, self._key(location, info.key), json.dumps(record).encode()
        )
        return True

    def recall(self, location: str, info: ObjectInfo) -> dict[str, str] | None:
        """The digests kept for this version of the object (``None``: none, or another version).

        Raises:
            StorageError: The cache's store failed.
        """
        version = _version(info)
        if version is None:
            return None
        try:
            record: dict[str, Any] = json.loads(
                read_bytes(self.store, self._key(location, info.key))
            )
        except ObjectNotFound:
            return None
        if (
            record.get("location") != location
            or record.get("key") != info.key
            or record.get("version") != version
            or record.get("size") != info.size
        ):
            return None
        return dict(record.get("digests") or {})

    def forget(self, location: str, key: str) -> None:
        """Drop what is kept for an object (before it is written).

        Raises:
            StorageError: The cache's store failed.
        """
        self.store.delete(self._key(location, key))


@attrs.frozen(kw_only=True)
class ReplicaCheck:
    """What [verify_replica][carmigrate.recipes.verify_replica] found.

    Attributes:
        files: Files checked.
        read: Files read and hashed.
        cached: Files whose version's digest the fixity cache had (not read,
            not restored, even when cold).
        unverifiable: Files that could not be compared: cold and not in the
            cache (a restore is needed), by name.
        failed: Files missing or with another digest, each with why.
    """

    files: int
    read: int
    cached: int
    unverifiable: tuple[str, ...] = ()
    failed: tuple[tuple[str, str], ...] = ()

    @property
    def verified(self) -> bool:
        """Every file was compared with the manifest's digest, and matched."""
        return not self.failed and not self.unverifiable


def verify_replica(
    manifest: StorageManifest,
    store: Store,
    location: StorageLocation,
    fixity: FixityCache | None = None,
) -> ReplicaCheck:
    """Check every file of a bag version at one location against the register's digests.

    Each file is ``stat``-ed; if the fixity cache has the digest of that
    version of the object (same ETag, or modification time, and size), it
    is compared without a read, so cold objects need no restore. Otherwise a readable object is
    read once and hashed with the manifest's algorithm, and the digest kept
    in the cache when it matches. A cold object the cache does not know is
    *unverifiable*, never verified.

    Args:
        manifest: The bag version's storage manifest.
        store: The location's store.
        location: Where the copy is (its ``url`` keys the cache; its
            ``prefix`` is the bag's folder).
        fixity: The cache, if any.

    Returns:
        What was found; ``verified`` only when every file matched.

    Raises:
        StorageError: A store failed (other than a missing object, which is a
            failure of the file).
    """
    read = cached = 0
    cold: list[str] = []
    failed: list[tuple[str, str]] = []
    alg = manifest.algorithm
    for f in manifest.all_files:
        key = f"{location.prefix}/{f.path}"
        try:
            info = store.stat(key)
        except ObjectNotFound:
            failed.append((f.name, f"missing: no {key!r} in {store.url}"))
            continue
        if info.size != f.size:
            failed.append((f.name, f"{info.size} bytes, the manifest says {f.size}"))
            continue
        known = None if fixity is None else fixity.recall(location.url, info)
        if known is not None and alg in known:
            cached += 1
            if known[alg] != f.checksum:
                failed.append(
                    (f.name, f"{alg} {known[alg]}, the manifest says {f.checksum}")
                )
            continue
        if info.cold:
            cold.append(f.name)
            continue
        h = hashlib.new(alg)
        with store.open_read(key) as stream:
            while chunk := stream.read(_CHUNK):
                h.update(chunk)
        read += 1
        got = h.hexdigest()
        if got != f.checksum:
            failed.append((f.name, f"{alg} {got}, the manifest says {f.checksum}"))
        elif fixity is not None and _version(store.stat(key)) == _version(info):
            fixity.remember(location.url, info, {alg: got})  # not rewritten meanwhile
    return ReplicaCheck(
        files=len(manifest.all_files),
        read=read,
        cached=cached,
        unverifiable=tuple(cold),
        failed=tuple(failed),
    )
