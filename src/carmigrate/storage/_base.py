"""The storage contract: the Store Protocol, its values and optional Protocols."""

from __future__ import annotations

import datetime  # noqa: TC003 - attrs/cattrs resolve the annotations at run time
import types
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, BinaryIO, Final, Protocol, TypeAlias, runtime_checkable

import attrs

__all__ = [
    "COLD_STORAGE_CLASSES",
    "OPTIONAL_PROTOCOLS",
    "BufferLike",
    "Capabilities",
    "ObjectInfo",
    "PendingUpload",
    "RestoreStatus",
    "Store",
    "SupportsPresignedUrls",
    "SupportsRead",
    "SupportsRestore",
    "SupportsServerSideCopy",
    "SupportsTemporaryCleanup",
    "SupportsUploadCleanup",
    "TemporaryCleanup",
    "UploadCleanup",
    "WriteData",
    "capabilities_of",
    "derive_capabilities",
]

BufferLike: TypeAlias = bytes | bytearray | memoryview
"""A contiguous block of bytes."""

COLD_STORAGE_CLASSES: Final = frozenset({"GLACIER", "DEEP_ARCHIVE", "Archive"})
"""Storage classes whose objects must be restored before they can be read.

S3's ``GLACIER`` and ``DEEP_ARCHIVE``, and Azure's ``Archive`` tier.
``GLACIER_IR`` (instant retrieval) is not cold: it reads like ``STANDARD``;
nor are Azure's ``Cool`` and ``Cold`` tiers.
"""


class SupportsRead(Protocol):
    """A binary stream: anything with ``read(size) -> bytes``.

    ``read`` returns at most ``size`` bytes and ``b""`` at the end.
    """

    def read(self, size: int = -1, /) -> bytes:
        """Read up to ``size`` bytes; ``b""`` means the end of the stream."""
        ...


WriteData: TypeAlias = BufferLike | SupportsRead | Iterable[BufferLike]
"""What [Store.write][carmigrate.storage.Store.write] accepts.

Bytes-like values are written as they are; an object with ``read`` is read in
chunks until it returns ``b""``; any other iterable yields chunks. Streams and
iterables are consumed once and never held whole in memory.
"""


def _frozen_str_map(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return _FrozenMap(value or {})


class _FrozenMap(Mapping[str, str]):
    """An immutable, hashable ``str -> str`` mapping (for frozen values)."""

    __slots__ = ("_data", "_hash")

    def __init__(self, data: Mapping[str, str]) -> None:
        self._data = dict(data)
        self._hash: int | None = None

    def __getitem__(self, key: str) -> str:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._data == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return repr(self._data)


@attrs.frozen(kw_only=True)
class RestoreStatus:
    """Where a restore from a cold tier stands.

    Attributes:
        in_progress: ``True`` while the backend is still restoring; the object
            cannot be read yet.
        expiry: When the restored copy expires again (UTC), once the restore
            has finished and the backend reported it.
    """

    in_progress: bool
    expiry: datetime.datetime | None = None


@attrs.frozen(kw_only=True)
class ObjectInfo:
    """What a store knows about one object, without reading its data.

    Attributes:
        key: The object's key, relative to the store's root.
        size: Length in bytes.
        mtime: Last modification time (timezone-aware, UTC) if the backend
            keeps one.
        etag: The backend's opaque entity tag, without quotes. Never assume it
            is an MD5: use ``checksums``.
        checksums: Digests the backend vouches for, by algorithm (``"md5"``,
            ``"sha256"``, ...), as lowercase hex. Only digests of the whole
            object appear here: a multipart S3 ETag or a composite checksum
            is never reported as an MD5 or SHA-256.
        storage_class: The backend's storage class (``"STANDARD"``,
            ``"GLACIER"``, ...), if it has classes.
        metadata: User metadata stored with the object.
        restore: The restore state of an object in a cold storage class, if
            a restore was requested.
    """

    key: str
    size: int
    mtime: datetime.datetime | None = None
    etag: str | None = None
    checksums: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_str_map)
    storage_class: str | None = None
    metadata: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_str_map)
    restore: RestoreStatus | None = None

    @property
    def cold(self) -> bool:
        """Whether the object must be restored before it can be read.

        ``True`` for objects in a cold storage class (see
        [COLD_STORAGE_CLASSES][carmigrate.storage.COLD_STORAGE_CLASSES]) unless
        a restore has finished.
        """
        if self.storage_class not in COLD_STORAGE_CLASSES:
            return False
        return self.restore is None or self.restore.in_progress


