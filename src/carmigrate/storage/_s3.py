"""S3Store: any S3-speaking server (AWS, R2, Ceph, MinIO, Swift s3api) via boto3.

botocore's exceptions are translated into carmigrate's in this module and
nowhere else; the original is kept as ``__cause__``.
"""

from __future__ import annotations

import base64
import binascii
import collections
import concurrent.futures
import datetime
import email.utils
import functools
import hashlib
import io
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
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

import attrs

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
    BufferLike,
    Capabilities,
    ObjectInfo,
    PendingUpload,
    RestoreStatus,
    Store,
    UploadCleanup,
    WriteData,
    derive_capabilities,
)
from carmigrate.storage._io import (
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
from carmigrate.storage._unlisted import Unmigratable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, HeadObjectOutputTypeDef

__all__ = ["ConditionalWriteMode", "S3Store"]

T = TypeVar("T")

_log = logging.getLogger("carmigrate.storage")

_MIB: Final = 1024 * 1024
_GIB: Final = 1024 * _MIB
DEFAULT_PART_SIZE: Final = 8 * _MIB
MAX_PARTS: Final = 10_000
MAX_OBJECT_SIZE: Final = 5 * 1024 * _GIB
MAX_PUT_SIZE: Final = 5 * _GIB

ConditionalWriteMode = Literal["auto", "put", "multipart", "none"]
"""How an S3 server supports ``If-None-Match: *`` (if-absent writes).

- ``"auto"`` (the default): ``"put"`` until the server answers a
  conditional PutObject with ``501 NotImplemented`` (OpenStack Swift s3api:
  "Conditional object PUTs are not supported."); from then on, for the rest
  of the store's life, ``"multipart"``. The write that met the refusal is
  redone that way, and the switch is logged once (INFO, logger
  ``carmigrate.storage``). ``capabilities.conditional_write`` is true until
  the switch, false after it. An object that exists is never taken for a
  refusal: the server answers that with ``412 PreconditionFailed``
  (``ObjectExists``) in either mode. A server that silently ignores the
  condition cannot be detected this way: name its mode explicitly.
- ``"put"``: on PutObject and CompleteMultipartUpload, atomically (AWS since
  2024, MinIO, moto). ``capabilities.conditional_write`` is true.
- ``"multipart"``: only on CompleteMultipartUpload, so if-absent writes go
  through a multipart upload, and the check is not atomic against racing
  writers (OpenStack Swift s3api 2.30: in a test, 2 to 4 of 6 racing
  writers often all succeeded). ``capabilities.conditional_write`` is false.
- ``"none"``: not at all; ``if_absent`` is refused unless the store is
  opened with ``emulate_if_absent`` (HEAD, then write: not atomic).
"""

_NOT_FOUND: Final = frozenset({"NoSuchKey", "404", "NotFound"})
_THROTTLED: Final = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TooManyRequests",
        "TooManyRequestsException",
        "RequestTimeout",
        "RequestTimeoutException",
        "ServiceUnavailable",
        "InternalError",
        "ConditionalRequestConflict",
        "OperationAborted",
        "500",
        "502",
        "503",
        "504",
    }
)
_DENIED: Final = frozenset(
    {
        "AccessDenied",
        "403",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AllAccessDisabled",
    }
)
_BAD_DIGEST: Final = frozenset(
    {"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "InvalidChecksum"}
)
_RETRY_STATUS: Final = frozenset({429, 500, 502, 503, 504})
_UNSUPPORTED: Final = frozenset({"NotImplemented", "501"})
"""Error codes of a server refusing a request feature (a conditional PUT)."""
_CLOCK_SLACK: Final = datetime.timedelta(seconds=2)
"""How far a server's upload times may be off (Swift rounds them up to the second)."""
_MD5_RE: Final = re.compile(r"^[0-9a-f]{32}$")
_RESTORE_RE: Final = re.compile(
    r'ongoing-request\s*=\s*"(?P<ongoing>true|false)"'
    r'(?:\s*,\s*expiry-date\s*=\s*"(?P<expiry>[^"]+)")?',
    re.IGNORECASE,
)


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _b64_to_hex(value: str, length: int) -> str | None:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == length else None


def _parse_restore(header: str | None) -> RestoreStatus | None:
    """Parse S3's ``x-amz-restore`` header."""
    if not header:
        return None
    m = _RESTORE_RE.search(header)
    if m is None:
        return None
    expiry = None
    if m.group("expiry"):
        try:
            expiry = email.utils.parsedate_to_datetime(m.group("expiry"))
        except (TypeError, ValueError):
            expiry = None
        if expiry is not None and expiry.tzinfo is None:
            expiry = expiry.replace(tzinfo=datetime.UTC)
    return RestoreStatus(
        in_progress=m.group("ongoing").lower() == "true", expiry=expiry
    )


@functools.cache
def _shared_loader() -> Any:
    """One botocore data loader per process: its model cache makes clients cheap."""
    import botocore.loaders

    return botocore.loaders.create_loader()


def _botocore_session() -> Any:
    """A new botocore session (own credentials) sharing the model loader."""
    import botocore.session

    session = botocore.session.Session()
    session.register_component("data_loader", _shared_loader())
    return session


def _strip_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


_Passthrough = VendorPassthrough


class _PartReader:
    """Cut a chunk stream into buffers of exactly ``part_size`` (last one shorter).

    State: the unconsumed rest of the last chunk.
    """

    def __init__(self, chunks: Iterator[BufferLike], part_size: int) -> None:
        self._chunks = chunks
        self._part_size = part_size
        self._pending: memoryview | None = None
        self._eof = False

    def _next_chunk(self) -> memoryview | None:
        if self._pending is not None:
            chunk, self._pending = self._pending, None
            return chunk
        if self._eof:
            return None
        try:
            return memoryview(next(self._chunks)).cast("B")
        except StopIteration:
            self._eof = True
            return None

    def read_part(self) -> bytearray | None:
        """The next part, or ``None`` once the stream is exhausted."""
        buf = bytearray()
        while len(buf) < self._part_size:
            chunk = self._next_chunk()
            if chunk is None:
                break
            room = self._part_size - len(buf)
            if len(chunk) > room:
                buf += chunk[:room]
                self._pending = chunk[room:]
            else:
                buf += chunk
        if not buf and self.at_end():
            return None
        return buf

    def at_end(self) -> bool:
        """Whether no bytes remain (may read ahead one chunk)."""
        if self._pending is not None:
            return False
        chunk = self._next_chunk()
        if chunk is None:
            return True
        self._pending = chunk
        return False


class S3Store:
    """A bucket (or a prefix in one) on any S3-speaking server, through boto3.

    **Credentials** come from the arguments, else from boto3's usual chain:
    ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``,
    ``AWS_PROFILE``, the shared config files, instance roles. The endpoint
    comes from ``endpoint_url``, else ``AWS_ENDPOINT_URL_S3`` /
    ``AWS_ENDPOINT_URL``, else AWS. Secrets never appear in ``url``, ``repr``,
    messages or logs of this class.

    **Writes** up to ``part_size`` bytes are one PutObject; larger ones are a
    streaming multipart upload holding at most ``max_concurrency + 1`` parts
    in memory. Every part carries Content-MD5 (and, with ``checksums``, a
    ChecksumSHA256), so the server rejects bytes damaged in transit. Expected
    ``checksums`` are computed here while streaming and checked before the
    PutObject is sent or the multipart upload is completed: on a mismatch
    nothing becomes visible. A multipart upload that fails transiently is
    left on the server, and the next ``write`` of the same key continues it
    (``resume_uploads``): it lists the pending uploads for the key, re-reads
    the data, skips every part whose size and MD5 (and SHA-256, when the
    server lists it) match what was uploaded, and uploads the rest. S3 cannot
    show the metadata of a pending upload, so writes with ``metadata`` always
    start a new upload. Abandoned uploads cost storage until aborted; see
    [abort_uploads][carmigrate.storage.S3Store.abort_uploads] (for given keys),
    [abort_incomplete_uploads][carmigrate.storage.S3Store.abort_incomplete_uploads]
    (by prefix and age) or a bucket lifecycle rule.

    **Uploads lost on the way**: when the answer to CreateMultipartUpload is
    lost (a dropped connection after the server made the upload) and the
    retry makes a second one, the write aborts the first: it lists the
    pending uploads of the key before creating one (the listing resuming
    needs anyway) and, if the create was retried or failed, lists them again
    and aborts those that appeared meanwhile and did not start after its own
    (upload times are not trusted alone: moto reports one fixed time for
    every upload, Swift rounds to the second). A write whose listing failed
    tries again when it completes or fails, and logs a warning when it
    cannot; a write killed in between leaves them to
    [resume][carmigrate.migrate.resume], which calls ``abort_uploads``. The
    same holds for multipart copies.

    **Checksums** reported by ``stat``: ``md5`` only from a single-part,
    non-KMS, non-SSE-C ETag (a multipart ETag ``...-N`` is never taken for an
    MD5), ``sha256`` only from a whole-object ChecksumSHA256 (a composite
    multipart checksum is never taken for one).

    **Conditional writes** use ``If-None-Match: *`` as the server supports it
    (``conditional_write``, see
    [ConditionalWriteMode][carmigrate.storage.ConditionalWriteMode]); only
    ``"put"`` is declared atomic in ``capabilities``. The default,
    ``"auto"``, starts as ``"put"`` and switches the store to ``"multipart"``
    the first time the server refuses a conditional PutObject as not
    implemented (OpenStack Swift s3api), redoing that write. With ``"none"``,
    ``if_absent`` is refused unless ``emulate_if_absent`` is set, which
    checks with HEAD and then writes: not atomic, a racing writer can still
    be overwritten.

    **Cold objects** (``GLACIER``, ``DEEP_ARCHIVE``): ``stat`` reports the
    class and restore state, ``open_read`` raises ``ColdObject``. With
    ``cold_tier`` (the default) the store implements
    [SupportsRestore][carmigrate.storage.SupportsRestore]:
    ``request_restore(key, days=1, tier="Standard")`` asks for a restore with
    RestoreObject (``tier`` is ``"Expedited"``, ``"Standard"`` or
    ``"Bulk"``). With ``cold_tier=False`` (a server without cold classes,
    such as Swift) it does not: the constructor then returns an ``S3Store``
    without ``request_restore``, and ``capabilities.cold_tier`` is false.

    **Optional Protocols**: every S3Store implements
    [SupportsServerSideCopy][carmigrate.storage.SupportsServerSideCopy]
    (from S3 stores on the same endpoint with the same credentials) and
    [SupportsPresignedUrls][carmigrate.storage.SupportsPresignedUrls]; the
    matching capability flags are derived from them. It also implements
    [SupportsUploadCleanup][carmigrate.storage.SupportsUploadCleanup]
    (``abort_uploads``), which has no flag.

    **Retries**: every request is retried on throttling (``SlowDown``, 503,
    429, ``RequestTimeout``, ...) and connection errors, with exponential
    backoff and full jitter (``retry``); botocore's own retries are off. A
    read that breaks mid-stream reopens at the byte it stopped, pinned to the
    object's ETag.

    State: a boto3 client (thread-safe, a pool of connections). Close the
    store (or use ``with``) to release the connections.

    Args:
        bucket: Bucket name.
        prefix: Key prefix inside the bucket; keys are relative to it.
        client: A ready boto3 S3 client to use instead of building one (it is
            not closed by ``close``; its retry and checksum settings are its
            own).
        endpoint_url: The S3 endpoint, e.g. ``http://127.0.0.1:9000``.
        region: Region name (default from the environment, else
            ``us-east-1``).
        profile: A profile of the shared AWS config files.
        access_key_id: Access key id (prefer the environment).
        secret_access_key: Secret key (prefer the environment).
        session_token: Session token for temporary credentials.
        addressing_style: ``"path"``, ``"virtual"`` or ``"auto"``; default
            ``"path"`` for custom endpoints, ``"auto"`` for AWS.
        verify: TLS verification: ``False`` or a CA bundle path (default:
            ``AWS_CA_BUNDLE`` or the system's).
        part_size: Multipart part size in bytes (also the largest single
            PutObject); raised automatically to fit 10,000 parts when the
            size is known. S3 wants at least 5 MiB.
        max_concurrency: Parts of one object uploaded in parallel.
        copy_threshold: Server-side copies above this size use
            UploadPartCopy instead of CopyObject (S3 allows at most 5 GiB).
        copy_part_size: Range size of each UploadPartCopy.
        storage_class: Storage class of written objects (default: the
            bucket's).
        checksums: Send and read ChecksumSHA256 (turn off for servers that
            ignore it, such as Swift).
        conditional_write: How the server supports ``If-None-Match: *``
            (default ``"auto"``: find out on the first if-absent write).
        emulate_if_absent: Allow a non-atomic ``if_absent`` (HEAD, then
            write) when ``conditional_write`` is ``"none"``.
        cold_tier: The server has cold storage classes and RestoreObject:
            the store implements ``SupportsRestore`` (decided when the store
            is made; see above).
        resume_uploads: Continue interrupted multipart uploads (see above).
        etag_is_md5: Report single-part ETags from ``list`` as MD5. Turn off
            for buckets with SSE-KMS or SSE-C objects, whose ETags are not
            MD5s (``stat`` detects those by itself).
        retry: The retry policy (default ``RetryPolicy()``).
        connect_timeout: Seconds to wait for a connection.
        read_timeout: Seconds to wait for data on a connection.
        max_pool_connections: Connection pool size (default: enough for
            ``max_concurrency`` and a few readers).

    Raises:
        InvalidKey: The prefix is not a valid key prefix.
        ValueError: An option is out of range.
        ImportError: boto3 is not installed (``pip install carmigrate[s3]``).
    """

    def __new__(cls, *args: Any, cold_tier: bool = True, **kwargs: Any) -> S3Store:
        # SupportsRestore is a fact about the class: with a cold tier the
        # store is a _ColdTierS3Store, which adds request_restore
        if cls is S3Store and cold_tier:
            cls = _ColdTierS3Store
        return super().__new__(cls)

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: S3Client | None = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        addressing_style: Literal["path", "virtual", "auto"] | None = None,
        verify: bool | str | None = None,
        part_size: int = DEFAULT_PART_SIZE,
        max_concurrency: int = 4,
        copy_threshold: int = MAX_PUT_SIZE,
        copy_part_size: int = 512 * _MIB,
        storage_class: str | None = None,
        checksums: bool = True,
        conditional_write: ConditionalWriteMode = "auto",
        emulate_if_absent: bool = False,
        cold_tier: bool = True,
        resume_uploads: bool = True,
        etag_is_md5: bool = True,
        retry: RetryPolicy | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        max_pool_connections: int | None = None,
    ) -> None:
        if not bucket or "/" in bucket:
            raise ValueError(f"invalid bucket name {bucket!r}")
        if part_size < 1 or copy_part_size < 1 or max_concurrency < 1:
            raise ValueError(
                "part_size, copy_part_size and max_concurrency must be >= 1"
            )
        if conditional_write not in ("auto", "put", "multipart", "none"):
            raise ValueError(
                "conditional_write must be auto, put, multipart or none, not "
                f"{conditional_write!r}"
            )
        prefix = prefix.strip("/")
        if prefix:
            validate_prefix(prefix + "/")
            prefix += "/"
        self._bucket = bucket
        self._prefix = prefix
        self._part_size = part_size
        self._max_concurrency = max_concurrency
        self._copy_threshold = copy_threshold
        self._copy_part_size = copy_part_size
        self._storage_class = storage_class
        self._checksums = checksums
        self._auto = conditional_write == "auto"
        self._conditional: Literal["put", "multipart", "none"] = (
            "put" if conditional_write == "auto" else conditional_write
        )
        self._mode_lock = threading.Lock()
        self._emulate_if_absent = emulate_if_absent
        self._resume = resume_uploads
        self._etag_is_md5 = etag_is_md5
        self._retry = retry if retry is not None else RetryPolicy()
        self._closed = False
        if client is not None:
            self._client = client
            self._owns_client = False
            access_key: str | None = None
        else:
            import boto3.session
            from botocore.config import Config

            env_endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get(
                "AWS_ENDPOINT_URL"
            )
            custom_endpoint = endpoint_url or env_endpoint
            import botocore.exceptions

            try:
                session = boto3.session.Session(
                    botocore_session=_botocore_session(),
                    aws_access_key_id=access_key_id,
                    aws_secret_access_key=secret_access_key,
                    aws_session_token=session_token,
                    region_name=region,
                    profile_name=profile,
                )
                if not session.region_name:
                    region = "us-east-1"
                config = Config(
                    signature_version="s3v4",
                    retries={"total_max_attempts": 1, "mode": "standard"},
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                    connect_timeout=connect_timeout,
                    read_timeout=read_timeout,
                    max_pool_connections=max_pool_connections
                    or max(10, max_concurrency * 2 + 2),
                    s3={
                        "addressing_style": addressing_style
                        or ("path" if custom_endpoint else "auto")
                    },
                )
                self._client = session.client(
                    "s3",
                    endpoint_url=endpoint_url,
                    region_name=region,
                    config=config,
                    verify=verify,
                )
                credentials = session.get_credentials()
            except botocore.exceptions.BotoCoreError as e:
                raise StorageError(
                    f"s3://{bucket}: cannot set up the S3 client: {e}"
                ) from e
            self._owns_client = True
            access_key = credentials.access_key if credentials is not None else None
        self._endpoint = _strip_userinfo(str(self._client.meta.endpoint_url))
        self._identity = (self._endpoint, access_key or f"client-{id(self._client)}")
        self._url = (
            f"s3://{bucket}/{prefix.rstrip('/')}" if prefix else f"s3://{bucket}"
        )
        self._capabilities = derive_capabilities(
            Capabilities(
                sorted_listing=True,
                atomic_write=True,
                conditional_write=self._conditional == "put",
                native_checksums=frozenset({"md5", "sha256"} if checksums else {"md5"}),
                user_metadata=True,
                range_reads=True,
                resumable_uploads=resume_uploads,
                max_object_size=MAX_OBJECT_SIZE,
                max_key_length=DEFAULT_MAX_KEY_LENGTH - len(prefix.encode("utf-8")),
            ),
            self,
        )

    @classmethod
    def from_url(cls, url: str, **options: Any) -> S3Store:
        """Open ``s3://bucket/prefix`` with keyword ``options`` of the constructor.

        Raises:
            ValueError: The URL is not ``s3://bucket[/prefix]`` or carries
                credentials.
        """
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.hostname:
            raise ValueError(
                f"not an s3://bucket[/prefix] URL: {_strip_userinfo(url)!r}"
            )
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "credentials in s3:// URLs are not accepted; use the environment "
                "(AWS_ACCESS_KEY_ID, ...) or keyword options"
            )
        if parts.query or parts.fragment:
            raise ValueError(
                "s3:// URLs take no query or fragment; pass keyword options"
            )
        return cls(parts.netloc, parts.path.lstrip("/"), **options)

    def __repr__(self) -> str:
        return f"S3Store({self._url!r}, endpoint_url={self._endpoint!r})"

    @property
    def url(self) -> str:
        """``s3://bucket/prefix``; the endpoint is in ``endpoint_url``."""
        return self._url

    @property
    def bucket(self) -> str:
        """The bucket name."""
        return self._bucket

    @property
    def prefix(self) -> str:
        """The key prefix inside the bucket (``""`` or ending in ``/``)."""
        return self._prefix

    @property
    def client(self) -> S3Client:
        """The boto3 client, for what carmigrate does not wrap (bucket setup,
        event hooks). Its errors are botocore's, untranslated.
        """  # noqa: D205
        return self._client

    @property
    def endpoint_url(self) -> str:
        """The endpoint the client talks to (without any user info)."""
        return self._endpoint

    @property
    def capabilities(self) -> Capabilities:
        """As configured: conditional writes, checksums and cold tier depend
        on the server (see the constructor); server-side copy and presigned
        URLs always. With ``conditional_write="auto"``, ``conditional_write``
        turns false once the server has refused a conditional PutObject.
        """  # noqa: D205
        return self._capabilities

    @property
    def conditional_write_mode(self) -> Literal["put", "multipart", "none"]:
        """How if-absent writes are made now (``"auto"`` has become one of these).

        ``"put"`` until an ``"auto"`` store meets a server that refuses
        conditional PutObjects, ``"multipart"`` after that; otherwise the
        mode the store was opened with.
        """
        return self._conditional

    # ------------------------------------------------------------------
    # plumbing

    def _full(self, key: str) -> str:
        validate_key(key, max_length=self._capabilities.max_key_length)
        return self._prefix + key

    def _where(self, op: str, key: str | None) -> str:
        return f"{self._url}: {op}" + (f" {key!r}" if key is not None else "")

    def _translate(
        self, exc: BaseException, key: str | None, op: str
    ) -> StorageError | None:
        """Map a botocore/urllib3 error to carmigrate's tree, or None if foreign."""
        import botocore.exceptions as bex

        where = self._where(op, key)
        if isinstance(exc, CarmigrateError):
            return None
        if isinstance(exc, bex.ClientError):
            response: Mapping[str, Any] = exc.response
            error: Mapping[str, Any] = response.get("Error", {})
            code = str(error.get("Code", ""))
            message = str(error.get("Message", "")) or str(exc)
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            detail = f"{code or status}: {message}"
            if code in _NOT_FOUND or (status == 404 and code != "NoSuchBucket"):
                return ObjectNotFound(f"{where}: no such object", key=key)
            if code == "NoSuchBucket":
                return StorageError(
                    f"{where}: bucket {self._bucket!r} does not exist",
                    key=key,
                    transient=False,
                )
            if code == "PreconditionFailed" or status == 412:
                return ObjectExists(
                    f"{where}: an object already exists ({detail})", key=key
                )
            if code == "InvalidObjectState":
                return ColdObject(
                    f"{where}: the object is in a cold storage class; restore it first",
                    key=key,
                    storage_class=error.get("StorageClass"),
                )
            if code in _THROTTLED or status in _RETRY_STATUS:
                return BackendUnavailable(
                    f"{where}: server busy or failing ({detail})", key=key
                )
            if code in _DENIED or status == 403:
                return StorageError(
                    f"{where}: access denied ({detail})", key=key, transient=False
                )
            if code in _BAD_DIGEST:
                return StorageError(
                    f"{where}: the server received different bytes than were sent ({detail})",
                    key=key,
                    transient=True,
                )
            return StorageError(f"{where}: {detail}", key=key, transient=False)
        if isinstance(exc, (bex.NoCredentialsError, bex.PartialCredentialsError)):
            return StorageError(
                f"{where}: no usable S3 credentials (set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, a profile, or pass them)",
                key=key,
                transient=False,
            )
        if isinstance(exc, bex.SSLError):
            return StorageError(f"{where}: TLS error: {exc}", key=key, transient=False)
        if isinstance(
            exc,
            (
                bex.ConnectionError,
                bex.HTTPClientError,
                bex.IncompleteReadError,
                bex.ResponseStreamingError,
            ),
        ):
            return BackendUnavailable(f"{where}: connection problem: {exc}", key=key)
        if isinstance(exc, bex.BotoCoreError):
            return StorageError(f"{where}: {exc}", key=key, transient=False)
        try:
            import urllib3.exceptions
        except ImportError:  # pragma: no cover - botocore depends on urllib3
            pass
        else:
            if isinstance(exc, urllib3.exceptions.HTTPError):
                return BackendUnavailable(
                    f"{where}: connection problem: {exc}", key=key
                )
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
        *,
        passthrough: frozenset[str] = frozenset(),
        **kwargs: Any,
    ) -> T:
        """Call a client method with retries; translate what finally fails.

        Error codes in ``passthrough`` raise ``_Passthrough`` untranslated.
        """
        return call_translated(
            self._retry,
            functools.partial(fn, **kwargs),
            lambda e: self._translate(e, key, op),
            self._error_code,
            passthrough,
        )

    @staticmethod
    def _error_code(exc: BaseException) -> str | None:
        response = getattr(exc, "response", None)
        if isinstance(response, Mapping):
            code = response.get("Error", {}).get("Code")
            return str(code) if code is not None else None
        return None

    # ------------------------------------------------------------------
    # stat / read

    def _info(
        self, key: str, head: HeadObjectOutputTypeDef | Mapping[str, Any]
    ) -> ObjectInfo:
        etag = str(head.get("ETag") or "").strip('"') or None
        multipart = etag is not None and "-" in etag
        checksums: dict[str, str] = {}
        encrypted = head.get("ServerSideEncryption") in (
            "aws:kms",
            "aws:kms:dsse",
        ) or bool(head.get("SSECustomerAlgorithm"))
        if etag is not None and not multipart and not encrypted and _MD5_RE.match(etag):
            checksums["md5"] = etag
        sha = head.get("ChecksumSHA256")
        if (
            sha
            and not multipart
            and head.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT"
            and "-" not in sha
        ):
            hex_sha = _b64_to_hex(sha, 32)
            if hex_sha is not None:
                checksums["sha256"] = hex_sha
        return ObjectInfo(
            key=key,
            size=int(head.get("ContentLength", 0)),
            mtime=head.get("LastModified"),
            etag=etag,
            checksums=checksums,
            storage_class=head.get("StorageClass") or "STANDARD",
            metadata=dict(head.get("Metadata") or {}),
            restore=_parse_restore(head.get("Restore")),
        )

    def _head(self, key: str, full: str, op: str = "stat") -> Mapping[str, Any]:
        kwargs: dict[str, Any] = {"Bucket": self._bucket, "Key": full}
        if self._checksums:
            kwargs["ChecksumMode"] = "ENABLED"
        return self._call(self._client.head_object, key, op, **kwargs)

    def stat(self, key: str) -> ObjectInfo:
        """Describe an object with HEAD (see [Store.stat][carmigrate.storage.Store.stat])."""
        full = self._full(key)
        return self._info(key, self._head(key, full))

    def _cold_error(self, key: str, full: str, cause: BaseException) -> NoReturn:
        try:
            info = self._info(key, self._head(key, full, "open_read"))
        except StorageError:
            raise cause from None
        raise ColdObject(
            f"{self._where('open_read', key)}: the object is in storage class "
            f"{info.storage_class}"
            + (
                " and its restore is in progress"
                if info.restore
                else "; request a restore"
            ),
            key=key,
            storage_class=info.storage_class,
            restore_in_progress=bool(info.restore and info.restore.in_progress),
            restore_expiry=(
                info.restore.expiry.isoformat()
                if info.restore and info.restore.expiry
                else None
            ),
        ) from cause

    def _get(
        self, key: str, full: str, start: int, end: int | None, etag: str | None
    ) -> Any:
        kwargs: dict[str, Any] = {"Bucket": self._bucket, "Key": full}
        if start > 0 or end is not None:
            kwargs["Range"] = f"bytes={start}-" + (
                str(end - 1) if end is not None else ""
            )
        if etag is not None:
            kwargs["IfMatch"] = f'"{etag}"'
        return self._call(
            self._client.get_object,
            key,
            "open_read",
            passthrough=frozenset({"InvalidRange", "PreconditionFailed"}),
            **kwargs,
        )

    def open_read(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> BinaryIO:
        """Open a range with a ranged GET (see [Store.open_read][carmigrate.storage.Store.open_read]).

        If the connection breaks mid-stream, the read continues with a new
        ranged GET pinned to the object's ETag (``If-Match``), up to the retry
        policy's attempts; if the object was replaced meanwhile, the read
        raises a ``StorageError`` instead of mixing versions.
        """
        check_range(start, end)
        full = self._full(key)
        if end is not None and end <= start:
            info = self.stat(key)
            if info.cold:
                self._cold_error(key, full, ColdObject("cold", key=key))
            return io.BytesIO(b"")
        try:
            response = self._get(key, full, start, end, None)
        except _Passthrough as p:
            if p.code == "InvalidRange":  # start is at or past the end
                return io.BytesIO(b"")
            self._raise(p.original, key, "open_read")
        except ColdObject as e:
            self._cold_error(key, full, e)
        return open_checked(_S3Reader(self, key, full, start, response).raw())

    # ------------------------------------------------------------------
    # write

    def _if_absent_mode(
        self, if_absent: bool, key: str
    ) -> Literal["", "put", "multipart", "emulate"]:
        if not if_absent:
            return ""
        if self._conditional != "none":
            return self._conditional
        if self._emulate_if_absent:
            return "emulate"
        raise StorageError(
            f"{self._where('write', key)}: this server cannot write if-absent atomically "
            "(conditional_write='none'); open the store with emulate_if_absent=True to "
            "accept a non-atomic check",
            key=key,
            transient=False,
        )

    def _exists(self, key: str, full: str) -> bool:
        try:
            self._head(key, full, "write")
        except ObjectNotFound:
            return False
        return True

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
            Size, ETag and the digests computed while sending: MD5 and (with
            ``checksums``) SHA-256 of a single-part object, and every
            algorithm of ``checksums``. ``mtime`` is not known without a
            further HEAD and is ``None``.
        """
        full = self._full(key)
        expected = normalize_checksums(checksums)
        if size is not None and size > MAX_OBJECT_SIZE:
            raise StorageError(
                f"{self._where('write', key)}: {size} bytes is over S3's limit of "
                f"{MAX_OBJECT_SIZE} bytes",
                key=key,
            )
        mode = self._if_absent_mode(if_absent, key)
        if mode == "emulate" and self._exists(key, full):
            raise ObjectExists(f"{self._where('write', key)}: already exists", key=key)
        part_size = self._part_size
        if size is not None and size > part_size * MAX_PARTS:
            part_size = -(-size // MAX_PARTS)
            part_size = -(-part_size // _MIB) * _MIB
        parts = _PartReader(iter_chunks(data, min(part_size, _MIB)), part_size)
        first = parts.read_part() or bytearray()
        if parts.at_end() and mode != "multipart":
            info = self._put_single(
                key, full, first, size, expected, metadata, mode == "put"
            )
            if info is not None:
                return info
            # "auto" met a server that refuses conditional PUTs: the store
            # is now in "multipart" mode; the one part is in memory
            mode = "multipart"
        return self._put_multipart(
            key,
            full,
            first,
            parts,
            size,
            expected,
            metadata,
            conditional=mode in ("put", "multipart"),
        )

    def _put_single(
        self,
        key: str,
        full: str,
        body: bytearray,
        size: int | None,
        expected: dict[str, str],
        metadata: Mapping[str, str] | None,
        conditional: bool,
    ) -> ObjectInfo | None:
        """One PutObject; ``None`` if an ``"auto"`` store just learnt that the
        server refuses conditional PUTs (nothing was written).
        """  # noqa: D205
        if size is not None and len(body) != size:
            raise size_mismatch(self._url, key, size, len(body))
        algos = set(expected) | {"md5"} | ({"sha256"} if self._checksums else set())
        digests = Digests(algos)
        digests.update(body)
        actual = digests.hexdigests()
        verify_checksums(expected, actual, url=self._url, key=key)
        kwargs: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": full,
            "Body": body,  # botocore takes bytearray: no copy
            "ContentMD5": _b64(bytes.fromhex(actual["md5"])),
        }
        if self._checksums:
            kwargs["ChecksumAlgorithm"] = "SHA256"
            kwargs["ChecksumSHA256"] = _b64(bytes.fromhex(actual["sha256"]))
        if metadata:
            kwargs["Metadata"] = dict(metadata)
        if self._storage_class:
            kwargs["StorageClass"] = self._storage_class
        if conditional:
            kwargs["IfNoneMatch"] = "*"
        probe = conditional and self._auto
        try:
            response = self._call(
                self._client.put_object,
                key,
                "write",
                passthrough=_UNSUPPORTED if probe else frozenset(),
                **kwargs,
            )
        except _Passthrough as p:
            self._conditional_put_refused(p)
            return None
        return ObjectInfo(
            key=key,
            size=len(kwargs["Body"]),
            etag=str(response.get("ETag", "")).strip('"') or None,
            checksums=actual,
            storage_class=self._storage_class or "STANDARD",
            metadata=dict(metadata or {}),
        )

    def _conditional_put_refused(self, refusal: _Passthrough) -> None:
        """Switch an ``"auto"`` store to ``"multipart"`` (once; thread-safe)."""
        with self._mode_lock:
            if self._conditional != "put":
                return  # another thread switched already
            self._conditional = "multipart"
            self._capabilities = attrs.evolve(
                self._capabilities, conditional_write=False
            )
        error: Mapping[str, Any] = getattr(refusal.original, "response", {}).get(
            "Error", {}
        )
        _log.info(
            "%s: the server refuses conditional PutObject (%s: %s); if-absent writes "
            "now complete a multipart upload with If-None-Match instead (not atomic "
            "against racing writers)",
            self._url,
            refusal.code,
            error.get("Message", ""),
        )

    # ------------------------------------------------------------------
    # pending multipart uploads

    def _iter_uploads(
        self, key: str | None, prefix: str, op: str
    ) -> Iterator[Mapping[str, Any]]:
        """Every pending upload whose full key starts with ``prefix``, in listing order."""
        kwargs: dict[str, Any] = {"Bucket": self._bucket, "Prefix": prefix}
        while True:
            page = self._call(self._client.list_multipart_uploads, key, op, **kwargs)
            yield from page.get("Uploads", [])
            if not page.get("IsTruncated"):
                return
            kwargs["KeyMarker"] = page.get("NextKeyMarker", "")
            kwargs["UploadIdMarker"] = page.get("NextUploadIdMarker", "")

    def _uploads_of(self, key: str, full: str, op: str) -> list[Mapping[str, Any]]:
        """The pending uploads of exactly ``full``, in listing order."""
        return [u for u in self._iter_uploads(key, full, op) if u.get("Key") == full]

    def _pick_resumable(
        self, uploads: list[Mapping[str, Any]]
    ) -> Mapping[str, Any] | None:
        """The upload of one key a write of this store would continue: the newest
        whose storage class and checksum algorithm match (ties: the last listed).
        """  # noqa: D205
        want_class = self._storage_class or "STANDARD"
        want_algo = "SHA256" if self._checksums else None
        epoch = datetime.datetime.min.replace(tzinfo=datetime.UTC)
        best: tuple[datetime.datetime, int] | None = None
        picked: Mapping[str, Any] | None = None
        for n, up in enumerate(uploads):
            if (up.get("StorageClass") or "STANDARD") != want_class:
                continue
            algo = up.get("ChecksumAlgorithm")
            if algo is not None and algo != want_algo:
                continue
            rank = (up.get("Initiated") or epoch, n)
            if best is None or rank > best:
                best, picked = rank, up
        return picked

    def _find_upload(
        self, key: str, full: str, uploads: list[Mapping[str, Any]]
    ) -> tuple[Mapping[str, Any], dict[int, Mapping[str, Any]]] | None:
        """The upload among ``uploads`` (of ``full``) to continue, and its parts."""
        picked = self._pick_resumable(uploads)
        if picked is None:
            return None
        upload_id = str(picked["UploadId"])
        existing: dict[int, Mapping[str, Any]] = {}
        marker = 0
        while True:
            try:
                page_parts = self._call(
                    self._client.list_parts,
                    key,
                    "write",
                    passthrough=frozenset({"NoSuchUpload"}),
                    Bucket=self._bucket,
                    Key=full,
                    UploadId=upload_id,
                    PartNumberMarker=marker,
                )
            except _Passthrough:
                return None  # completed or aborted meanwhile
            for part in page_parts.get("Parts", []):
                existing[int(part["PartNumber"])] = part
            if not page_parts.get("IsTruncated"):
                break
            marker = int(page_parts.get("NextPartNumberMarker", 0))
        return picked, existing

    def _create_upload(
        self,
        key: str,
        full: str,
        op: str,
        kwargs: Mapping[str, Any],
        known: list[Mapping[str, Any]] | None,
    ) -> tuple[Mapping[str, Any], Callable[[], None] | None]:
        """CreateMultipartUpload, aborting the uploads of lost answers.

        ``known``: the key's pending uploads listed just before (``None``:
        not listed). Returns the server's answer and, if uploads of lost answers
        may still be pending (the check could not list them), a function to
        call when the write ends, which tries again and logs a warning if it
        still cannot.

        Raises:
            StorageError: The create failed (uploads its attempts may have
                made were aborted, as far as they could be listed).
        """
        attempts = 0
        started = datetime.datetime.now(datetime.UTC)

        def create(**kw: Any) -> Any:
            nonlocal attempts
            attempts += 1
            return self._client.create_multipart_upload(**kw)

        try:
            created: Mapping[str, Any] = self._call(create, key, op, **kwargs)
        except Exception:
            if attempts:
                self._abort_lost_uploads(key, full, op, known, None, started)
            raise
        upload_id = str(created["UploadId"])
        if attempts == 1 or self._abort_lost_uploads(
            key, full, op, known, upload_id, started
        ):
            return created, None

        def again() -> None:
            if not self._abort_lost_uploads(key, full, op, known, upload_id, started):
                _log.warning(
                    "%s: a create of an upload of %r was retried, and the uploads "
                    "of its lost answers could not be listed; they may stay "
                    "pending (see S3Store.abort_uploads)",
                    self._url,
                    key,
                )

        return created, again

    def _known_uploads(
        self, key: str, full: str, op: str, *, required: bool
    ) -> list[Mapping[str, Any]] | None:
        """The pending uploads of ``full``; ``None`` if they cannot be listed,
        unless ``required``.
        """  # noqa: D205
        try:
            return self._uploads_of(key, full, op)
        except StorageError:
            if required:
                raise
            return None

    def _abort_lost_uploads(
        self,
        key: str,
        full: str,
        op: str,
        known: list[Mapping[str, Any]] | None,
        ours: str | None,
        started: datetime.datetime,
    ) -> bool:
        """Abort the uploads of ``full`` that creates of this write made but whose
        answers were lost; return whether the uploads could be listed.

        Those are the key's uploads that are not ``ours``, were not ``known``
        before the create, and did not start after ``ours``. Without
        ``known``, only uploads that started in the create's time window
        (measured back from ``ours``, on the server's clock) count, and none
        without ``ours``. Never raises.
        """  # noqa: D205
        try:
            uploads = self._uploads_of(key, full, op)
        except StorageError as e:
            _log.debug("%s: cannot list uploads of %r: %s", self._url, key, e)
            return False
        mine = next((u for u in uploads if u.get("UploadId") == ours), None)
        anchor: datetime.datetime | None = mine.get("Initiated") if mine else None
        known_ids = None if known is None else {u.get("UploadId") for u in known}
        if known_ids is None and anchor is None:
            return True  # nothing to tell our uploads from others' by
        window = datetime.datetime.now(datetime.UTC) - started + _CLOCK_SLACK
        lost = []
        for up in uploads:
            upload_id = up.get("UploadId")
            if upload_id == ours or (known_ids is not None and upload_id in known_ids):
                continue
            initiated = up.get("Initiated")
            if anchor is not None and initiated is not None:
                if initiated > anchor + _CLOCK_SLACK:
                    continue  # started after ours: another writer's
                if known_ids is None and initiated < anchor - window:
                    continue
            elif known_ids is None:
                continue
            lost.append(str(upload_id))
        done = True
        for upload_id in lost:
            _log.info(
                "%s: aborting upload %s of %r, made by a create whose answer was lost",
                self._url,
                upload_id,
                key,
            )
            done = self._abort(key, full, upload_id) and done
        return done

    def _abort(self, key: str, full: str, upload_id: str) -> bool:
        """Abort one upload, best effort; whether it is gone."""
        # a lifecycle rule, abort_uploads or abort_incomplete_uploads cleans up
        try:
            self._call(
                self._client.abort_multipart_upload,
                key,
                "write",
                passthrough=frozenset({"NoSuchUpload"}),
                Bucket=self._bucket,
                Key=full,
                UploadId=upload_id,
            )
        except _Passthrough:
            return True  # completed or aborted meanwhile
        except StorageError:
            return False
        return True

    def _put_multipart(
        self,
        key: str,
        full: str,
        first: bytearray,
        parts: _PartReader,
        size: int | None,
        expected: dict[str, str],
        metadata: Mapping[str, str] | None,
        *,
        conditional: bool,
    ) -> ObjectInfo:
        resumable = self._resume and not metadata
        # listed before any create: to continue one of them, and to tell the
        # uploads of lost create answers from older ones
        known = self._known_uploads(key, full, "write", required=resumable)
        found = self._find_upload(key, full, known) if resumable and known else None
        recheck: Callable[[], None] | None = None
        if found is not None:
            upload, existing = found
        else:
            kwargs: dict[str, Any] = {"Bucket": self._bucket, "Key": full}
            if metadata:
                kwargs["Metadata"] = dict(metadata)
            if self._storage_class:
                kwargs["StorageClass"] = self._storage_class
            if self._checksums:
                kwargs["ChecksumAlgorithm"] = "SHA256"
            upload, recheck = self._create_upload(key, full, "write", kwargs, known)
            existing = {}
        upload_id = str(upload["UploadId"])
        # part checksums go into CompleteMultipartUpload only if the server
        # knows them: it names the upload's algorithm or echoes a part's
        # checksum. Swift s3api does neither, and refuses them there
        # (MalformedXML).
        declared = upload.get("ChecksumAlgorithm") == "SHA256"
        shas: dict[int, bytes] = {}
        whole = Digests(expected)
        done: dict[int, CompletedPartTypeDef] = {}
        total = 0
        keep = False
        completed = False
        pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self._max_concurrency, thread_name_prefix="carmigrate-s3-part"
        )
        inflight: collections.deque[concurrent.futures.Future[CompletedPartTypeDef]] = (
            collections.deque()
        )
        try:
            number = 0
            buf: bytearray | None = first
            while buf is not None:
                number += 1
                if number > MAX_PARTS:
                    raise StorageError(
                        f"{self._where('write', key)}: more than {MAX_PARTS} parts of "
                        f"{len(first)} bytes; pass size= or a larger part_size",
                        key=key,
                    )
                total += len(buf)
                if size is not None and total > size:
                    raise size_mismatch(self._url, key, size, total)
                whole.update(buf)
                md5 = hashlib.md5(buf, usedforsecurity=False).digest()
                sha = hashlib.sha256(buf).digest() if self._checksums else None
                if sha is not None:
                    shas[number] = sha
                old = existing.get(number)
                if old is not None and self._same_part(old, buf, md5, sha):
                    done[number] = {"PartNumber": number, "ETag": old["ETag"]}
                else:
                    inflight.append(
                        pool.submit(
                            self._upload_part,
                            key,
                            full,
                            upload_id,
                            number,
                            buf,
                            md5,
                            sha,
                        )
                    )
                del buf
                while len(inflight) >= self._max_concurrency:
                    result = inflight.popleft().result()
                    done[result["PartNumber"]] = result
                buf = None if parts.at_end() else parts.read_part()
            while inflight:
                result = inflight.popleft().result()
                done[result["PartNumber"]] = result
            if size is not None and total != size:
                raise size_mismatch(self._url, key, size, total)
            actual = whole.hexdigests()
            verify_checksums(expected, actual, url=self._url, key=key)
            if declared or any("ChecksumSHA256" in p for p in done.values()):
                for n, sha_n in shas.items():
                    done[n].setdefault("ChecksumSHA256", _b64(sha_n))
            complete: dict[str, Any] = {
                "Bucket": self._bucket,
                "Key": full,
                "UploadId": upload_id,
                "MultipartUpload": {"Parts": [done[n] for n in sorted(done)]},
            }
            if conditional:
                complete["IfNoneMatch"] = "*"
            response = self._call(
                self._client.complete_multipart_upload,
                key,
                "write",
                passthrough=frozenset({"NoSuchUpload"}),
                **complete,
            )
            completed = True
        except _Passthrough as p:
            raise StorageError(
                f"{self._where('write', key)}: the multipart upload vanished (aborted "
                "by another writer or a lifecycle rule)",
                key=key,
                transient=True,
            ) from p.original
        except BaseException as e:
            keep = (
                self._resume
                and not metadata
                and (
                    (
                        isinstance(e, CarmigrateError)
                        and e.transient
                        and not isinstance(e, ObjectExists)
                    )
                    or not isinstance(e, Exception)
                )
            )
            raise
        finally:
            for f in inflight:
                f.cancel()
            pool.shutdown(wait=True)
            if not completed and not keep:
                self._abort(key, full, upload_id)
            if recheck is not None:
                recheck()
        return ObjectInfo(
            key=key,
            size=total,
            etag=str(response.get("ETag", "")).strip('"') or None,
            checksums=actual,
            storage_class=self._storage_class or "STANDARD",
            metadata=dict(metadata or {}),
        )

    @staticmethod
    def _same_part(
        old: Mapping[str, Any], buf: bytearray, md5: bytes, sha: bytes | None
    ) -> bool:
        if int(old.get("Size", -1)) != len(buf):
            return False
        listed_sha = old.get("ChecksumSHA256")
        if listed_sha and sha is not None and _b64_to_hex(listed_sha, 32) != sha.hex():
            return False
        etag = str(old.get("ETag", "")).strip('"')
        return etag == md5.hex()

    def _upload_part(
        self,
        key: str,
        full: str,
        upload_id: str,
        number: int,
        buf: bytearray,
        md5: bytes,
        sha: bytes | None,
    ) -> CompletedPartTypeDef:
        kwargs: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": full,
            "UploadId": upload_id,
            "PartNumber": number,
            "Body": buf,  # botocore takes bytearray: no copy
            "ContentMD5": _b64(md5),
        }
        if sha is not None:
            kwargs["ChecksumAlgorithm"] = "SHA256"
            kwargs["ChecksumSHA256"] = _b64(sha)
        response = self._call(
            self._client.upload_part, key, f"write (part {number})", **kwargs
        )
        part: CompletedPartTypeDef = {"PartNumber": number, "ETag": response["ETag"]}
        if sha is not None and response.get("ChecksumSHA256"):
            part["ChecksumSHA256"] = response["ChecksumSHA256"]  # the server knows it
        return part

    # ------------------------------------------------------------------
    # list / delete

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects under ``prefix`` in key order, paginated lazily.

        Objects whose relative key is not a valid carmigrate key (for
        example ``dir/`` markers made by consoles) are skipped;
        [list_all][carmigrate.storage.S3Store.list_all] reports them.
        """
        validate_prefix(prefix)
        return self._list(prefix)  # type: ignore[return-value]

    def list_all(self, prefix: str = "") -> Iterator[ObjectInfo | Unmigratable]:
        """``list(prefix)`` and the objects it leaves out.

        See [SupportsFullListing][carmigrate.storage.SupportsFullListing]:
        every object whose key breaks carmigrate's key rules (``a//b``,
        ``./x``, ``a/../b``, a control character, a folder marker ``dir/``
        with content) is an ``Unmigratable`` naming the rule. Empty folder
        markers (``dir/`` of 0 bytes, as consoles make them) hold no data and
        are left out.
        """
        validate_prefix(prefix)
        return self._list(prefix, problems=True)

    def _list(
        self, prefix: str, problems: bool = False
    ) -> Iterator[ObjectInfo | Unmigratable]:
        kwargs: dict[str, Any] = {
            "Bucket": self._bucket,
            "Prefix": self._prefix + prefix,
        }
        cut = len(self._prefix)
        while True:
            page = self._call(self._client.list_objects_v2, prefix, "list", **kwargs)
            for obj in page.get("Contents", []):
                rel = obj["Key"][cut:]
                try:
                    validate_key(rel, max_length=None)
                except InvalidKey as e:
                    size = int(obj.get("Size", 0))
                    if problems and not (size == 0 and rel.endswith("/")):
                        yield Unmigratable(
                            name=rel, reason=f"key breaks the key rules: {e}", size=size
                        )
                    continue
                etag = str(obj.get("ETag") or "").strip('"') or None
                checksums = {}
                if self._etag_is_md5 and etag is not None and _MD5_RE.match(etag):
                    checksums["md5"] = etag
                yield ObjectInfo(
                    key=rel,
                    size=int(obj.get("Size", 0)),
                    mtime=obj.get("LastModified"),
                    etag=etag,
                    checksums=checksums,
                    storage_class=obj.get("StorageClass") or "STANDARD",
                )
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            kwargs["ContinuationToken"] = token

    def delete(self, key: str) -> None:
        """Remove an object; a missing key is not an error."""
        full = self._full(key)
        self._call(
            self._client.delete_object, key, "delete", Bucket=self._bucket, Key=full
        )

    def abort_incomplete_uploads(
        self, prefix: str = "", *, older_than: datetime.timedelta | None = None
    ) -> int:
        """Abort pending multipart uploads under ``prefix`` (they cost storage).

        Args:
            prefix: Key prefix, relative to the store.
            older_than: Only uploads initiated at least this long ago.

        Returns:
            How many uploads were aborted.

        Raises:
            StorageError: Listing or aborting failed.
        """
        validate_prefix(prefix)
        now = datetime.datetime.now(datetime.UTC)
        pending: list[tuple[str, str]] = []
        for up in self._iter_uploads(prefix, self._prefix + prefix, "abort uploads"):
            initiated = up.get("Initiated")
            if (
                older_than is not None
                and initiated is not None
                and now - initiated < older_than
            ):
                continue
            pending.append((up["Key"], up["UploadId"]))
        for full, upload_id in pending:
            self._call(
                self._client.abort_multipart_upload,
                full,
                "abort upload",
                Bucket=self._bucket,
                Key=full,
                UploadId=upload_id,
            )
        return len(pending)

    def abort_uploads(
        self, keys: Iterable[str], *, keep_resumable: Iterable[str] = ()
    ) -> UploadCleanup:
        """Abort the pending multipart uploads of ``keys`` (see [SupportsUploadCleanup][carmigrate.storage.SupportsUploadCleanup]).

        Lists the pending uploads under the store's prefix once (the keys
        are only read if some are pending), then aborts those of ``keys``
        and, of each ``keep_resumable`` key, all but the one the next write
        would continue (with ``resume_uploads``: the newest with this
        store's storage class and checksum setting). An upload that is gone
        by the time it is aborted counts as aborted.

        Raises:
            StorageError: The pending uploads could not be listed.
        """
        cut = len(self._prefix)
        pending: dict[str, list[Mapping[str, Any]]] = {}
        for up in self._iter_uploads(None, self._prefix, "abort uploads"):
            pending.setdefault(str(up["Key"])[cut:], []).append(up)
        doomed: list[PendingUpload] = []
        kept: list[PendingUpload] = []
        for resumable, group in ((True, keep_resumable), (False, keys)):
            if not pending:
                break
            for key in group:
                uploads = pending.pop(key, None)
                if uploads is None:
                    continue
                keep = (
                    self._pick_resumable(uploads)
                    if resumable and self._resume
                    else None
                )
                for up in uploads:
                    item = PendingUpload(
                        key=key,
                        upload_id=str(up["UploadId"]),
                        initiated=up.get("Initiated"),
                    )
                    (kept if up is keep else doomed).append(item)
                if not pending:
                    break
        aborted: list[PendingUpload] = []
        failed: list[tuple[PendingUpload, str]] = []
        for item in doomed:
            full = self._prefix + item.key
            try:
                self._call(
                    self._client.abort_multipart_upload,
                    item.key,
                    "abort upload",
                    passthrough=frozenset({"NoSuchUpload"}),
                    Bucket=self._bucket,
                    Key=full,
                    UploadId=item.upload_id,
                )
            except _Passthrough:
                pass  # gone meanwhile
            except StorageError as e:
                failed.append((item, str(e)))
                continue
            aborted.append(item)
        return UploadCleanup(
            aborted=tuple(aborted), kept=tuple(kept), failed=tuple(failed)
        )

    # ------------------------------------------------------------------
    # optional protocols

    def can_copy_from(self, source: Store) -> bool:
        """True for an S3Store on the same endpoint with the same credentials."""
        return isinstance(source, S3Store) and source._identity == self._identity

    def copy_from(
        self,
        source: Store,
        source_key: str,
        key: str,
        *,
        if_absent: bool = False,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Copy on the server: CopyObject, or UploadPartCopy above ``copy_threshold``.

        If-absent copies always go through a multipart copy, completed with
        ``If-None-Match: *`` (servers ignore or refuse the condition on
        CopyObject). Each UploadPartCopy is pinned to the source's ETag, so a
        source replaced mid-copy fails the copy instead of mixing versions.
        See [SupportsServerSideCopy][carmigrate.storage.SupportsServerSideCopy].
        """
        if not isinstance(source, S3Store) or not self.can_copy_from(source):
            raise StorageError(
                f"{self._where('copy', key)}: cannot copy on the server from {source.url}",
                key=key,
            )
        src_full = source._full(source_key)
        full = self._full(key)
        head = source._head(source_key, src_full, "copy")
        info = source._info(source_key, head)
        if info.cold:
            raise ColdObject(
                f"{source._where('copy', source_key)}: the object is in storage class "
                f"{info.storage_class}; restore it first",
                key=source_key,
                storage_class=info.storage_class,
                restore_in_progress=bool(info.restore and info.restore.in_progress),
            )
        mode = self._if_absent_mode(if_absent, key)
        if mode == "emulate" and self._exists(key, full):
            raise ObjectExists(f"{self._where('copy', key)}: already exists", key=key)
        copy_source = {"Bucket": source._bucket, "Key": src_full}
        if info.size <= self._copy_threshold and mode in ("", "emulate"):
            kwargs: dict[str, Any] = {
                "Bucket": self._bucket,
                "Key": full,
                "CopySource": copy_source,
                "MetadataDirective": "COPY" if metadata is None else "REPLACE",
            }
            if metadata is not None:
                kwargs["Metadata"] = dict(metadata)
            if self._storage_class:
                kwargs["StorageClass"] = self._storage_class
            if self._checksums:
                kwargs["ChecksumAlgorithm"] = "SHA256"
            # one request copies one version of the source: nothing to pin
            self._call(self._client.copy_object, key, "copy", **kwargs)
        else:
            self._copy_multipart(
                key,
                full,
                source,
                source_key,
                head,
                info,
                metadata,
                conditional=bool(mode) and mode != "emulate",
            )
        return self.stat(key)

    def _copy_multipart(
        self,
        key: str,
        full: str,
        source: S3Store,
        source_key: str,
        head: Mapping[str, Any],
        info: ObjectInfo,
        metadata: Mapping[str, str] | None,
        *,
        conditional: bool,
    ) -> None:
        kwargs: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": full,
            "Metadata": dict(info.metadata if metadata is None else metadata),
        }
        if head.get("ContentType"):
            kwargs["ContentType"] = head["ContentType"]
        if self._storage_class:
            kwargs["StorageClass"] = self._storage_class
        if self._checksums:
            kwargs["ChecksumAlgorithm"] = "SHA256"
        known = self._known_uploads(key, full, "copy", required=False)
        created, recheck = self._create_upload(key, full, "copy", kwargs, known)
        upload_id = str(created["UploadId"])
        completed = False
        copy_source = {"Bucket": source._bucket, "Key": source._prefix + source_key}
        # Pin every part to the version we looked at. Some servers (Swift
        # s3api) cannot match a multipart ETag in x-amz-copy-source-if-match,
        # so multipart sources are pinned by their modification time, and
        # the source is checked again before completing.
        pin: dict[str, Any] = {}
        if info.etag and "-" not in info.etag:
            pin["CopySourceIfMatch"] = f'"{info.etag}"'
        elif head.get("LastModified") is not None:
            pin["CopySourceIfUnmodifiedSince"] = head["LastModified"]
        changed = StorageError(
            f"{source._where('copy', source_key)}: the source changed during the copy",
            key=source_key,
            transient=True,
        )
        try:
            step = max(self._copy_part_size, -(-info.size // MAX_PARTS))
            ranges = [
                (n + 1, off, min(info.size, off + step) - 1)
                for n, off in enumerate(range(0, info.size, step))
            ]

            def copy_part(number: int, first: int, last: int) -> CompletedPartTypeDef:
                try:
                    r = self._call(
                        self._client.upload_part_copy,
                        key,
                        f"copy (part {number})",
                        passthrough=frozenset({"PreconditionFailed"}),
                        Bucket=self._bucket,
                        Key=full,
                        UploadId=upload_id,
                        PartNumber=number,
                        CopySource=copy_source,
                        CopySourceRange=f"bytes={first}-{last}",
                        **pin,
                    )
                except _Passthrough as p:
                    raise changed from p.original
                result = r["CopyPartResult"]
                part: CompletedPartTypeDef = {
                    "PartNumber": number,
                    "ETag": result["ETag"],
                }
                if result.get("ChecksumSHA256"):
                    part["ChecksumSHA256"] = result["ChecksumSHA256"]
                return part

            if ranges:
                with concurrent.futures.ThreadPoolExecutor(
                    max_workers=self._max_concurrency,
                    thread_name_prefix="carmigrate-s3-copy",
                ) as pool:
                    parts = list(pool.map(lambda r: copy_part(*r), ranges))
            else:
                empty = self._upload_part(
                    key, full, upload_id, 1, bytearray(), hashlib.md5(b"", usedforsecurity=False).digest(),
                    hashlib.sha256(b"").digest() if self._checksums else None,
                )  # fmt: skip
                if created.get("ChecksumAlgorithm") == "SHA256":
                    empty.setdefault(
                        "ChecksumSHA256", _b64(hashlib.sha256(b"").digest())
                    )
                parts = [empty]
            again = source._info(
                source_key, source._head(source_key, copy_source["Key"], "copy")
            )
            if again.etag != info.etag or again.size != info.size:
                raise changed
            complete: dict[str, Any] = {
                "Bucket": self._bucket,
                "Key": full,
                "UploadId": upload_id,
                "MultipartUpload": {"Parts": parts},
            }
            if conditional:
                complete["IfNoneMatch"] = "*"
            self._call(self._client.complete_multipart_upload, key, "copy", **complete)
            completed = True
        finally:
            if not completed:
                self._abort(key, full, upload_id)
            if recheck is not None:
                recheck()

    def presign(self, key: str, *, expires_in: int = 3600, method: str = "GET") -> str:
        """A presigned GET or PUT URL (see [SupportsPresignedUrls][carmigrate.storage.SupportsPresignedUrls])."""
        ops = {"GET": "get_object", "PUT": "put_object"}
        if method not in ops:
            raise ValueError(f"method must be GET or PUT, not {method!r}")
        full = self._full(key)
        try:
            return self._client.generate_presigned_url(
                ops[method],
                Params={"Bucket": self._bucket, "Key": full},
                ExpiresIn=expires_in,
            )
        except Exception as e:
            self._raise(e, key, "presign")

    def close(self) -> None:
        """Close the client's connections (unless the client was passed in)."""
        if not self._closed:
            self._closed = True
            if self._owns_client:
                self._client.close()

    def __enter__(self) -> S3Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@final
class _ColdTierS3Store(S3Store):
    """An S3Store whose server has cold storage classes: it can restore.

    ``S3Store(...)`` returns one unless ``cold_tier=False``.
    """

    def request_restore(
        self, key: str, *, days: int = 1, tier: str = "Standard"
    ) -> None:
        """Ask for a restore with RestoreObject (see [SupportsRestore][carmigrate.storage.SupportsRestore]).

        ``tier`` is ``"Expedited"``, ``"Standard"`` or ``"Bulk"``.
        """
        full = self._full(key)
        try:
            self._call(
                self._client.restore_object,
                key,
                "restore",
                passthrough=frozenset(
                    {"RestoreAlreadyInProgress", "InvalidObjectState"}
                ),
                Bucket=self._bucket,
                Key=full,
                RestoreRequest={"Days": days, "GlacierJobParameters": {"Tier": tier}},
            )
        except _Passthrough as p:
            if p.code == "RestoreAlreadyInProgress":
                return
            raise StorageError(
                f"{self._where('restore', key)}: the object is not in a cold storage class",
                key=key,
                transient=False,
            ) from p.original


class _S3Reader:
    """The state of one ranged read: the body, the offset, reconnections."""

    def __init__(
        self, store: S3Store, key: str, full: str, start: int, response: Any
    ) -> None:
        self._store = store
        self._key = key
        self._full = full
        self._start = start
        self._body = response["Body"]
        self._length = int(response.get("ContentLength", 0))
        self._etag = str(response.get("ETag") or "").strip('"') or None
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
        if self._body is not None:
            self._body.close()
            self._body = None

    def _fill(self, view: memoryview) -> int:
        while True:
            try:
                if self._body is None:
                    raise StorageError("closed", key=self._key, transient=True)
                n = int(self._body.readinto(view))
                if n == 0 and self._done < self._length:
                    raise StorageError("ended early", key=self._key, transient=True)
                self._done += n
                return n
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
                        return 0  # CheckedRangeReader reports the short read
                    raise err from e
                self._reopens += 1
                retry.sleep(retry.delay(self._reopens))
                self._reopen()

    def _reopen(self) -> None:
        self._close()
        offset = self._start + self._done
        end = self._start + self._length
        try:
            response = self._store._get(self._key, self._full, offset, end, self._etag)
        except _Passthrough as p:
            raise StorageError(
                f"{self._store.url}: {self._key!r} changed while being read "
                f"(at byte {offset})",
                key=self._key,
                transient=True,
            ) from p.original
        self._body = response["Body"]
