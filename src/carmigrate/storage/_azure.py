"""AzureBlobStore: a container (or a prefix in one) of Azure Blob Storage.

azure-core's and azure-storage-blob's exceptions are translated into
carmigrate's in this module and nowhere else; the original is kept as
``__cause__``. The SDK is imported lazily (``pip install carmigrate[azure]``).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import datetime
import functools
import hashlib
import heapq
import io
import logging
import os
import re
import threading
import time
from typing import (
    TYPE_CHECKING,
    Any,
    BinaryIO,
    Final,
    Literal,
    NoReturn,
    TypeVar,
    final,
)
from urllib.parse import urlsplit, urlunsplit

from carmigrate.errors import (
    BackendUnavailable,
    CarmigrateError,
    ColdObject,
    InvalidKey,
    ObjectExists,
    ObjectNotFound,
    StorageError,
)
from carmigrate.storage._base import (
    Capabilities,
    ObjectInfo,
    PendingUpload,
    RestoreStatus,
    Store,
    SupportsPresignedUrls,
    UploadCleanup,
    WriteData,
    derive_capabilities,
)
from carmigrate.storage._io import (
    SUPPORTED_CHECKSUMS,
    CheckedRangeReader,
    Digests,
    check_range,
    iter_chunks,
    normalize_checksums,
    open_checked,
    size_mismatch,
    verify_checksums,
)
from carmigrate.storage._keys import (
    DEFAULT_MAX_KEY_LENGTH,
    validate_key,
    validate_prefix,
)
from carmigrate.storage._retry import (
    RetryPolicy,
    VendorPassthrough,
    call_translated,
)
from carmigrate.storage._s3 import _PartReader
from carmigrate.storage._unlisted import Unmigratable

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping

    from azure.core.credentials import TokenCredential
    from azure.storage.blob import BlobClient, BlobServiceClient, ContainerClient

__all__ = ["AzureBlobStore", "AzureTier"]

T = TypeVar("T")

_log = logging.getLogger("carmigrate.storage")

_MIB: Final = 1024 * 1024
MAX_BLOCKS: Final = 50_000
"""Blocks in one block blob (Put Block List)."""
MAX_BLOCK_SIZE: Final = 4000 * _MIB
"""Largest block (Put Block, Put Block From URL)."""
MAX_OBJECT_SIZE: Final = MAX_BLOCKS * MAX_BLOCK_SIZE
SYNC_COPY_LIMIT: Final = 256 * _MIB
"""Largest source of one synchronous Copy Blob From URL."""
MAX_SEGMENTS: Final = 254
"""Path segments in one blob name."""
_READ_CHUNK: Final = 4 * _MIB
"""Bytes one GET of a read fetches (the SDK's download chunks)."""

AzureTier = Literal["Hot", "Cool", "Cold", "Archive"]
"""An access tier of Azure Blob Storage.

``"Archive"`` is the cold tier: an archived blob cannot be read until it is
rehydrated to another tier
(``request_restore`` of [AzureBlobStore][carmigrate.storage.AzureBlobStore]).
``"Cold"`` is an online tier despite its name.
"""

_ENV_CONNECTION_STRING: Final = "AZURE_STORAGE_CONNECTION_STRING"
_ENV_KEY: Final = "AZURE_STORAGE_KEY"
_ENV_SAS: Final = "AZURE_STORAGE_SAS_TOKEN"
_TIERS: Final = ("Hot", "Cool", "Cold", "Archive")
_PRIORITIES: Final = {
    "Expedited": "High",
    "High": "High",
    "Standard": "Standard",
    "Bulk": "Standard",
}
_ACCOUNT_RE: Final = re.compile(r"^[a-z0-9]{3,24}$")
_CONTAINER_RE: Final = re.compile(
    r"^(?:[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}|\$root|\$web|\$logs)$"
)
_META_NAME_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BLOCK_ID_LEN: Final = 60

_NOT_FOUND: Final = frozenset({"BlobNotFound", "ResourceNotFound"})
_THROTTLED: Final = frozenset(
    {"ServerBusy", "OperationTimedOut", "InternalError", "TooManyRequests"}
)
_RETRY_STATUS: Final = frozenset({408, 429, 500, 502, 503, 504})
_DENIED: Final = frozenset(
    {
        "AuthenticationFailed",
        "AuthorizationFailure",
        "AuthorizationPermissionMismatch",
        "AuthorizationProtocolMismatch",
        "AuthorizationResourceTypeMismatch",
        "AuthorizationServiceMismatch",
        "AuthorizationSourceIPMismatch",
        "InsufficientAccountPermissions",
        "AccountIsDisabled",
        "NoAuthenticationInformation",
    }
)
_BAD_DIGEST: Final = frozenset({"Md5Mismatch", "InvalidMd5", "Crc64Mismatch"})
_UNSUPPORTED: Final = frozenset({"APINotImplemented", "NotImplemented"})
"""Error codes of a service without an API (Azurite: Put Blob From URL)."""


def _strip_query(url: str) -> str:
    """``url`` without user info, query (a SAS token) or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def _code_of(exc: BaseException) -> str:
    """The service's error code of an azure-core error (``""`` if none)."""
    code = getattr(exc, "error_code", None)
    if code is None:
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
        if headers is not None:
            code = headers.get("x-ms-error-code")
    if code is None:
        return ""
    return str(getattr(code, "value", code))


def _message_of(exc: BaseException) -> str:
    text = str(getattr(exc, "reason", None) or getattr(exc, "message", None) or exc)
    first = text.strip().splitlines()
    return first[0] if first else type(exc).__name__


def _block_id(kind: str, offset: int, length: int, digest: bytes) -> str:
    """A block id from what the block holds: the same bytes at the same place,
    the same id (every id of a blob has the same length, as Azure requires).
    """  # noqa: D205
    block_id = f"cm{kind}1{offset:016x}{length:08x}{digest.hex()}"
    assert len(block_id) == _BLOCK_ID_LEN
    return block_id


def _tier_of(value: object) -> str | None:
    if value is None:
        return None
    text = str(getattr(value, "value", value))
    return text or None


def _restore_of(archive_status: object) -> RestoreStatus | None:
    status = _tier_of(archive_status)
    if status and status.lower().startswith("rehydrate-pending"):
        return RestoreStatus(in_progress=True)
    return None


def _utf16_bound(name: str) -> str:
    """The part of ``name`` before its first character at or above U+D800.

    Every name listed after ``name`` in UTF-16 order (Azurite's) or in code
    point order is greater than this, in code point order.
    """
    for i, ch in enumerate(name):
        if ch >= "\ud800":
            return name[:i]
    return name


_Passthrough = VendorPassthrough


class _SourceUrl:
    """A presigned URL of one source object, presigned again before it expires.

    ``get`` returns a URL valid for at least ``margin`` more seconds (by
    ``clock``, which is read before presigning, so the real expiry is
    later), so that every request the service makes with it finishes in
    time, however long the whole copy takes.

    State: the current URL, when it expires, how many were made.
    """

    def __init__(
        self,
        presign: Callable[[int], str],
        *,
        expires_in: int,
        margin: float,
        clock: Callable[[], float],
    ) -> None:
        self._presign = presign
        self._expires_in = expires_in
        self._margin = margin
        self._clock = clock
        self._url: str | None = None
        self._deadline = 0.0
        self.presigned = 0

    def get(self) -> str:
        now = self._clock()
        if self._url is None or now + self._margin >= self._deadline:
            self._url = self._presign(self._expires_in)
            self._deadline = now + self._expires_in
            self.presigned += 1
        return self._url


class AzureBlobStore:
    r"""A container (or a prefix in one) of Azure Blob Storage, through azure-storage-blob.

    Opened from ``az://account/container/prefix`` by
    [open_store][carmigrate.storage.open_store]; the URL names the storage
    account, never a secret.

    **Credentials** come from exactly one of the arguments
    ``connection_string``, ``account_key``, ``sas_token`` or ``credential``
    (any azure-core credential, such as azure-identity's
    ``DefaultAzureCredential``); else from the environment:
    ``AZURE_STORAGE_CONNECTION_STRING``, then ``AZURE_STORAGE_KEY``, then
    ``AZURE_STORAGE_SAS_TOKEN``; else none (public containers only). The
    endpoint is the connection string's ``BlobEndpoint``, else
    ``endpoint_url`` (Azurite: ``http://127.0.0.1:10000/devstoreaccount1``),
    else ``https://<account>.blob.core.windows.net``. Secrets never appear
    in ``url``, ``repr``, messages or logs of this class.

    **Writes** up to ``block_size`` bytes are one Put Blob; larger ones stage
    blocks (Put Block, at most ``max_concurrency`` at a time, holding at most
    ``max_concurrency + 1`` blocks in memory) and commit them with one Put
    Block List: nothing is visible under the key before the commit. Every
    request carries a Content-MD5 the service checks, so bytes damaged on
    the way are refused; the whole object's MD5 is computed in the same pass
    and stored as the blob's ``Content-MD5`` property (``stat`` and ``list``
    report it). Expected ``checksums`` of any registered algorithm are
    computed in that one pass too, and checked before the Put Blob is sent or
    the block list committed: on a mismatch nothing becomes visible.

    **Resumed uploads**: a block's id is derived from its offset, length and
    MD5, so a write that was interrupted (a crash, a lost connection) leaves
    staged, uncommitted blocks that the next write of the same key and data
    finds in the blob's block list (``resume_uploads``) and does not send
    again: the data is read again and hashed, only the blocks missing from
    the list are staged. The id is the check: a staged block is reused only
    when its offset, length and MD5 equal the new block's. The service
    discards the uncommitted blocks of a blob at its next commit or after
    seven days; [abort_uploads][carmigrate.storage.AzureBlobStore.abort_uploads]
    removes those of blobs that were never committed. A blob whose
    uncommitted blocks have ids of another length (another tool's
    interrupted upload) cannot take this store's blocks until they are gone.

    **Conditional writes** (``if_absent``) send ``If-None-Match: *`` with
    the Put Blob or Put Block List: atomic, so ``conditional_write`` is
    declared; the loser of a race gets ``ObjectExists``.

    **Cold objects**: the Archive tier is cold (``ObjectInfo.cold``,
    ``storage_class="Archive"``); reading an archived blob raises
    ``ColdObject``. With ``cold_tier`` (the default) the store implements
    [SupportsRestore][carmigrate.storage.SupportsRestore]:
    ``request_restore(key, tier=...)`` rehydrates the blob, setting its tier
    to ``rehydrate_tier`` with a rehydrate priority (``tier`` ``"High"`` or
    ``"Expedited"``: high, under an hour on Azure; ``"Standard"`` or
    ``"Bulk"``: standard, up to 15 hours). ``stat`` reports a rehydration
    under way as ``restore.in_progress``, and asking again meanwhile is not
    an error; ``days`` is ignored, as a rehydrated blob stays in its new tier
    until it is archived again. A blob that is not archived is refused with a
    ``StorageError``. ``cold_tier=False`` (an account without tiers, such as
    premium block blob storage) returns a store without ``request_restore``.

    **Listing** is in code point order (``sorted_listing``): the service
    lists in its own order (Azurite: UTF-16 code units, which differs for
    names holding characters U+E000 to U+FFFF next to characters beyond
    U+FFFF), and names the two orders could disagree on are held back until
    they can be yielded in order.

    **Keys**: besides the common rules, a key must not hold ``\\`` (the
    service reads it as ``/``) and must have at most 254 segments with the
    prefix. Metadata names must be C# identifiers (letters, digits and
    ``_``), values ASCII.

    **Optional Protocols**: the store implements
    [SupportsPresignedUrls][carmigrate.storage.SupportsPresignedUrls] (SAS
    URLs; they need the account key),
    [SupportsServerSideCopy][carmigrate.storage.SupportsServerSideCopy]
    (see [copy_from][carmigrate.storage.AzureBlobStore.copy_from]),
    [SupportsUploadCleanup][carmigrate.storage.SupportsUploadCleanup] and
    [SupportsFullListing][carmigrate.storage.SupportsFullListing].

    **Retries**: every request is retried on throttling (503 ``ServerBusy``,
    500, 429, timeouts) and connection errors, with exponential backoff and
    full jitter (``retry``); the SDK's own retries are off. A read that
    breaks mid-stream reopens at the byte it stopped, pinned to the blob's
    ETag.

    State: a ``BlobServiceClient`` (thread-safe, a pool of connections) and
    whether the service was found to refuse copies from URLs. Close the
    store (or use ``with``) to release the connections.

    Args:
        account: The storage account name.
        container: The container name.
        prefix: Name prefix inside the container; keys are relative to it.
        connection_string: An Azure Storage connection string (holds the
            endpoint and the account key or a SAS); its account must be
            ``account``.
        account_key: The account's shared key.
        sas_token: A SAS token for the account or container (with or
            without the leading ``?``).
        credential: Any azure-core credential object (a ``TokenCredential``,
            an ``AzureNamedKeyCredential``, ...).
        endpoint_url: The blob endpoint, e.g.
            ``http://127.0.0.1:10000/devstoreaccount1`` for Azurite (not with
            a connection string, which names its own).
        block_size: Size of staged blocks in bytes, and the largest single
            Put Blob; raised automatically to fit 50,000 blocks when the size
            is known.
        max_concurrency: Blocks of one object staged in parallel.
        blob_tier: Access tier of written blobs (default: the account's).
        rehydrate_tier: The tier ``request_restore`` moves archived blobs to.
        cold_tier: The account has the Archive tier: the store implements
            ``SupportsRestore`` (decided when the store is made).
        resume_uploads: Reuse the blocks an interrupted write staged (see
            above).
        url_copy: Copy from other accounts and providers on the service, from
            presigned URLs (Put Blob From URL, Put Block From URL); see
            ``copy_from``.
        copy_block_size: Size of each Put Block From URL of a copy.
        copy_url_expiry: Seconds a presigned source URL is valid; it is
            presigned again whenever less than a quarter of that is left, so
            copies of any length never meet an expired URL.
        retry: The retry policy (default ``RetryPolicy()``).
        connect_timeout: Seconds to wait for a connection.
        read_timeout: Seconds to wait for data on a connection.

    Raises:
        InvalidKey: The prefix is not a valid key prefix.
        ValueError: A malformed account or container name, several
            credentials, a connection string for another account, or an
            option out of range.
        ImportError: azure-storage-blob is not installed
            (``pip install carmigrate[azure]``).
    """

    def __new__(
        cls, *args: Any, cold_tier: bool = True, **kwargs: Any
    ) -> AzureBlobStore:
        # SupportsRestore is a fact about the class: with a cold tier the
        # store is an _ArchiveAzureBlobStore, which adds request_restore
        if cls is AzureBlobStore and cold_tier:
            cls = _ArchiveAzureBlobStore
        return super().__new__(cls)

    def __init__(
        self,
        account: str,
        container: str,
        prefix: str = "",
        *,
        connection_string: str | None = None,
        account_key: str | None = None,
        sas_token: str | None = None,
        credential: TokenCredential | None = None,
        endpoint_url: str | None = None,
        block_size: int = 8 * 1024 * 1024,
        max_concurrency: int = 4,
        blob_tier: AzureTier | None = None,
        rehydrate_tier: AzureTier = "Hot",
        cold_tier: bool = True,
        resume_uploads: bool = True,
        url_copy: bool = True,
        copy_block_size: int = 64 * 1024 * 1024,
        copy_url_expiry: int = 3600,
        retry: RetryPolicy | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> None:
        if not _ACCOUNT_RE.match(account or ""):
            raise ValueError(
                f"invalid storage account name {account!r} (3 to 24 lowercase "
                "letters and digits)"
            )
        if not _CONTAINER_RE.match(container or ""):
            raise ValueError(
                f"invalid container name {container!r} (3 to 63 lowercase letters, "
                "digits and single hyphens)"
            )
        if not 1 <= block_size <= MAX_BLOCK_SIZE:
            raise ValueError(f"block_size must be 1 to {MAX_BLOCK_SIZE} bytes")
        if not 1 <= copy_block_size <= MAX_BLOCK_SIZE:
            raise ValueError(f"copy_block_size must be 1 to {MAX_BLOCK_SIZE} bytes")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        if copy_url_expiry < 60:
            raise ValueError("copy_url_expiry must be at least 60 seconds")
        if blob_tier is not None and blob_tier not in _TIERS:
            raise ValueError(f"blob_tier must be one of {_TIERS}, not {blob_tier!r}")
        if rehydrate_tier not in _TIERS[:3]:
            raise ValueError(
                f"rehydrate_tier must be Hot, Cool or Cold, not {rehydrate_tier!r}"
            )
        given = [
            name
            for name, value in (
                ("connection_string", connection_string),
                ("account_key", account_key),
                ("sas_token", sas_token),
                ("credential", credential),
            )
            if value is not None
        ]
        if len(given) > 1:
            raise ValueError(f"pass one credential, not {' and '.join(given)}")
        if not given:
            if os.environ.get(_ENV_CONNECTION_STRING):
                connection_string = os.environ[_ENV_CONNECTION_STRING]
            elif os.environ.get(_ENV_KEY):
                account_key = os.environ[_ENV_KEY]
            elif os.environ.get(_ENV_SAS):
                sas_token = os.environ[_ENV_SAS]
        prefix = prefix.strip("/")
        if prefix:
            validate_prefix(prefix + "/")
            if "\\" in prefix:
                raise InvalidKey(f"prefix {prefix!r} holds a backslash", key=prefix)
            prefix += "/"
        self._account = account
        self._container_name = container
        self._prefix = prefix
        self._block_size = block_size
        self._max_concurrency = max_concurrency
        self._tier = blob_tier
        self._rehydrate_tier = rehydrate_tier
        self._resume = resume_uploads
        self._url_copy = url_copy
        self._url_copy_lock = threading.Lock()
        self._copy_block_size = copy_block_size
        self._copy_url_expiry = copy_url_expiry
        self._retry = retry if retry is not None else RetryPolicy()
        self._clock: Callable[[], float] = time.monotonic
        self._closed = False

        try:
            from azure.storage.blob import BlobServiceClient
        except ImportError as e:
            raise ImportError(
                "AzureBlobStore needs azure-storage-blob: pip install "
                "'carmigrate[azure]'"
            ) from e

        config: dict[str, Any] = {
            "retry_total": 0,
            "connection_timeout": connect_timeout,
            "read_timeout": read_timeout,
            # one Put Blob for anything this store sends at once, never the
            # SDK's own chunking (its block ids are not ours)
            "max_single_put_size": MAX_BLOCK_SIZE,
            "max_block_size": MAX_BLOCK_SIZE,
            "max_single_get_size": _READ_CHUNK,
            "max_chunk_get_size": _READ_CHUNK,
        }
        self._key: str | None = None
        self._sas: str | None = None
        if connection_string is not None:
            if endpoint_url is not None:
                raise ValueError(
                    "endpoint_url cannot be combined with a connection string "
                    "(it names its own BlobEndpoint)"
                )
            try:
                service = BlobServiceClient.from_connection_string(
                    connection_string, **config
                )
            except ValueError:
                raise ValueError(
                    "the Azure Storage connection string is malformed"
                ) from None
            if service.account_name != account:
                service.close()
                raise ValueError(
                    f"the connection string is for storage account "
                    f"{service.account_name!r}, the URL names {account!r}"
                )
            self._key = getattr(service.credential, "account_key", None)
            query = urlsplit(service.url).query
            self._sas = query or None
        else:
            endpoint = endpoint_url or f"https://{account}.blob.core.windows.net"
            cred: Any
            if account_key is not None:
                cred = {"account_name": account, "account_key": account_key}
                self._key = account_key
            elif sas_token is not None:
                cred = sas_token.lstrip("?")
                self._sas = cred
            else:
                cred = credential
            service = BlobServiceClient(account_url=endpoint, credential=cred, **config)
        self._service: BlobServiceClient = service
        self._container: ContainerClient = service.get_container_client(container)
        self._endpoint = _strip_query(service.primary_endpoint)
        self._identity = (self._endpoint, account)
        self._url = f"az://{account}/{container}" + (
            f"/{prefix.rstrip('/')}" if prefix else ""
        )
        self._capabilities = derive_capabilities(
            Capabilities(
                sorted_listing=True,
                atomic_write=True,
                conditional_write=True,
                native_checksums=frozenset({"md5"}),
                user_metadata=True,
                range_reads=True,
                resumable_uploads=resume_uploads,
                max_object_size=MAX_OBJECT_SIZE,
                max_key_length=DEFAULT_MAX_KEY_LENGTH - len(prefix.encode("utf-8")),
            ),
            self,
        )

    @classmethod
    def from_url(cls, url: str, **options: Any) -> AzureBlobStore:
        """Open ``az://account/container[/prefix]`` with keyword ``options`` of the constructor.

        Raises:
            ValueError: The URL is not ``az://account/container[/prefix]``,
                or carries credentials, a query or a fragment.
        """
        parts = urlsplit(url)
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "credentials in az:// URLs are not accepted; use the environment "
                f"({_ENV_CONNECTION_STRING}, ...) or keyword options"
            )
        if parts.query or parts.fragment:
            raise ValueError(
                "az:// URLs take no query or fragment (a SAS token is an option: "
                "sas_token=...)"
            )
        container, _, prefix = parts.path.lstrip("/").partition("/")
        if parts.scheme != "az" or not parts.netloc or not container:
            raise ValueError(
                f"not an az://account/container[/prefix] URL: {_strip_query(url)!r}"
            )
        return cls(parts.netloc, container, prefix, **options)

    def __repr__(self) -> str:
        return f"AzureBlobStore({self._url!r}, endpoint_url={self._endpoint!r})"

    @property
    def url(self) -> str:
        """``az://account/container/prefix``; the endpoint is in ``endpoint_url``."""
        return self._url

    @property
    def account(self) -> str:
        """The storage account name."""
        return self._account

    @property
    def container(self) -> str:
        """The container name."""
        return self._container_name

    @property
    def prefix(self) -> str:
        """The name prefix inside the container (``""`` or ending in ``/``)."""
        return self._prefix

    @property
    def endpoint_url(self) -> str:
        """The blob endpoint the client talks to (without a SAS token)."""
        return self._endpoint

    @property
    def container_client(self) -> ContainerClient:
        """The SDK's ``ContainerClient``, for what carmigrate does not wrap
        (creating the container, policies). Its errors are the SDK's,
        untranslated.
        """  # noqa: D205
        return self._container

    @property
    def capabilities(self) -> Capabilities:
        """Atomic and conditional writes, MD5 digests, metadata, resumable
        uploads; server-side copy, presigned URLs and (with ``cold_tier``)
        restores follow from the Protocols.
        """  # noqa: D205
        return self._capabilities

    @property
    def url_copy(self) -> bool:
        """Whether copies from presigned URLs are tried: ``url_copy`` until
        the service refuses Put Blob From URL or Put Block From URL as not
        implemented (Azurite), ``False`` from then on.
        """  # noqa: D205
        return self._url_copy

    # ------------------------------------------------------------------
    # plumbing

    def _full(self, key: str) -> str:
        validate_key(key, max_length=self._capabilities.max_key_length)
        if "\\" in key:
            raise InvalidKey(
                f"key {key!r} holds a backslash, which Azure reads as '/'", key=key
            )
        full = self._prefix + key
        if full.count("/") + 1 > MAX_SEGMENTS:
            raise InvalidKey(
                f"key {key!r} has more than {MAX_SEGMENTS} path segments "
                "(with the prefix), Azure's limit",
                key=key,
            )
        return full

    def _blob(self, full: str) -> BlobClient:
        return self._container.get_blob_client(full)

    def _where(self, op: str, key: str | None) -> str:
        return f"{self._url}: {op}" + (f" {key!r}" if key is not None else "")

    def _translate(
        self, exc: BaseException, key: str | None, op: str
    ) -> StorageError | None:
        """Map an azure-core error to carmigrate's tree, or None if foreign."""
        from azure.core import exceptions as ae

        where = self._where(op, key)
        if isinstance(exc, CarmigrateError):
            return None
        if isinstance(exc, ae.IncompleteReadError):
            return BackendUnavailable(f"{where}: connection problem: {exc}", key=key)
        if isinstance(exc, ae.HttpResponseError) and (
            exc.status_code is not None or _code_of(exc)
        ):
            code = _code_of(exc)
            status = exc.status_code
            detail = f"{code or status}: {_message_of(exc)}"
            if code == "ContainerNotFound":
                return StorageError(
                    f"{where}: container {self._container_name!r} does not exist",
                    key=key,
                    transient=False,
                )
            if code in _NOT_FOUND or status == 404:
                return ObjectNotFound(f"{where}: no such object", key=key)
            if code == "BlobArchived":
                return ColdObject(
                    f"{where}: the blob is in the Archive tier; rehydrate it first",
                    key=key,
                    storage_class="Archive",
                )
            if code == "BlobBeingRehydrated":
                return ColdObject(
                    f"{where}: the blob is being rehydrated from the Archive tier",
                    key=key,
                    storage_class="Archive",
                    restore_in_progress=True,
                )
            if code == "SourceConditionNotMet":
                return StorageError(
                    f"{where}: the source changed meanwhile ({detail})",
                    key=key,
                    transient=True,
                )
            if code in ("BlobAlreadyExists", "ConditionNotMet") or (
                status == 412 and not code
            ):
                return ObjectExists(
                    f"{where}: an object already exists ({detail})", key=key
                )
            if code in _THROTTLED or status in _RETRY_STATUS:
                return BackendUnavailable(
                    f"{where}: service busy or failing ({detail})", key=key
                )
            if (
                code in _DENIED
                or status in (401, 403)
                or isinstance(exc, ae.ClientAuthenticationError)
            ):
                return StorageError(
                    f"{where}: access denied ({detail})", key=key, transient=False
                )
            if code in _BAD_DIGEST or (
                status == 400 and "md5" in _message_of(exc).lower()
            ):
                return StorageError(
                    f"{where}: the service received different bytes than were sent "
                    f"({detail})",
                    key=key,
                    transient=True,
                )
            if code == "InvalidBlockList":
                return StorageError(
                    f"{where}: staged blocks are gone (another writer committed the "
                    f"blob meanwhile); write it again ({detail})",
                    key=key,
                    transient=True,
                )
            if code in _UNSUPPORTED or status == 501:
                return StorageError(
                    f"{where}: the service does not implement this ({detail})",
                    key=key,
                    transient=False,
                )
            return StorageError(f"{where}: {detail}", key=key, transient=False)
        if isinstance(exc, ae.ClientAuthenticationError):
            return StorageError(
                f"{where}: no usable Azure credentials: {_message_of(exc)}",
                key=key,
                transient=False,
            )
        if isinstance(exc, (ae.ServiceRequestError, ae.ServiceResponseError)):
            return BackendUnavailable(f"{where}: connection problem: {exc}", key=key)
        if isinstance(exc, ae.AzureError):
            return StorageError(f"{where}: {exc}", key=key, transient=False)
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return BackendUnavailable(f"{where}: connection problem: {exc}", key=key)
        return None

    def _raise(self, exc: BaseException, key: str | None, op: str) -> NoReturn:
        err = self._translate(exc, key, op)
        if err is None:
            raise exc
        raise err from exc

    def _call(
        self,
        fn: Callable[..., T],
        key: str | None,
        op: str,
        /,
        *args: Any,
        passthrough: frozenset[str] = frozenset(),
        **kwargs: Any,
    ) -> T:
        """Call an SDK method with retries; translate what finally fails.

        Error codes in ``passthrough`` raise ``_Passthrough`` untranslated.
        """
        return call_translated(
            self._retry,
            functools.partial(fn, *args, **kwargs),
            lambda e: self._translate(e, key, op),
            lambda e: "" if isinstance(e, CarmigrateError) else _code_of(e),
            passthrough,
        )

    @staticmethod
    def _check_metadata(
        metadata: Mapping[str, str] | None, where: str, key: str
    ) -> None:
        for name, value in (metadata or {}).items():
            if not _META_NAME_RE.match(name):
                raise StorageError(
                    f"{where}: metadata name {name!r} is not accepted by Azure "
                    "(letters, digits and '_', not starting with a digit)",
                    key=key,
                    transient=False,
                )
            if not value.isascii():
                raise StorageError(
                    f"{where}: metadata value of {name!r} is not ASCII",
                    key=key,
                    transient=False,
                )

    # ------------------------------------------------------------------
    # stat / read

    def _info(self, key: str, props: Any) -> ObjectInfo:
        settings = getattr(props, "content_settings", None)
        md5 = getattr(settings, "content_md5", None)
        checksums = {"md5": bytes(md5).hex()} if md5 and len(md5) == 16 else {}
        etag = str(getattr(props, "etag", None) or "").strip('"') or None
        return ObjectInfo(
            key=key,
            size=int(getattr(props, "size", 0) or 0),
            mtime=getattr(props, "last_modified", None),
            etag=etag,
            checksums=checksums,
            storage_class=_tier_of(getattr(props, "blob_tier", None)),
            metadata=dict(getattr(props, "metadata", None) or {}),
            restore=_restore_of(getattr(props, "archive_status", None)),
        )

    def _props(self, key: str, full: str, op: str = "stat") -> Any:
        return self._call(self._blob(full).get_blob_properties, key, op)

    def stat(self, key: str) -> ObjectInfo:
        """Describe an object with Get Blob Properties (see [Store.stat][carmigrate.storage.Store.stat]).

        ``storage_class`` is the blob's access tier (``"Hot"``, ``"Archive"``,
        ...), ``checksums`` its ``Content-MD5`` property when it has one, and
        ``restore`` says a rehydration from the Archive tier is under way.
        """
        full = self._full(key)
        return self._info(key, self._props(key, full))

    def _cold_error(self, key: str, full: str, cause: BaseException) -> NoReturn:
        try:
            info = self._info(key, self._props(key, full, "open_read"))
        except StorageError:
            raise cause from None
        raise ColdObject(
            f"{self._where('open_read', key)}: the blob is in the "
            f"{info.storage_class} tier"
            + (
                " and its rehydration is in progress"
                if info.restore
                else "; request a restore (rehydration)"
            ),
            key=key,
            storage_class=info.storage_class,
            restore_in_progress=bool(info.restore and info.restore.in_progress),
        ) from cause

    def _download(
        self, key: str, full: str, start: int, end: int | None, etag: str | None
    ) -> Any:
        kwargs: dict[str, Any] = {}
        if start > 0 or end is not None:
            kwargs["offset"] = start
            if end is not None:
                kwargs["length"] = end - start
        if etag is not None:
            from azure.core import MatchConditions

            kwargs["etag"] = etag
            kwargs["match_condition"] = MatchConditions.IfNotModified
        return self._call(
            self._blob(full).download_blob,
            key,
            "open_read",
            passthrough=frozenset({"InvalidRange", "ConditionNotMet"}),
            **kwargs,
        )

    def open_read(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> BinaryIO:
        """Open a range with ranged GETs (see [Store.open_read][carmigrate.storage.Store.open_read]).

        The bytes come in GETs of 4 MiB, each pinned to the ETag of the
        first. If the connection breaks mid-stream, the read continues with
        a new ranged GET pinned to that ETag, up to the retry policy's
        attempts; if the blob was replaced meanwhile, the read raises a
        ``StorageError`` instead of mixing versions.
        """
        check_range(start, end)
        full = self._full(key)
        if end is not None and end <= start:
            info = self.stat(key)
            if info.cold:
                self._cold_error(key, full, ColdObject("cold", key=key))
            return io.BytesIO(b"")
        try:
            downloader = self._download(key, full, start, end, None)
        except _Passthrough as p:
            if p.code == "InvalidRange":  # start at or past the end
                info = self.stat(key)
                if info.cold:
                    self._cold_error(key, full, ColdObject("cold", key=key))
                return io.BytesIO(b"")
            self._raise(p.original, key, "open_read")
        except ColdObject as e:
            self._cold_error(key, full, e)
        return open_checked(_AzureReader(self, key, full, start, downloader).raw())

    # ------------------------------------------------------------------
    # write

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
        """Store an object (see [Store.write][carmigrate.storage.Store.write] and the class notes).

        Returns:
            Size, ETag and the digests computed while sending: MD5 and every
            algorithm of ``checksums``. ``mtime`` is ``None``; ``storage_class``
            is ``blob_tier`` (``None``: the account's default).
        """
        full = self._full(key)
        expected = normalize_checksums(checksums)
        self._check_metadata(metadata, self._where("write", key), key)
        if size is not None and size > MAX_OBJECT_SIZE:
            raise StorageError(
                f"{self._where('write', key)}: {size} bytes is over Azure's limit of "
                f"{MAX_OBJECT_SIZE} bytes",
                key=key,
            )
        block_size = self._block_size
        if size is not None and size > block_size * MAX_BLOCKS:
            block_size = -(-size // MAX_BLOCKS)
            block_size = min(MAX_BLOCK_SIZE, -(-block_size // _MIB) * _MIB)
        parts = _PartReader(iter_chunks(data, min(block_size, _MIB)), block_size)
        first = parts.read_part() or bytearray()
        if parts.at_end():
            return self._put_single(
                key, full, first, size, expected, metadata, if_absent
            )
        return self._put_blocks(
            key, full, first, parts, size, expected, metadata, if_absent
        )

    def _tier_arg(self) -> Any:
        if self._tier is None:
            return None
        from azure.storage.blob import StandardBlobTier

        return StandardBlobTier(self._tier)

    def _put_single(
        self,
        key: str,
        full: str,
        body: bytearray,
        size: int | None,
        expected: dict[str, str],
        metadata: Mapping[str, str] | None,
        if_absent: bool,
    ) -> ObjectInfo:
        from azure.storage.blob import ContentSettings

        if size is not None and len(body) != size:
            raise size_mismatch(self._url, key, size, len(body))
        digests = Digests(set(expected) | {"md5"})
        digests.update(body)
        actual = digests.hexdigests()
        verify_checksums(expected, actual, url=self._url, key=key)
        md5 = bytes.fromhex(actual["md5"])
        response = self._call(
            self._blob(full).upload_blob,
            key,
            "write",
            bytes(body),
            length=len(body),
            overwrite=not if_absent,  # False: If-None-Match: *
            content_settings=ContentSettings(content_md5=bytearray(md5)),
            transactional_content_md5=md5,
            metadata=dict(metadata) if metadata else None,
            standard_blob_tier=self._tier_arg(),
        )
        return ObjectInfo(
            key=key,
            size=len(body),
            etag=str(response.get("etag") or "").strip('"') or None,
            checksums=actual,
            storage_class=self._tier,
            metadata=dict(metadata or {}),
        )

    def _block_list(self, key: str, full: str) -> dict[str, int]:
        """Staged and committed blocks of ``full`` by id, with their sizes."""
        try:
            committed, uncommitted = self._call(
                self._blob(full).get_block_list, key, "write", "all"
            )
        except ObjectNotFound:
            return {}
        return {
            str(b.id): int(b.size)
            for b in [*committed, *uncommitted]
            if len(str(b.id)) == _BLOCK_ID_LEN
        }

    def _has_uncommitted(self, key: str, full: str) -> bool:
        try:
            _, uncommitted = self._call(
                self._blob(full).get_block_list, key, "abort upload", "uncommitted"
            )
        except ObjectNotFound:
            return False
        return bool(uncommitted)

    def _stage(
        self, key: str, full: str, block_id: str, buf: bytearray, md5: bytes
    ) -> None:
        self._call(
            self._blob(full).stage_block,
            key,
            "write (stage block)",
            block_id,
            buf,
            length=len(buf),
            transactional_content_md5=md5,
        )

    def _put_blocks(
        self,
        key: str,
        full: str,
        first: bytearray,
        parts: _PartReader,
        size: int | None,
        expected: dict[str, str],
        metadata: Mapping[str, str] | None,
        if_absent: bool,
    ) -> ObjectInfo:
        from azure.storage.blob import BlobBlock, ContentSettings

        staged = self._block_list(key, full) if self._resume else {}
        whole = Digests(set(expected) | {"md5"})
        ids: list[str] = []
        total = 0
        pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self._max_concurrency,
            thread_name_prefix="carmigrate-azure-block",
        )
        inflight: collections.deque[concurrent.futures.Future[None]] = (
            collections.deque()
        )
        try:
            buf: bytearray | None = first
            while buf is not None:
                if len(ids) >= MAX_BLOCKS:
                    raise StorageError(
                        f"{self._where('write', key)}: more than {MAX_BLOCKS} blocks "
                        f"of {len(first)} bytes; pass size= or a larger block_size",
                        key=key,
                    )
                if size is not None and total + len(buf) > size:
                    raise size_mismatch(self._url, key, size, total + len(buf))
                whole.update(buf)
                md5 = hashlib.md5(buf, usedforsecurity=False).digest()
                block_id = _block_id("b", total, len(buf), md5)
                ids.append(block_id)
                total += len(buf)
                if staged.get(block_id) != len(buf):
                    inflight.append(
                        pool.submit(self._stage, key, full, block_id, buf, md5)
                    )
                del buf
                while len(inflight) >= self._max_concurrency:
                    inflight.popleft().result()
                buf = None if parts.at_end() else parts.read_part()
            while inflight:
                inflight.popleft().result()
            if size is not None and total != size:
                raise size_mismatch(self._url, key, size, total)
            actual = whole.hexdigests()
            verify_checksums(expected, actual, url=self._url, key=key)
            kwargs: dict[str, Any] = {
                "content_settings": ContentSettings(
                    content_md5=bytearray.fromhex(actual["md5"])
                ),
                "metadata": dict(metadata) if metadata else None,
                "standard_blob_tier": self._tier_arg(),
            }
            if if_absent:
                kwargs["if_none_match"] = "*"
            response = self._call(
                self._blob(full).commit_block_list,
                key,
                "write (commit)",
                [BlobBlock(block_id=i) for i in ids],
                **kwargs,
            )
        finally:
            for f in inflight:
                f.cancel()
            pool.shutdown(wait=True)
        # Uncommitted blocks of a failed write stay staged: the next write of
        # the key reuses them, the service drops them at the blob's next
        # commit or after seven days (abort_uploads removes them sooner).
        return ObjectInfo(
            key=key,
            size=total,
            etag=str(response.get("etag") or "").strip('"') or None,
            checksums=actual,
            storage_class=self._tier,
            metadata=dict(metadata or {}),
        )

    # ------------------------------------------------------------------
    # list / delete

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects under ``prefix`` in code point order, paginated lazily.

        Blobs whose relative name is not a valid carmigrate key are skipped;
        [list_all][carmigrate.storage.AzureBlobStore.list_all] reports them.
        """
        validate_prefix(prefix)
        return self._list(prefix)  # type: ignore[return-value]

    def list_all(self, prefix: str = "") -> Iterator[ObjectInfo | Unmigratable]:
        """``list(prefix)`` and the blobs it leaves out.

        See [SupportsFullListing][carmigrate.storage.SupportsFullListing]:
        every blob whose name breaks carmigrate's key rules (``a//b``,
        ``./x``, a control character, a backslash) is an ``Unmigratable``
        naming the rule.
        """
        validate_prefix(prefix)
        return self._list(prefix, problems=True)

    def _pages(self, prefix: str, op: str, include: str | None = None) -> Iterator[Any]:
        """Every blob under ``self._prefix + prefix``, in the service's order."""
        token: str | None = None
        while True:

            def fetch(token: str | None = token) -> tuple[list[Any], str | None]:
                pages = self._container.list_blobs(
                    name_starts_with=self._prefix + prefix,
                    include=[include] if include else None,
                ).by_page(continuation_token=token)
                page = list(next(pages))
                return page, getattr(pages, "continuation_token", None)

            items, token = self._call(fetch, prefix or None, op)
            yield from items
            if not token:
                return

    def _list(
        self, prefix: str, problems: bool = False
    ) -> Iterator[ObjectInfo | Unmigratable]:
        cut = len(self._prefix)
        held: list[tuple[str, int, ObjectInfo | Unmigratable]] = []
        counter = 0
        for blob in self._pages(prefix, "list"):
            rel = str(blob.name)[cut:]
            # every name listed shares the prefix: only the rest can be out
            # of order
            bound = prefix + _utf16_bound(rel[len(prefix) :])
            while held and held[0][0] <= bound:
                yield heapq.heappop(held)[2]
            entry: ObjectInfo | Unmigratable | None
            try:
                validate_key(rel, max_length=None)
                if "\\" in rel:
                    raise InvalidKey(f"key {rel!r} holds a backslash", key=rel)
            except InvalidKey as e:
                size = int(getattr(blob, "size", 0) or 0)
                entry = (
                    Unmigratable(
                        name=rel, reason=f"name breaks the key rules: {e}", size=size
                    )
                    if problems and not (size == 0 and rel.endswith("/"))
                    else None
                )
            else:
                entry = self._info(rel, blob)
            if entry is None:
                continue
            if bound == rel:
                yield entry  # smaller than everything held and to come
            else:
                counter += 1
                heapq.heappush(held, (rel, counter, entry))
        while held:
            yield heapq.heappop(held)[2]

    def delete(self, key: str) -> None:
        """Remove a blob and its snapshots; a missing key is not an error."""
        full = self._full(key)
        with contextlib.suppress(_Passthrough):  # missing: not an error
            self._call(
                self._blob(full).delete_blob,
                key,
                "delete",
                passthrough=frozenset({"BlobNotFound"}),
                delete_snapshots="include",
            )

    # ------------------------------------------------------------------
    # uncommitted blocks

    def _pending(self) -> dict[str, PendingUpload]:
        """Blobs under the prefix that hold uncommitted blocks and were never
        committed, by key.

        Such a blob is listed (with ``include=uncommittedblobs``) with size 0
        and has no properties; blobs of size 0 that exist are told apart by
        one Get Blob Properties each.
        """  # noqa: D205
        cut = len(self._prefix)
        candidates = [
            blob
            for blob in self._pages("", "abort uploads", include="uncommittedblobs")
            if not int(getattr(blob, "size", 0) or 0)
        ]
        pending: dict[str, PendingUpload] = {}
        for blob in candidates:
            full = str(blob.name)
            try:
                self._props(full[cut:], full, "abort uploads")
            except ObjectNotFound:
                pending[full[cut:]] = PendingUpload(
                    key=full[cut:],
                    upload_id="uncommitted-blocks",
                    initiated=getattr(blob, "last_modified", None),
                )
        return pending

    def abort_uploads(
        self, keys: Iterable[str], *, keep_resumable: Iterable[str] = ()
    ) -> UploadCleanup:
        """Remove the uncommitted blocks of ``keys`` (see [SupportsUploadCleanup][carmigrate.storage.SupportsUploadCleanup]).

        Azure has no upload to abort: a write's staged blocks wait, uncommitted,
        until the blob's next commit or for seven days. What can be removed
        without touching an object is a blob that holds uncommitted blocks and
        was never committed: this lists the prefix once (with uncommitted
        blobs; the keys are only read if some are found), then deletes those
        blobs of ``keys`` and keeps those of ``keep_resumable`` (their next
        write reuses the blocks; ``resume_uploads``). Each is reported as one
        ``PendingUpload`` with ``upload_id="uncommitted-blocks"``. Uncommitted
        blocks staged for a blob that exists are not found: the blob's next
        commit drops them.

        Raises:
            StorageError: The blobs could not be listed.
        """
        pending = self._pending()
        doomed: list[PendingUpload] = []
        kept: list[PendingUpload] = []
        for resumable, group in ((True, keep_resumable), (False, keys)):
            if not pending:
                break
            for key in group:
                item = pending.pop(key, None)
                if item is None:
                    continue
                (kept if resumable and self._resume else doomed).append(item)
                if not pending:
                    break
        aborted: list[PendingUpload] = []
        failed: list[tuple[PendingUpload, str]] = []
        for item in doomed:
            full = self._prefix + item.key
            try:
                self._call(
                    self._blob(full).delete_blob,
                    item.key,
                    "abort upload",
                    passthrough=frozenset({"BlobNotFound"}),
                )
            except _Passthrough:
                pass  # the service may refuse a blob without committed data
            except StorageError as e:
                failed.append((item, str(e)))
                continue
            if self._has_uncommitted(item.key, full):
                failed.append(
                    (
                        item,
                        f"{self._where('abort upload', item.key)}: the service keeps "
                        "the uncommitted blocks (it drops them after seven days)",
                    )
                )
                continue
            aborted.append(item)
        return UploadCleanup(
            aborted=tuple(aborted), kept=tuple(kept), failed=tuple(failed)
        )

    # ------------------------------------------------------------------
    # optional protocols

    def _read_url(self, key: str, full: str, expires_in: int) -> str:
        """A URL the service can read ``full`` from (for copies within the account)."""
        if self._key is not None:
            return self._sas_url(key, full, expires_in, "GET")
        return self._blob(full).url  # carries the store's SAS token, if any

    def _sas_url(self, key: str, full: str, expires_in: int, method: str) -> str:
        from azure.storage.blob import BlobSasPermissions, generate_blob_sas

        if self._key is None:
            raise StorageError(
                f"{self._where('presign', key)}: SAS URLs need the account key "
                "(account_key=, or a connection string with AccountKey)",
                key=key,
                transient=False,
            )
        now = datetime.datetime.now(datetime.UTC)
        permission = (
            BlobSasPermissions(read=True)
            if method == "GET"
            else BlobSasPermissions(create=True, write=True)
        )
        try:
            token = generate_blob_sas(
                self._account,
                self._container_name,
                full,
                account_key=self._key,
                permission=permission,
                start=now - datetime.timedelta(minutes=5),
                expiry=now + datetime.timedelta(seconds=expires_in),
            )
        except Exception as e:
            self._raise(e, key, "presign")
        return f"{_strip_query(self._blob(full).url)}?{token}"

    def presign(self, key: str, *, expires_in: int = 3600, method: str = "GET") -> str:
        """A SAS URL for GET or PUT (see [SupportsPresignedUrls][carmigrate.storage.SupportsPresignedUrls]).

        The token is a service SAS for the one blob, signed with the account
        key, valid from five minutes ago (clock skew) for ``expires_in``
        seconds. A PUT through it must send ``x-ms-blob-type: BlockBlob``.

        Raises:
            InvalidKey: The key is not acceptable to this store.
            ValueError: ``method`` is not ``GET`` or ``PUT``, or
                ``expires_in`` is not positive.
            StorageError: The store has no account key to sign with.
        """
        if method not in ("GET", "PUT"):
            raise ValueError(f"method must be GET or PUT, not {method!r}")
        if expires_in < 1:
            raise ValueError(f"expires_in must be >= 1, not {expires_in}")
        full = self._full(key)
        return self._sas_url(key, full, expires_in, method)

    def _same_account(self, source: Store) -> bool:
        return isinstance(source, AzureBlobStore) and source._identity == self._identity

    def can_copy_from(self, source: Store) -> bool:
        """True for an AzureBlobStore of the same account and endpoint; and,
        while ``url_copy`` holds, for any store with presigned URLs (another
        account, S3, ...).
        """  # noqa: D205
        if self._same_account(source):
            return True
        return self._url_copy and isinstance(source, SupportsPresignedUrls)

    def copy_from(
        self,
        source: Store,
        source_key: str,
        key: str,
        *,
        if_absent: bool = False,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Copy on the service (see [SupportsServerSideCopy][carmigrate.storage.SupportsServerSideCopy]).

        - From the same account, up to 256 MiB: one synchronous Copy Blob From
          URL, pinned to the source's ETag. The source URL carries a SAS
          signed with the source store's key (or the store's own SAS token).
        - Otherwise, from a presigned URL of the source (``presign``): one Put
          Blob From URL up to ``copy_block_size``, else Put Block From URL for
          each ``copy_block_size`` range and one Put Block List, with
          ``If-None-Match: *`` for ``if_absent``; nothing is visible before
          the commit, and the source is checked again (size, ETag) before it.
          The URL is presigned for ``copy_url_expiry`` seconds and again
          whenever a quarter of that is left, so no request meets an expired
          URL however long the copy takes. Block ids name the source's URL,
          ETag and range, so a copy broken off and run again reuses the
          blocks already staged. When the source vouches for an MD5, a single
          Put Blob From URL asks the service to check it and the blob keeps it.
        - If the service answers that it does not implement copies from URLs
          (Azurite), ``url_copy`` turns false for the rest of the store's life
          (logged once at INFO), ``can_copy_from`` accepts only sources of the
          same account from then on, and this copy streams the object through
          this process instead: read from the source, written with
          ``write`` (checked against the source's digests).

        User metadata is copied unless ``metadata`` replaces it.

        Raises:
            ObjectNotFound: The source object does not exist.
            ColdObject: The source object must be restored first.
            ObjectExists: ``if_absent`` and ``key`` already holds an object.
            StorageError: ``can_copy_from(source)`` is false, or a failure;
                nothing is visible under ``key``.
        """
        if not self.can_copy_from(source):
            raise StorageError(
                f"{self._where('copy', key)}: cannot copy on the service from "
                f"{source.url}",
                key=key,
            )
        full = self._full(key)
        info = source.stat(source_key)
        if info.cold:
            raise ColdObject(
                f"{source.url}: {source_key!r} is in storage class "
                f"{info.storage_class}; restore it first",
                key=source_key,
                storage_class=info.storage_class,
                restore_in_progress=bool(info.restore and info.restore.in_progress),
            )
        meta = dict(info.metadata) if metadata is None else dict(metadata)
        self._check_metadata(meta, self._where("copy", key), key)
        if (
            isinstance(source, AzureBlobStore)
            and self._same_account(source)
            and info.size <= SYNC_COPY_LIMIT
        ):
            return self._copy_sync(
                source, source_key, key, full, info, metadata, if_absent
            )
        if self._url_copy and isinstance(source, SupportsPresignedUrls):
            try:
                return self._copy_from_url(
                    source, source_key, key, full, info, meta, if_absent
                )
            except _Passthrough as p:
                self._url_copy_refused(p)
        with source.open_read(source_key) as stream:
            return self.write(
                key,
                stream,
                size=info.size,
                if_absent=if_absent,
                checksums={
                    a: d for a, d in info.checksums.items() if a in SUPPORTED_CHECKSUMS
                },
                metadata=meta,
            )

    def _copy_sync(
        self,
        source: AzureBlobStore,
        source_key: str,
        key: str,
        full: str,
        info: ObjectInfo,
        metadata: Mapping[str, str] | None,
        if_absent: bool,
    ) -> ObjectInfo:
        from azure.core import MatchConditions

        src_full = source._full(source_key)
        kwargs: dict[str, Any] = {
            "requires_sync": True,
            "metadata": dict(metadata) if metadata is not None else None,
            "standard_blob_tier": self._tier_arg(),
        }
        if info.etag:
            kwargs["source_etag"] = f'"{info.etag}"'
            kwargs["source_match_condition"] = MatchConditions.IfNotModified
        if if_absent:
            kwargs["if_none_match"] = "*"
        try:
            self._call(
                self._blob(full).start_copy_from_url,
                key,
                "copy",
                source._read_url(source_key, src_full, 3600),
                passthrough=frozenset(
                    {
                        "SourceConditionNotMet",
                        "ConditionNotMet",
                        "CannotVerifyCopySource",
                    }
                ),
                **kwargs,
            )
        except _Passthrough as p:
            if p.code == "CannotVerifyCopySource":
                source.stat(source_key)  # ObjectNotFound if it is gone by now
                raise StorageError(
                    f"{self._where('copy', key)}: the service cannot read "
                    f"{source.url} {source_key!r} ({_message_of(p.original)})",
                    key=key,
                    transient=False,
                ) from p.original
            # Azure says SourceConditionNotMet, Azurite ConditionNotMet; an
            # existing destination is 409 BlobAlreadyExists, but be sure
            if p.code == "ConditionNotMet" and if_absent:
                try:
                    self._props(key, full, "copy")
                except ObjectNotFound:
                    pass
                else:
                    raise ObjectExists(
                        f"{self._where('copy', key)}: an object already exists",
                        key=key,
                    ) from p.original
            raise StorageError(
                f"{source._where('copy', source_key)}: the source changed during "
                "the copy",
                key=source_key,
                transient=True,
            ) from p.original
        return self.stat(key)

    def _copy_from_url(
        self,
        source: SupportsPresignedUrls,
        source_key: str,
        key: str,
        full: str,
        info: ObjectInfo,
        metadata: Mapping[str, str],
        if_absent: bool,
    ) -> ObjectInfo:
        """Put Blob From URL or Put Block From URL + Put Block List.

        Raises:
            _Passthrough: The service does not implement it (nothing was
                written).
        """
        from azure.storage.blob import BlobBlock, ContentSettings

        assert isinstance(source, Store)
        if isinstance(source, AzureBlobStore) and self._same_account(source):
            src_full = source._full(source_key)

            def presign(expires_in: int) -> str:
                return source._read_url(source_key, src_full, expires_in)

        else:

            def presign(expires_in: int) -> str:
                return source.presign(source_key, expires_in=expires_in, method="GET")

        url = _SourceUrl(
            presign,
            expires_in=self._copy_url_expiry,
            margin=self._copy_url_expiry / 4,
            clock=self._clock,
        )
        blob = self._blob(full)
        md5 = info.checksums.get("md5")
        size = info.size
        step = max(self._copy_block_size, -(-size // MAX_BLOCKS))
        if size <= step:
            kwargs: dict[str, Any] = {
                "overwrite": not if_absent,
                "metadata": metadata or None,
                "standard_blob_tier": self._tier_arg(),
            }
            if md5:
                kwargs["source_content_md5"] = bytes.fromhex(md5)
            self._call(
                blob.upload_blob_from_url,
                key,
                "copy",
                url.get(),
                passthrough=_UNSUPPORTED,
                **kwargs,
            )
            return self.stat(key)
        identity = hashlib.md5(
            f"{source.url}\0{source_key}\0{info.etag}\0{size}".encode(),
            usedforsecurity=False,
        ).digest()
        staged = self._block_list(key, full) if self._resume else {}
        ids: list[str] = []
        first = True
        for offset in range(0, size, step):
            length = min(step, size - offset)
            block_id = _block_id("u", offset, length, identity)
            ids.append(block_id)
            if staged.get(block_id) == length:
                continue
            self._call(
                blob.stage_block_from_url,
                key,
                f"copy (block at {offset})",
                block_id,
                url.get(),
                source_offset=offset,
                source_length=length,
                passthrough=_UNSUPPORTED if first else frozenset(),
            )
            first = False
        again = source.stat(source_key)
        if again.etag != info.etag or again.size != size:
            raise StorageError(
                f"{source.url}: {source_key!r} changed during the copy",
                key=source_key,
                transient=True,
            )
        commit: dict[str, Any] = {
            "metadata": metadata or None,
            "standard_blob_tier": self._tier_arg(),
        }
        if md5:
            commit["content_settings"] = ContentSettings(
                content_md5=bytearray.fromhex(md5)
            )
        if if_absent:
            commit["if_none_match"] = "*"
        self._call(
            blob.commit_block_list,
            key,
            "copy (commit)",
            [BlobBlock(block_id=i) for i in ids],
            **commit,
        )
        return self.stat(key)

    def _url_copy_refused(self, refusal: _Passthrough) -> None:
        """Turn ``url_copy`` off (once; thread-safe) and say so."""
        with self._url_copy_lock:
            if not self._url_copy:
                return
            self._url_copy = False
        _log.info(
            "%s: the service does not implement copies from URLs (%s: %s); objects "
            "of other accounts and providers are streamed through this process",
            self._url,
            refusal.code,
            _message_of(refusal.original),
        )

    def close(self) -> None:
        """Close the client's connections. Idempotent."""
        if not self._closed:
            self._closed = True
            self._service.close()

    def __enter__(self) -> AzureBlobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@final
class _ArchiveAzureBlobStore(AzureBlobStore):
    """An AzureBlobStore whose account has the Archive tier: it can rehydrate.

    ``AzureBlobStore(...)`` returns one unless ``cold_tier=False``.
    """

    def request_restore(
        self, key: str, *, days: int = 1, tier: str = "Standard"
    ) -> None:
        """Rehydrate an archived blob (see [SupportsRestore][carmigrate.storage.SupportsRestore]).

        Sets the blob's tier to ``rehydrate_tier`` with a rehydrate priority:
        ``tier`` ``"High"`` or ``"Expedited"`` ask for high priority
        (under an hour on Azure), ``"Standard"`` or ``"Bulk"`` for standard
        (up to 15 hours). ``days`` is ignored: a rehydrated blob stays in its
        new tier until it is archived again. A rehydration already under way
        is not an error.

        Raises:
            ObjectNotFound: No object has this key.
            ValueError: An unknown ``tier``.
            StorageError: The blob is not in the Archive tier, or the service
                failed.
        """
        priority = _PRIORITIES.get(tier)
        if priority is None:
            raise ValueError(f"tier must be one of {sorted(_PRIORITIES)}, not {tier!r}")
        full = self._full(key)
        info = self._info(key, self._props(key, full, "restore"))
        if info.restore is not None and info.restore.in_progress:
            return
        if info.storage_class != "Archive":
            raise StorageError(
                f"{self._where('restore', key)}: the blob is in the "
                f"{info.storage_class} tier, not Archive",
                key=key,
                transient=False,
            )
        try:
            self._call(
                self._blob(full).set_standard_blob_tier,
                key,
                "restore",
                self._rehydrate_tier,
                rehydrate_priority=priority,
            )
        except ColdObject as e:
            if e.restore_in_progress:
                return  # BlobBeingRehydrated: asked meanwhile
            raise


class _AzureReader:
    """The state of one ranged read: the SDK's chunks, the offset, reopens."""

    def __init__(
        self, store: AzureBlobStore, key: str, full: str, start: int, downloader: Any
    ) -> None:
        self._store = store
        self._key = key
        self._full = full
        self._start = start
        self._length = int(downloader.size)
        self._etag = str(getattr(downloader.properties, "etag", "") or "") or None
        self._chunks: Iterator[bytes] | None = iter(downloader.chunks())
        self._pending = memoryview(b"")
        self._done = 0
        self._reopens = 0

    def raw(self) -> CheckedRangeReader:
        return CheckedRangeReader(
            self._fill,
            length=self._length,
            url=self._store.url,
            key=self._key,
            offset=self._start,
            on_close=self._close,
        )

    def _close(self) -> None:
        self._chunks = None
        self._pending = memoryview(b"")

    def _fill(self, view: memoryview) -> int:
        while not self._pending:
            try:
                if self._chunks is None:
                    raise StorageError("closed", key=self._key, transient=True)
                try:
                    chunk = next(self._chunks)
                except StopIteration:
                    return 0  # CheckedRangeReader reports a short read
                self._pending = memoryview(chunk)
            except Exception as e:
                err = (
                    e
                    if isinstance(e, StorageError)
                    else self._store._translate(e, self._key, "read")
                )
                if err is None:
                    raise
                retry = self._store._retry
                if not err.transient or self._reopens + 1 >= retry.max_attempts:
                    if err is e:
                        raise
                    raise err from e
                self._reopens += 1
                retry.sleep(retry.delay(self._reopens))
                self._reopen()
        n = min(len(view), len(self._pending))
        view[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self._done += n
        return n

    def _reopen(self) -> None:
        offset = self._start + self._done
        end = self._start + self._length
        try:
            downloader = self._store._download(
                self._key, self._full, offset, end, self._etag
            )
        except _Passthrough as p:
            raise StorageError(
                f"{self._store.url}: {self._key!r} changed while being read "
                f"(at byte {offset})",
                key=self._key,
                transient=True,
            ) from p.original
        self._chunks = iter(downloader.chunks())