@attrs.frozen(kw_only=True)
class Capabilities:
    """What a store can do, declared up front (modelled on rclone's Features).

    Callers read these instead of discovering abilities by failure; the
    conformance suite ([check_store][carmigrate.testing.check_store]) checks
    every flag against what the store does.

    Four flags are not declarations but facts about the store's class: each
    says whether the store implements one optional Protocol
    (``server_side_copy``, ``cold_tier``, ``presigned_urls``,
    ``temporary_cleanup``; see
    [OPTIONAL_PROTOCOLS][carmigrate.storage.lowlevel.OPTIONAL_PROTOCOLS]).
    Read them through
    [capabilities_of][carmigrate.storage.capabilities_of], which derives them
    from the Protocols the store implements, so they can never disagree with
    what the store can be asked to do. The built-in backends and
    [StoreWrapper][carmigrate.storage.lowlevel.StoreWrapper] derive them in
    their own ``capabilities`` too
    ([derive_capabilities][carmigrate.storage.lowlevel.derive_capabilities]);
    a value built by hand may still carry any flags, and ``check_store``
    reports a store whose declared flags differ from its Protocols.

    Attributes:
        sorted_listing: ``list`` yields keys in ascending order (code point
            order, which equals UTF-8 byte order). When ``False``, callers must
            sort.
        atomic_write: A failed or interrupted ``write`` never leaves a partial
            object visible under its key, and a write under way never shows
            one either (readers see the previous object, or none).
        conditional_write: ``write(if_absent=True)`` is atomic: of several
            racing writers exactly one wins and the others get
            ``ObjectExists``. When ``False``, ``if_absent`` is refused unless
            the store was opened with a documented non-atomic emulation.
        server_side_copy: Derived: the store implements
            [SupportsServerSideCopy][carmigrate.storage.SupportsServerSideCopy]
            (for the sources its ``can_copy_from`` accepts).
        native_checksums: Algorithms whose digests ``stat`` and ``list`` may
            report without reading the data; they report no others. A given
            object can still lack them (for example an S3 object uploaded in
            several parts has no whole-object MD5).
        user_metadata: ``write(metadata=...)`` is stored and reported by
            ``stat``; when ``False``, ``write`` refuses metadata.
        cold_tier: Derived: the store implements
            [SupportsRestore][carmigrate.storage.SupportsRestore], so its
            objects can live in a cold storage class and be restored.
        presigned_urls: Derived: the store implements
            [SupportsPresignedUrls][carmigrate.storage.SupportsPresignedUrls].
        temporary_cleanup: Derived: the store implements
            [SupportsTemporaryCleanup][carmigrate.storage.SupportsTemporaryCleanup]
            (writers killed mid-write can leave temporary data it removes).
        range_reads: ``open_read(start=..., end=...)`` fetches only the range
            (otherwise the range is honoured by skipping).
        resumable_uploads: An interrupted large ``write`` of the same key and
            data continues from what was already uploaded instead of starting
            over.
        read_only: ``write`` and ``delete`` always fail.
        hierarchical_keys: Keys are paths in a tree, as on a file system: an
            object ``a`` and an object ``a/b`` cannot both exist.
        max_object_size: Largest object ``write`` accepts, in bytes, if
            limited.
        max_key_length: Longest key in UTF-8 bytes, if limited (``None``: the
            store accepts keys of any length).
    """

    sorted_listing: bool = True
    atomic_write: bool = True
    conditional_write: bool = False
    server_side_copy: bool = False
    native_checksums: frozenset[str] = frozenset()
    user_metadata: bool = False
    cold_tier: bool = False
    presigned_urls: bool = False
    temporary_cleanup: bool = False
    range_reads: bool = True
    resumable_uploads: bool = False
    read_only: bool = False
    hierarchical_keys: bool = False
    max_object_size: int | None = None
    max_key_length: int | None = None


