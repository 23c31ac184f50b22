"""Where bytes live: one small Store Protocol and the backends behind it.

A [Store][carmigrate.storage.Store] has ``stat``, ranged ``open_read``, atomic
``write``, sorted ``list`` and ``delete``, plus frozen
[Capabilities][carmigrate.storage.Capabilities] that say what else it can do
(server-side copy, conditional writes, native checksums, a cold tier, ...).
Optional abilities are small extra Protocols; the capability flags that go
with them are derived from the Protocols a store implements
([capabilities_of][carmigrate.storage.capabilities_of]). Helpers built on the
Protocol (copy between stores, exists, whole-object I/O, restore) are free
functions in [carmigrate.storage.ops][], re-exported here; helpers for
backend and wrapper authors (key checks, chunking, checksum arguments,
derived capabilities, a base for wrapping stores) are in
[carmigrate.storage.lowlevel][].

Backends: [LocalStore][carmigrate.storage.LocalStore],
[MemoryStore][carmigrate.storage.MemoryStore],
[S3Store][carmigrate.storage.S3Store] (boto3, imported lazily),
[AzureBlobStore][carmigrate.storage.AzureBlobStore] (azure-storage-blob,
imported lazily) and
[FsspecStore][carmigrate.storage.FsspecStore] (fsspec, imported lazily);
[open_store][carmigrate.storage.open_store] picks one from a URL (its
options checked by
[check_store_options][carmigrate.storage.check_store_options]), and
third-party packages add schemes through the ``carmigrate.stores`` entry point
group. Vendor errors are translated into [carmigrate.errors][] at each
backend's boundary.
"""

from typing import TYPE_CHECKING

from carmigrate._lazy import lazy_names

if TYPE_CHECKING:
    from carmigrate.storage._azure import AzureBlobStore, AzureTier
    from carmigrate.storage._base import (
        COLD_STORAGE_CLASSES,
        BufferLike,
        Capabilities,
        ObjectInfo,
        PendingUpload,
        RestoreStatus,
        Store,
        SupportsPresignedUrls,
        SupportsRead,
        SupportsRestore,
        SupportsServerSideCopy,
        SupportsTemporaryCleanup,
        SupportsUploadCleanup,
        TemporaryCleanup,
        UploadCleanup,
        WriteData,
        capabilities_of,
    )
    from carmigrate.storage._fsspec import FsspecStore
    from carmigrate.storage._local import LocalStore
    from carmigrate.storage._memory import MemoryStore
    from carmigrate.storage._registry import (
        ENTRY_POINT_GROUP,
        check_store_options,
        is_local_url,
        open_store,
    )
    from carmigrate.storage._retry import RetryPolicy
    from carmigrate.storage._s3 import ConditionalWriteMode, S3Store
    from carmigrate.storage._unlisted import SupportsFullListing, Unmigratable
    from carmigrate.storage.ops import (
        copy_object,
        exists,
        read_bytes,
        restore_object,
        write_bytes,
    )

__all__ = [
    "AzureBlobStore",
    "AzureTier",
    "BufferLike",
    "COLD_STORAGE_CLASSES",
    "Capabilities",
    "ConditionalWriteMode",
    "ENTRY_POINT_GROUP",
    "FsspecStore",
    "LocalStore",
    "MemoryStore",
    "ObjectInfo",
    "PendingUpload",
    "RestoreStatus",
    "RetryPolicy",
    "S3Store",
    "Store",
    "SupportsFullListing",
    "SupportsPresignedUrls",
    "SupportsRead",
    "SupportsRestore",
    "SupportsServerSideCopy",
    "SupportsTemporaryCleanup",
    "SupportsUploadCleanup",
    "TemporaryCleanup",
    "Unmigratable",
    "UploadCleanup",
    "WriteData",
    "capabilities_of",
    "check_store_options",
    "copy_object",
    "exists",
    "is_local_url",
    "open_store",
    "read_bytes",
    "restore_object",
    "write_bytes",
]

# Names load from their submodules on first use (PEP 562): importing this
# package costs nothing until one is used, so the command line starts fast.
_SOURCES: dict[str, str] = {
    "AzureBlobStore": "carmigrate.storage._azure",
    "AzureTier": "carmigrate.storage._azure",
    "BufferLike": "carmigrate.storage._base",
    "COLD_STORAGE_CLASSES": "carmigrate.storage._base",
    "Capabilities": "carmigrate.storage._base",
    "ConditionalWriteMode": "carmigrate.storage._s3",
    "ENTRY_POINT_GROUP": "carmigrate.storage._registry",
    "FsspecStore": "carmigrate.storage._fsspec",
    "LocalStore": "carmigrate.storage._local",
    "MemoryStore": "carmigrate.storage._memory",
    "ObjectInfo": "carmigrate.storage._base",
    "PendingUpload": "carmigrate.storage._base",
    "RestoreStatus": "carmigrate.storage._base",
    "RetryPolicy": "carmigrate.storage._retry",
    "S3Store": "carmigrate.storage._s3",
    "Store": "carmigrate.storage._base",
    "SupportsFullListing": "carmigrate.storage._unlisted",
    "SupportsPresignedUrls": "carmigrate.storage._base",
    "SupportsRead": "carmigrate.storage._base",
    "SupportsRestore": "carmigrate.storage._base",
    "SupportsServerSideCopy": "carmigrate.storage._base",
    "SupportsTemporaryCleanup": "carmigrate.storage._base",
    "SupportsUploadCleanup": "carmigrate.storage._base",
    "TemporaryCleanup": "carmigrate.storage._base",
    "Unmigratable": "carmigrate.storage._unlisted",
    "UploadCleanup": "carmigrate.storage._base",
    "WriteData": "carmigrate.storage._base",
    "capabilities_of": "carmigrate.storage._base",
    "check_store_options": "carmigrate.storage._registry",
    "copy_object": "carmigrate.storage.ops",
    "exists": "carmigrate.storage.ops",
    "is_local_url": "carmigrate.storage._registry",
    "open_store": "carmigrate.storage._registry",
    "read_bytes": "carmigrate.storage.ops",
    "restore_object": "carmigrate.storage.ops",
    "write_bytes": "carmigrate.storage.ops",
}


if not TYPE_CHECKING:  # type checkers see the imports above instead
    __getattr__, __dir__ = lazy_names(__name__, _SOURCES)