@runtime_checkable
class Store(Protocol):
    """One place where objects live: a folder, a bucket prefix, a memory dict.

    Keys are ``/``-separated relative paths (see
    [validate_key][carmigrate.storage.lowlevel.validate_key]); every method raises
    ``InvalidKey`` for a key the store cannot accept, before doing anything.
    Vendor errors never escape: every failure is a
    [StorageError][carmigrate.errors.StorageError] whose ``transient``
    attribute says whether a retry may help, with the vendor error as
    ``__cause__``.

    Derived operations (copy between stores, exists, read or write whole
    objects) are free functions in [carmigrate.storage.ops][], not methods.
    Optional abilities are small extra Protocols a store's class implements
    or not ([SupportsServerSideCopy][carmigrate.storage.SupportsServerSideCopy],
    [SupportsRestore][carmigrate.storage.SupportsRestore],
    [SupportsPresignedUrls][carmigrate.storage.SupportsPresignedUrls],
    [SupportsTemporaryCleanup][carmigrate.storage.SupportsTemporaryCleanup],
    [SupportsUploadCleanup][carmigrate.storage.SupportsUploadCleanup]).

    Attributes:
        url: Where the store points, for humans and plans. Never contains
            credentials.
        capabilities: What the store can do; read the flags that follow
            from the optional Protocols through
            [capabilities_of][carmigrate.storage.capabilities_of].
    """

    @property
    def url(self) -> str:
        """Where the store points; never contains credentials."""
        ...

    @property
    def capabilities(self) -> Capabilities:
        """What the store can do."""
        ...

    def stat(self, key: str) -> ObjectInfo:
        """Describe one object without reading its data.

        Raises:
            ObjectNotFound: No object has this key.
            InvalidKey: The key is not acceptable to this store.
            StorageError: The backend failed (``transient`` says if a retry may
                help).
        """
        ...

    def open_read(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> BinaryIO:
        """Open the bytes ``[start, end)`` of an object for reading.

        The range follows slice rules: ``end=None`` or an ``end`` past the
        object's size reads to the end, and a ``start`` at or past the end
        gives an empty stream. The stream must be closed (use ``with``).

        A stream never returns short data silently: if the backend delivers
        fewer bytes than the range holds (a dropped connection, a file
        truncated meanwhile), ``read`` raises a ``StorageError``.

        Raises:
            ObjectNotFound: No object has this key.
            ColdObject: The object must be restored first.
            InvalidKey: The key is not acceptable to this store.
            ValueError: ``start`` is negative or ``end`` is before ``start``.
            StorageError: The backend failed.
        """
        ...

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
        """Store an object atomically, replacing any object with the same key.

        ``data`` is streamed in bounded memory. The object becomes visible
        under ``key`` only complete and checked: if the call raises for any
        reason (the source fails, ``size`` or a checksum does not match, the
        backend fails), the previous object under ``key`` (or its absence) is
        left as it was.

        Args:
            key: Where to store the object.
            data: The bytes, a binary stream or an iterable of chunks.
            size: The expected length, if known; a different length is an
                error and nothing is stored.
            if_absent: Fail with ``ObjectExists`` instead of replacing an
                existing object. Atomic only if
                ``capabilities.conditional_write``.
            checksums: Expected digests by algorithm (``"md5"``, ``"sha1"``,
                ``"sha256"``, ``"sha512"``), as hex. Checked before the object
                becomes visible.
            metadata: User metadata to store with the object (ASCII names and
                values). Needs ``capabilities.user_metadata``.

        Returns:
            What the store knows about the new object, including the digests
            of ``checksums`` (verified) and any computed on the way.

        Raises:
            ObjectExists: ``if_absent`` and an object exists under ``key``.
            InvalidKey: The key is not acceptable to this store.
            ValueError: An unknown checksum algorithm or a malformed digest.
            StorageError: Size or checksum mismatch, metadata not supported,
                a read-only store, or a backend failure. Errors raised by the
                source propagate unchanged.
        """
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Iterate over the objects whose keys start with ``prefix``.

        ``prefix`` is a plain string prefix, not a folder: ``"a"`` matches
        ``"a/b"`` and ``"ab"``. Objects come in ascending key order when
        ``capabilities.sorted_listing``. The listing is lazy; objects written
        or deleted meanwhile may or may not appear.

        Raises:
            StorageError: The backend failed (possibly after some objects
                were yielded).
        """
        ...

    def delete(self, key: str) -> None:
        """Remove an object. Deleting a key that holds no object is not an error.

        Raises:
            InvalidKey: The key is not acceptable to this store.
            StorageError: A read-only store, or the backend failed.
        """
        ...

    def close(self) -> None:
        """Release connections and other resources. Idempotent.

        The store must not be used afterwards.
        """
        ...


@runtime_checkable
class SupportsServerSideCopy(Protocol):
    """A store that can copy objects without the bytes passing through us.

    ``Capabilities.server_side_copy`` is derived from it (see
    [capabilities_of][carmigrate.storage.capabilities_of]).
    """

    def can_copy_from(self, source: Store) -> bool:
        """Whether [copy_from][carmigrate.storage.SupportsServerSideCopy.copy_from]
        works for objects of ``source`` (same endpoint and credentials).
        """  # noqa: D205
        ...

    def copy_from(
        self,
        source: Store,
        source_key: str,
        key: str,
        *,
        if_absent: bool = False,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Copy ``source_key`` of ``source`` to ``key`` of this store, atomically.

        User metadata is copied unless ``metadata`` replaces it.

        Raises:
            ObjectNotFound: The source object does not exist.
            ColdObject: The source object must be restored first.
            ObjectExists: ``if_absent`` and ``key`` already holds an object.
            StorageError: ``can_copy_from(source)`` is false, or the backend
                failed; nothing is visible under ``key``.
        """
        ...


@runtime_checkable
class SupportsRestore(Protocol):
    """A store with a cold tier whose objects must be restored to be read.

    ``Capabilities.cold_tier`` is derived from it (see
    [capabilities_of][carmigrate.storage.capabilities_of]).
    """

    def request_restore(
        self, key: str, *, days: int = 1, tier: str = "Standard"
    ) -> None:
        """Ask the backend to restore a cold object for ``days`` days.

        Returns once the request is accepted; poll ``stat`` (or use
        [restore_object][carmigrate.storage.restore_object]) until
        ``ObjectInfo.cold`` is false. Requesting a restore that is already in
        progress is not an error.

        Raises:
            ObjectNotFound: No object has this key.
            StorageError: The object is not in a cold class, or the backend
                failed.
        """
        ...


@runtime_checkable
class SupportsPresignedUrls(Protocol):
    """A store that can hand out time-limited URLs for one object.

    ``Capabilities.presigned_urls`` is derived from it (see
    [capabilities_of][carmigrate.storage.capabilities_of]).
    """

    def presign(self, key: str, *, expires_in: int = 3600, method: str = "GET") -> str:
        """Return a URL that allows ``method`` (``GET`` or ``PUT``) on ``key``.

        The URL carries a signature, not the secret key; anyone holding it may
        use it until it expires.

        Raises:
            InvalidKey: The key is not acceptable to this store.
            ValueError: ``method`` is not ``GET`` or ``PUT``.
        """
        ...


@runtime_checkable
class SupportsTemporaryCleanup(Protocol):
    """A store whose interrupted writers can leave temporary data behind.

    A writer killed mid-write (SIGKILL, power loss) never leaves a partial
    object, but its temporary data (a temporary file, say) stays until this
    removes it. [LocalStore][carmigrate.storage.LocalStore] implements it.
    ``Capabilities.temporary_cleanup`` is derived from it (see
    [capabilities_of][carmigrate.storage.capabilities_of]).
    """

    def remove_temporary(
        self, older_than: float = 3600.0, *, keys: Iterable[str] | None = None
    ) -> TemporaryCleanup:
        """Delete temporary data that writers left behind; say what was removed and what was not.

        Removes only temporary data whose last change is more than
        ``older_than`` seconds old, so a writer still at work keeps its own;
        never removes or changes an object. It is housekeeping: what cannot
        be removed is skipped, not an error.

        Args:
            older_than: Minimum age in seconds of the temporary data to
                delete.
            keys: Only the temporary data of writes of these keys (whose
                writers the caller knows are gone: a resumed plan's items
                caught mid-write), wherever the store keeps it, without
                searching the whole store; ``None``: all of it.

        Returns:
            How many temporary items (files) were removed, and those old
            enough that could not be removed, each with why (a caller such
            as [resume][carmigrate.migrate.resume] records them, and
            ``carmigrate status`` reports them).

        Raises:
            ValueError: ``older_than`` is negative.
        """
        ...


@attrs.frozen(kw_only=True)
class TemporaryCleanup:
    """What [remove_temporary][carmigrate.storage.SupportsTemporaryCleanup.remove_temporary] did.

    Attributes:
        removed: Temporary items (files) removed.
        left: Temporary items old enough to go that are still there, each
            as ``(name relative to the store's root, why)``: a file that
            could not be deleted (permissions, a read-only mount), or
            something under a temporary name that is not a file.
    """

    removed: int = 0
    left: tuple[tuple[str, str], ...] = ()


@attrs.frozen(kw_only=True)
class PendingUpload:
    """A write a store started and that was neither finished nor aborted.

    On S3 it is a multipart upload: its parts cost storage until it is
    completed or aborted, and it never becomes an object by itself.

    Attributes:
        key: The key the upload would create, relative to the store's root.
        upload_id: The backend's id of the upload.
        initiated: When the backend says the upload started (timezone-aware),
            if it says. Servers differ: some round it to the second, some
            report a fixed time, so never identify an upload by it alone.
    """

    key: str
    upload_id: str
    initiated: datetime.datetime | None = None


@attrs.frozen(kw_only=True)
class UploadCleanup:
    """What [abort_uploads][carmigrate.storage.SupportsUploadCleanup.abort_uploads] did.

    Attributes:
        aborted: The uploads it aborted.
        kept: Uploads of ``keep_resumable`` keys it left pending on purpose:
            the next write of the key continues them.
        failed: Uploads it could not abort, each with the error's message;
            they are still pending.
    """

    aborted: tuple[PendingUpload, ...] = ()
    kept: tuple[PendingUpload, ...] = ()
    failed: tuple[tuple[PendingUpload, str], ...] = ()


@runtime_checkable
class SupportsUploadCleanup(Protocol):
    """A store whose writes can leave pending uploads behind.

    An S3 multipart upload holds its parts (and costs storage) until it is
    completed or aborted. A writer killed mid-write leaves its upload
    pending, and a write that fails transiently may keep it on purpose, so
    that the next write of the same key continues it (``resumable_uploads``).
    [S3Store][carmigrate.storage.S3Store] implements this Protocol, and
    [resume][carmigrate.migrate.resume] calls it for the keys its plan
    writes.

    Unlike the Protocols of
    [OPTIONAL_PROTOCOLS][carmigrate.storage.lowlevel.OPTIONAL_PROTOCOLS], it
    has no [Capabilities][carmigrate.storage.Capabilities] flag: test for it
    with ``isinstance``.
    [StoreWrapper][carmigrate.storage.lowlevel.StoreWrapper] forwards it like
    the others.
    """

    def abort_uploads(
        self, keys: Iterable[str], *, keep_resumable: Iterable[str] = ()
    ) -> UploadCleanup:
        """Abort the pending uploads of ``keys``, whose writers the caller knows are gone.

        Only uploads of exactly these keys are touched (not of keys they are
        a prefix of), and never an object. Call it only when no writer of
        these keys is at work: a writer whose upload is aborted fails.

        Args:
            keys: Keys whose pending uploads all go (their objects are
                complete, or they will not be written again).
            keep_resumable: Keys that will be written again: if the store
                continues interrupted uploads, the one upload the next write
                of the key would continue is kept (reported in ``kept``) and
                only the others go; otherwise all go. A key in both
                iterables counts as here.

        Both iterables are read at most once, and not at all when nothing is
        pending, so they may be generators over millions of keys.

        Returns:
            What was aborted, kept, and what could not be aborted.

        Raises:
            StorageError: The pending uploads could not be listed; nothing
                was aborted.
        """
        ...


OPTIONAL_PROTOCOLS: Final[Mapping[type, str]] = types.MappingProxyType(
    {
        SupportsServerSideCopy: "server_side_copy",
        SupportsRestore: "cold_tier",
        SupportsPresignedUrls: "presigned_urls",
        SupportsTemporaryCleanup: "temporary_cleanup",
    }
)
"""The optional Protocols a store may implement, each with the
[Capabilities][carmigrate.storage.Capabilities] flag derived from it.

A read-only mapping from the Protocol class to the flag's name, in the order
of the flags.
"""


def derive_capabilities(declared: Capabilities, store: object) -> Capabilities:
    """Return ``declared`` with its Protocol flags set from what ``store`` implements.

    Each flag of [OPTIONAL_PROTOCOLS][carmigrate.storage.lowlevel.OPTIONAL_PROTOCOLS]
    becomes ``isinstance(store, protocol)``; every other field is kept. For
    backend authors: build ``capabilities`` with it (once, in
    ``__init__``) instead of setting those flags by hand, so they cannot
    disagree with the class.

    Args:
        declared: The store's other abilities.
        store: The store (its class decides the Protocol flags).

    Returns:
        ``declared`` itself when its flags already agree, else a copy with
        the derived flags.
    """
    derived: dict[str, Any] = {
        flag: isinstance(store, protocol)
        for protocol, flag in OPTIONAL_PROTOCOLS.items()
    }
    if all(getattr(declared, flag) == value for flag, value in derived.items()):
        return declared
    return attrs.evolve(declared, **derived)


def capabilities_of(store: Store) -> Capabilities:
    """What ``store`` can do, with the Protocol flags derived from its class.

    ``store.capabilities`` with ``server_side_copy``, ``cold_tier``,
    ``presigned_urls`` and ``temporary_cleanup`` set to whether the store
    implements [SupportsServerSideCopy][carmigrate.storage.SupportsServerSideCopy],
    [SupportsRestore][carmigrate.storage.SupportsRestore],
    [SupportsPresignedUrls][carmigrate.storage.SupportsPresignedUrls] and
    [SupportsTemporaryCleanup][carmigrate.storage.SupportsTemporaryCleanup].
    Read those flags through this function: a flag it reports ``True``
    means the method can be called. The other fields are the store's own
    declaration, unchanged.

    Args:
        store: Any store.

    Returns:
        The store's capabilities, consistent with its Protocols.
    """
    return derive_capabilities(store.capabilities, store)
