"""S3Store against two real S3 servers: moto and OpenStack Swift (s3api).

Where one server lacks a feature the test is a strict xfail with the reason,
or the backend is told through its options (see conftest.SWIFT_OPTIONS).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import logging
import os
import urllib.request
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError
from storage_helpers import PART, CallLog, S3Server, break_reads, inject_errors

from carmigrate.errors import (
    BackendUnavailable,
    ChecksumMismatch,
    ColdObject,
    ObjectExists,
    ObjectNotFound,
    StorageError,
)
from carmigrate.storage import (
    RetryPolicy,
    S3Store,
    copy_object,
    open_store,
    read_bytes,
    restore_object,
)
from carmigrate.testing import FlakyStore

pytestmark = pytest.mark.s3


def data_of(size: int, seed: int = 0) -> bytes:
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}/{i}".encode()).digest()
        i += 1
    return bytes(out[:size])


def chunks(data: bytes, size: int = 10_000) -> Iterator[bytes]:
    for off in range(0, len(data), size):
        yield data[off : off + size]


def pending_uploads(store: S3Store) -> list[str]:
    response = store.client.list_multipart_uploads(Bucket=store.bucket)
    return [u["Key"] for u in response.get("Uploads", [])]


class FakeSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def fast_retry(attempts: int = 4) -> tuple[RetryPolicy, FakeSleep]:
    sleep = FakeSleep()
    return RetryPolicy(max_attempts=attempts, base_delay=0.1, sleep=sleep), sleep


swift_no = pytest.mark.xfail  # readability alias for the marks below


def only_moto(reason: str) -> list[pytest.param]:  # type: ignore[valid-type]
    """moto runs; Swift is a strict xfail with the reason."""
    return [
        pytest.param("moto", id="moto"),
        pytest.param(
            "swift",
            id="swift",
            marks=[pytest.mark.swift, pytest.mark.xfail(reason=reason, strict=True)],
        ),
    ]


# ----------------------------------------------------------------------
# multipart streaming


def test_multipart_streams_in_bounded_memory(s3: S3Server) -> None:
    """A large write never pulls more than (concurrency + 2) parts ahead of the uploads."""
    store = s3.store(max_concurrency=2)
    log = CallLog(store.client)
    data = data_of(20 * PART + 5)
    pulled = 0
    worst = 0

    def source() -> Iterator[bytes]:
        nonlocal pulled, worst
        for chunk in chunks(data, 4096):
            pulled += len(chunk)
            acknowledged = PART * max(0, log.count("UploadPart") - 2)
            worst = max(worst, pulled - acknowledged)
            yield chunk

    info = store.write("big", source())

    assert info.size == len(data)
    assert log.count("UploadPart") == 21
    assert log.count("PutObject") == 0
    assert worst <= (2 + 2) * PART
    assert read_bytes(store, "big") == data


def test_small_writes_are_one_put(s3: S3Server) -> None:
    """Objects up to part_size go out in a single PutObject with Content-MD5."""
    store = s3.store()
    log = CallLog(store.client)
    store.write("small", data_of(PART))

    assert log.names() == ["PutObject"]
    assert "ContentMD5" in log.calls[0][1]


def test_multipart_etag_is_never_an_md5(s3: S3Server) -> None:
    """A multipart ETag (…-N) is reported as etag, never as an MD5 checksum."""
    store = s3.store()
    data = data_of(3 * PART)
    store.write("mp", data)

    info = store.stat("mp")

    assert info.etag is not None
    assert info.etag.endswith("-3")
    assert "md5" not in info.checksums
    assert "sha256" not in info.checksums
    listed = next(store.list("mp"))
    assert "md5" not in listed.checksums


def test_moto_composite_checksum_is_not_a_sha256(moto: S3Server) -> None:
    """moto returns a multipart object's composite SHA-256 without -N; it is not reported."""
    store = moto.store()
    data = data_of(3 * PART)
    store.write("mp", data)
    raw = store.client.head_object(
        Bucket=store.bucket, Key="mp", ChecksumMode="ENABLED"
    )

    assert raw.get("ChecksumSHA256")  # the trap exists ...
    assert "sha256" not in store.stat("mp").checksums  # ... and is avoided


def test_single_part_md5_is_reported(s3: S3Server) -> None:
    """A single-part ETag is the MD5 of the data and is reported as such."""
    store = s3.store()
    data = data_of(1000)
    store.write("one", data)

    assert store.stat("one").checksums["md5"] == hashlib.md5(data).hexdigest()
    assert next(store.list("one")).checksums["md5"] == hashlib.md5(data).hexdigest()


@pytest.mark.parametrize(
    "server",
    only_moto(
        "Swift s3api 2.30 ignores x-amz-checksum-* and returns no ChecksumSHA256"
    ),
)
def test_server_keeps_sha256(server: str, request: pytest.FixtureRequest) -> None:
    """With checksums=True the server stores the SHA-256 and stat reports it."""
    s3: S3Server = request.getfixturevalue(server)
    store = s3.store(checksums=True)
    data = data_of(1000)
    store.write("one", data)

    assert store.stat("one").checksums.get("sha256") == hashlib.sha256(data).hexdigest()


def test_swift_capabilities_declare_its_gaps(swift: S3Server) -> None:
    """Swift is opened without checksums, cold tier or atomic conditional writes."""
    caps = swift.store().capabilities

    assert caps.native_checksums == frozenset({"md5"})
    assert not caps.cold_tier
    assert not caps.conditional_write


def test_checksum_mismatch_aborts_the_multipart_upload(s3: S3Server) -> None:
    """A wrong expected digest on a multipart write leaves no object and no upload."""
    store = s3.store()
    data = data_of(4 * PART)

    with pytest.raises(ChecksumMismatch, match="checksum mismatch") as caught:
        store.write("mp", chunks(data), checksums={"sha256": "0" * 64})
    assert caught.value.actual == hashlib.sha256(data).hexdigest()

    with pytest.raises(ObjectNotFound):
        store.stat("mp")
    assert pending_uploads(store) == []


def test_source_error_aborts_the_upload(s3: S3Server) -> None:
    """A permanent source error propagates unchanged and aborts the upload."""
    store = s3.store()

    def source() -> Iterator[bytes]:
        yield data_of(3 * PART)
        raise ValueError("broken source")

    with pytest.raises(ValueError, match="broken source"):
        store.write("mp", source())

    assert pending_uploads(store) == []


def test_too_many_parts(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the part limit the write fails cleanly; with size= the part size grows."""
    import carmigrate.storage._s3 as s3_module

    monkeypatch.setattr(s3_module, "MAX_PARTS", 4)
    store = s3.store()
    data = data_of(6 * PART)

    with pytest.raises(StorageError, match="more than 4 parts"):
        store.write("mp", chunks(data))
    assert pending_uploads(store) == []

    store.write("mp", chunks(data), size=len(data))
    assert read_bytes(store, "mp") == data


# ----------------------------------------------------------------------
# resuming an interrupted upload across runs


def interrupted(data: bytes, after_parts: int) -> Iterator[bytes]:
    """The data, failing transiently (a dropped source) after some parts."""
    yield data[: after_parts * PART]
    raise BackendUnavailable("the source connection dropped")


def test_resume_continues_an_interrupted_upload(s3: S3Server) -> None:
    """A second run re-reads the data, skips the parts already uploaded, completes."""
    bucket = s3.bucket()
    data = data_of(10 * PART + 77)
    first = s3.store(bucket, max_concurrency=1)
    with pytest.raises(BackendUnavailable):
        first.write("big", interrupted(data, 6))
    assert pending_uploads(first) == ["big"]
    with pytest.raises(ObjectNotFound):
        first.stat("big")

    second = s3.store(bucket, max_concurrency=1)  # a new run
    log = CallLog(second.client)
    info = second.write(
        "big", chunks(data), checksums={"sha256": hashlib.sha256(data).hexdigest()}
    )

    assert log.count("ListMultipartUploads") == 1
    assert log.count("ListParts") == 1
    assert log.count("CreateMultipartUpload") == 0
    assert log.count("UploadPart") == 5  # parts 7..11; 1..6 were verified and reused
    assert info.size == len(data)
    assert read_bytes(second, "big") == data
    assert pending_uploads(second) == []


def test_resume_reuploads_parts_that_differ(s3: S3Server) -> None:
    """Parts whose bytes changed since the first run are uploaded again."""
    bucket = s3.bucket()
    data = data_of(8 * PART)
    with pytest.raises(BackendUnavailable):
        s3.store(bucket, max_concurrency=1).write("big", interrupted(data, 5))

    changed = data[: 2 * PART] + data_of(PART, seed=9) + data[3 * PART :]
    second = s3.store(bucket, max_concurrency=1)
    log = CallLog(second.client)
    second.write("big", changed)

    assert log.count("UploadPart") == 1 + 3  # part 3 again, then 6..8
    assert read_bytes(second, "big") == changed


def test_resume_disabled_or_with_metadata_starts_over(s3: S3Server) -> None:
    """Without resume (or with metadata, which a pending upload cannot show) all parts go up."""
    bucket = s3.bucket()
    data = data_of(4 * PART)
    with pytest.raises(BackendUnavailable):
        s3.store(bucket, max_concurrency=1).write("a", interrupted(data, 2))

    store = s3.store(bucket, max_concurrency=1)
    log = CallLog(store.client)
    store.write("a", data, metadata={"k": "v"})

    assert log.count("UploadPart") == 4
    assert store.stat("a").metadata == {"k": "v"}
    assert store.abort_incomplete_uploads() == 1
    assert pending_uploads(store) == []


def test_resume_survives_a_throttled_part(s3: S3Server) -> None:
    """A part upload that is throttled is retried within the same write."""
    policy, sleep = fast_retry()
    store = s3.store(retry=policy, max_concurrency=1)
    injected = inject_errors(store.client, "UploadPart", 2)
    data = data_of(3 * PART + 1)

    store.write("t", data)

    assert len(injected) == 2
    assert len(sleep.delays) == 2
    assert read_bytes(store, "t") == data


# ----------------------------------------------------------------------
# server-side copy


def test_server_side_copy_single_request(s3: S3Server) -> None:
    """Stores on the same endpoint copy with CopyObject; metadata is kept."""
    bucket = s3.bucket()
    src, dst = s3.store(bucket, "src"), s3.store(bucket, "dst")
    data = data_of(2 * PART + 3)
    src.write("obj", data, metadata={"origin": "test"})
    log = CallLog(dst.client)

    info = copy_object(src, "obj", dst, "copy")

    assert "CopyObject" in log.names()
    assert "GetObject" not in log.names()
    assert info.size == len(data)
    assert read_bytes(dst, "copy") == data
    assert dst.stat("copy").metadata == {"origin": "test"}


def test_server_side_copy_in_parts(s3: S3Server) -> None:
    """Above copy_threshold the copy uses UploadPartCopy; metadata can be replaced."""
    bucket = s3.bucket()
    src = s3.store(bucket, "src")
    dst = s3.store(bucket, "dst", copy_threshold=PART, copy_part_size=PART)
    data = data_of(3 * PART + 10)
    src.write("obj", data, metadata={"origin": "test"})
    log = CallLog(dst.client)

    dst.copy_from(src, "obj", "copy", metadata={"new": "meta"})

    assert log.count("UploadPartCopy") == 4
    assert log.count("CopyObject") == 0
    assert read_bytes(dst, "copy") == data
    assert dst.stat("copy").metadata == {"new": "meta"}


def test_server_side_copy_if_absent(s3: S3Server) -> None:
    """If-absent copies go through a multipart copy completed with If-None-Match."""
    store = s3.store()
    store.write("a", b"original")
    store.write("b", b"other")

    with pytest.raises(ObjectExists):
        store.copy_from(store, "a", "b", if_absent=True)
    assert read_bytes(store, "b") == b"other"
    store.copy_from(store, "a", "c", if_absent=True)
    assert read_bytes(store, "c") == b"original"
    store.copy_from(store, "a", "empty-copy-src-check", if_absent=True)
    store.write("empty", b"")
    store.copy_from(store, "empty", "empty2", if_absent=True)
    assert read_bytes(store, "empty2") == b""
    assert pending_uploads(store) == []


def test_copy_between_servers_streams(moto: S3Server, swift: S3Server) -> None:
    """Different endpoints cannot copy on the server: the bytes stream through us."""
    src = moto.store()
    dst = swift.store()
    data = data_of(3 * PART + 1)
    src.write("obj", data)
    assert not dst.can_copy_from(src)

    info = copy_object(src, "obj", dst)

    assert info.size == len(data)
    assert read_bytes(dst, "obj") == data
    with pytest.raises(StorageError, match="cannot copy on the server"):
        copy_object(src, "obj", dst, "again", server_side=True)


def test_copy_with_retries_through_flaky_store(s3: S3Server) -> None:
    """A read cut mid-stream and a failed write are retried; the copy is whole."""
    src = FlakyStore(
        s3.store(), fail_calls=[2], truncate_reads_at=PART
    )  # 2nd call: open_read
    dst = FlakyStore(s3.store(), fail_calls=[2])  # the write after the cut read
    data = data_of(3 * PART)
    src.inner.write("obj", data)
    policy, sleep = fast_retry()

    copy_object(src, "obj", dst, retry=policy)

    assert read_bytes(dst.inner, "obj") == data
    assert [o for _, _, _, o in src.log].count("truncate") == 1
    assert dst.failures == 1
    assert len(sleep.delays) == 2
    assert pending_uploads(dst.inner) == []  # type: ignore[arg-type]


# ----------------------------------------------------------------------
# conditional writes


def test_if_absent_multipart_mode(s3: S3Server) -> None:
    """'multipart' mode: if-absent writes complete with If-None-Match on both servers."""
    store = s3.store(conditional_write="multipart")
    store.write("k", b"first", if_absent=True)

    with pytest.raises(ObjectExists):
        store.write("k", b"second", if_absent=True)
    assert read_bytes(store, "k") == b"first"
    assert not store.capabilities.conditional_write  # not declared atomic


@pytest.mark.parametrize(
    "server",
    only_moto("Swift s3api 2.30 answers NotImplemented to If-None-Match on PutObject"),
)
def test_if_absent_put_mode(server: str, request: pytest.FixtureRequest) -> None:
    """'put' mode: a conditional PutObject, atomic where the server supports it."""
    s3: S3Server = request.getfixturevalue(server)
    store = s3.store(conditional_write="put")
    store.write("k", b"first", if_absent=True)

    with pytest.raises(ObjectExists):
        store.write("k", b"second", if_absent=True)
    assert store.capabilities.conditional_write


def test_if_absent_refused_or_emulated(s3: S3Server) -> None:
    """Without server support if_absent is refused unless emulation is opted into."""
    bucket = s3.bucket()
    strict = s3.store(bucket, conditional_write="none")
    strict.write("k", b"first")
    with pytest.raises(StorageError, match="emulate_if_absent"):
        strict.write("new", b"x", if_absent=True)
    with pytest.raises(ObjectNotFound):
        strict.stat("new")

    emulated = s3.store(bucket, conditional_write="none", emulate_if_absent=True)
    with pytest.raises(ObjectExists):
        emulated.write("k", b"second", if_absent=True)
    emulated.write("new", b"x", if_absent=True)
    assert read_bytes(emulated, "k") == b"first"
    assert not emulated.capabilities.conditional_write


# ----------------------------------------------------------------------
# cold objects


@pytest.mark.parametrize(
    "server",
    only_moto("Swift s3api refuses StorageClass=GLACIER (InvalidStorageClass)"),
)
def test_cold_object_lifecycle(server: str, request: pytest.FixtureRequest) -> None:
    """GLACIER objects: stat says so, reads raise ColdObject, restore makes them readable."""
    s3: S3Server = request.getfixturevalue(server)
    bucket = s3.bucket()
    cold = s3.store(bucket, storage_class="GLACIER", cold_tier=True)
    data = data_of(1000)
    cold.write("frozen", data)

    info = cold.stat("frozen")
    assert info.storage_class == "GLACIER"
    assert info.cold
    with pytest.raises(ColdObject) as raised:
        cold.open_read("frozen")
    assert raised.value.storage_class == "GLACIER"
    assert not raised.value.restore_in_progress
    with pytest.raises(ColdObject):
        copy_object(cold, "frozen", s3.store(bucket, "elsewhere"))

    sleep = FakeSleep()
    restored = restore_object(cold, "frozen", days=2, sleep=sleep)

    assert not restored.cold
    assert restored.restore is not None
    assert not restored.restore.in_progress
    assert restored.restore.expiry is not None
    assert restored.restore.expiry > datetime.datetime.now(datetime.UTC)
    assert read_bytes(cold, "frozen") == data


def test_restore_waits_until_readable(moto: S3Server) -> None:
    """The poll loop waits while the server says ongoing-request="true" (moto is instant)."""
    cold = moto.store(storage_class="DEEP_ARCHIVE")
    cold.write("frozen", b"data")
    heads_left = {"ongoing": 3}

    def still_restoring(parsed: dict[str, object], **kwargs: object) -> None:
        if parsed.get("Restore") and heads_left["ongoing"] > 0:
            heads_left["ongoing"] -= 1
            parsed["Restore"] = 'ongoing-request="true"'

    cold.client.meta.events.register("after-call.s3.HeadObject", still_restoring)
    now = [0.0]
    sleep_calls: list[float] = []

    def sleep(seconds: float) -> None:
        sleep_calls.append(seconds)
        now[0] += seconds

    info = restore_object(
        cold, "frozen", poll_interval=600, clock=lambda: now[0], sleep=sleep
    )

    assert sleep_calls == [600, 600, 600]
    assert not info.cold
    assert info.restore is not None
    assert info.restore.expiry is not None


def test_restore_timeout_reports_progress(moto: S3Server) -> None:
    """A restore that outlasts the timeout raises ColdObject(restore_in_progress=True)."""
    cold = moto.store(storage_class="GLACIER")
    cold.write("frozen", b"data")

    def forever(parsed: dict[str, object], **kwargs: object) -> None:
        if parsed.get("Restore"):
            parsed["Restore"] = 'ongoing-request="true"'

    cold.client.meta.events.register("after-call.s3.HeadObject", forever)
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(ColdObject) as raised:
        restore_object(
            cold,
            "frozen",
            timeout=3600,
            poll_interval=900,
            clock=lambda: now[0],
            sleep=sleep,
        )
    assert raised.value.restore_in_progress
    # a GET during the restore: the error carries the restore state
    inject_errors(cold.client, "GetObject", 1, status=403, code="InvalidObjectState")
    with pytest.raises(ColdObject) as reading:
        cold.open_read("frozen")
    assert reading.value.restore_in_progress
    assert reading.value.storage_class == "GLACIER"


def test_restore_of_a_warm_object(s3: S3Server) -> None:
    """restore_object returns at once for a readable object; request_restore refuses it."""
    store = s3.store()
    store.write("warm", b"x")

    assert not restore_object(store, "warm").cold
    if s3.name == "moto":
        with pytest.raises(StorageError, match="not in a cold storage class"):
            store.request_restore("warm")


# ----------------------------------------------------------------------
# retries and error translation


def test_throttling_is_retried_with_backoff(s3: S3Server) -> None:
    """503 SlowDown is retried with growing, jittered delays, then succeeds."""
    policy, sleep = fast_retry(attempts=5)
    store = s3.store(retry=policy)
    injected = inject_errors(store.client, "PutObject", 3)

    store.write("k", b"value")

    assert len(injected) == 3
    assert len(sleep.delays) == 3
    assert all(0 <= d <= 0.1 * 2**i for i, d in enumerate(sleep.delays))
    assert read_bytes(store, "k") == b"value"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (503, "SlowDown"),
        (500, "InternalError"),
        (400, "RequestTimeout"),
        (429, "TooManyRequests"),
    ],
)
def test_retry_gives_up_with_a_transient_error(
    moto: S3Server, status: int, code: str
) -> None:
    """When throttling outlasts the policy the error is BackendUnavailable, cause kept."""
    policy, sleep = fast_retry(attempts=3)
    store = moto.store(retry=policy)
    inject_errors(store.client, "HeadObject", 10, status=status, code=code)

    with pytest.raises(BackendUnavailable) as raised:
        store.stat("k")

    assert raised.value.transient
    assert isinstance(raised.value.__cause__, ClientError)
    assert len(sleep.delays) == 2


def test_connection_errors_are_transient() -> None:
    """An endpoint nobody listens on gives BackendUnavailable after the retries."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    policy, sleep = fast_retry(attempts=3)
    with (
        S3Store(
            "bucket",
            endpoint_url=f"http://127.0.0.1:{port}",
            access_key_id="a",
            secret_access_key="b",
            retry=policy,
            connect_timeout=1,
        ) as store,
        pytest.raises(BackendUnavailable) as raised,
    ):
        store.stat("k")
    assert raised.value.transient
    assert len(sleep.delays) == 2


def test_permanent_errors_are_not_retried(s3: S3Server) -> None:
    """A missing key or bucket fails at once, translated, with the cause kept."""
    policy, sleep = fast_retry()
    store = s3.store(retry=policy)

    with pytest.raises(ObjectNotFound) as raised:
        store.open_read("missing")
    assert isinstance(raised.value.__cause__, ClientError)
    with pytest.raises(ObjectNotFound):
        store.stat("missing")
    missing_bucket = s3.store("no-such-bucket-here", retry=policy)
    with pytest.raises(StorageError, match="does not exist") as no_bucket:
        list(missing_bucket.list())
    assert not no_bucket.value.transient
    assert sleep.delays == []


@pytest.mark.parametrize("server", [
    pytest.param("moto", marks=pytest.mark.xfail(reason="moto accepts any credentials", strict=True)),
    pytest.param("swift", marks=pytest.mark.swift),
])  # fmt: skip
def test_wrong_credentials(server: str, request: pytest.FixtureRequest) -> None:
    """Bad credentials are a permanent 'access denied'."""
    s3: S3Server = request.getfixturevalue(server)
    bucket = s3.bucket()
    store = s3.store(bucket, secret_access_key="wrong-secret")

    with pytest.raises(StorageError, match="access denied") as raised:
        store.stat("k")
    assert not raised.value.transient


def test_read_resumes_after_a_dropped_connection(s3: S3Server) -> None:
    """A body cut mid-stream is continued by a ranged GET pinned with If-Match."""
    policy, _sleep = fast_retry()
    store = s3.store(retry=policy)
    data = data_of(5 * PART)
    store.write("obj", data)
    broken = break_reads(store.client, after=PART + 5, times=2)
    log = CallLog(store.client)

    assert read_bytes(store, "obj", start=10) == data[10:]

    assert len(broken) == 2
    gets = [params for name, params in log.calls if name == "GetObject"]
    assert len(gets) == 3
    assert gets[1]["Range"] == f"bytes={10 + PART + 5}-{len(data) - 1}"
    assert gets[1]["IfMatch"].strip('"') == store.stat("obj").etag


def test_read_cut_short_raises_never_short_data(s3: S3Server) -> None:
    """When every attempt breaks, the read raises a transient error."""
    policy, _ = fast_retry(attempts=3)
    store = s3.store(retry=policy)
    store.write("obj", data_of(3 * PART))
    break_reads(store.client, after=100, times=100)

    with pytest.raises(StorageError) as raised:
        read_bytes(store, "obj")
    assert raised.value.transient


def test_read_of_a_replaced_object_fails(s3: S3Server) -> None:
    """If the object is replaced while a broken read resumes, the read fails."""
    policy, _ = fast_retry()
    store = s3.store(retry=policy)
    store.write("obj", data_of(3 * PART))
    other = s3.store(store.bucket)
    break_reads(
        store.client, after=PART, times=1, on_break=lambda: other.write("obj", b"new")
    )

    with pytest.raises(StorageError, match="changed while being read"):
        read_bytes(store, "obj")


def test_list_paginates_and_skips_foreign_keys(s3: S3Server) -> None:
    """Listing follows continuation tokens and skips keys that are not valid keys."""
    store = s3.store(prefix="p")
    for i in range(7):
        store.write(f"k{i}", b"x")
    store.client.put_object(Bucket=store.bucket, Key="p/folder/", Body=b"")
    store.client.put_object(Bucket=store.bucket, Key="p//double", Body=b"")

    def small_pages(params: dict[str, object], **kwargs: object) -> None:
        params["MaxKeys"] = 2

    store.client.meta.events.register(
        "before-parameter-build.s3.ListObjectsV2", small_pages
    )
    log = CallLog(store.client)

    assert [i.key for i in store.list()] == [f"k{i}" for i in range(7)]
    assert log.count("ListObjectsV2") >= 4


# ----------------------------------------------------------------------
# configuration, URLs and secrets


def test_open_store_from_environment(
    moto: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """s3:// URLs work with exactly AWS_ENDPOINT_URL and the usual credential variables."""
    bucket = moto.bucket()
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "env-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")

    store = open_store(f"s3://{bucket}/some/prefix")
    try:
        assert isinstance(store, S3Store)
        assert store.url == f"s3://{bucket}/some/prefix"
        assert store.endpoint_url == moto.endpoint
        store.write("k", b"v")
        assert (
            moto.client().get_object(Bucket=bucket, Key="some/prefix/k")["Body"].read()
            == b"v"
        )
    finally:
        store.close()


def test_secrets_never_appear(moto: S3Server, caplog: pytest.LogCaptureFixture) -> None:
    """No secret in url, repr, error messages or (debug) logs."""
    secret = "TOPSECRET-0123456789abcdef"
    caplog.set_level(logging.DEBUG)
    store = moto.store(secret_access_key=secret)
    store.write("k", b"v")
    read_bytes(store, "k")
    with pytest.raises(ObjectNotFound) as raised:
        store.stat("missing")
    with pytest.raises(ValueError, match="credentials") as in_url:
        open_store(f"s3://key:{secret}@bucket/x")

    texts = [store.url, repr(store), str(raised.value), str(in_url.value), caplog.text]
    assert all(secret not in text for text in texts)


def test_presigned_urls(s3: S3Server) -> None:
    """A presigned GET reads the object; a presigned PUT writes one."""
    store = s3.store(prefix="pre")
    store.write("k", b"signed data")

    with urllib.request.urlopen(store.presign("k", expires_in=60)) as resp:
        assert resp.read() == b"signed data"
    put = urllib.request.Request(
        store.presign("up", method="PUT"),
        data=b"uploaded",
        method="PUT",
        headers={"Content-Type": "application/octet-stream"},
    )
    with urllib.request.urlopen(put) as resp:
        resp.read()
    assert read_bytes(store, "up") == b"uploaded"
    with pytest.raises(ValueError, match="GET or PUT"):
        store.presign("k", method="DELETE")


def test_prefix_isolation(s3: S3Server) -> None:
    """Two prefixes in one bucket see only their own objects."""
    bucket = s3.bucket()
    a, b = s3.store(bucket, "a"), s3.store(bucket, "a-b")
    a.write("x", b"1")
    b.write("x", b"2")

    assert [i.key for i in a.list()] == ["x"]
    assert read_bytes(b, "x") == b"2"
    assert a.capabilities.max_key_length == 1024 - len("a/")


def test_content_md5_guards_every_put(s3: S3Server) -> None:
    """Single puts and parts carry Content-MD5 that matches the bytes."""
    store = s3.store()
    sent: list[tuple[bytes, str]] = []

    def capture(params: dict[str, object], **kwargs: object) -> None:
        body = params.get("Body")
        if isinstance(body, (bytes, bytearray)):
            sent.append((bytes(body), str(params.get("ContentMD5"))))

    store.client.meta.events.register("before-parameter-build.s3.PutObject", capture)
    store.client.meta.events.register("before-parameter-build.s3.UploadPart", capture)
    store.write("one", b"x" * 100)
    store.write("many", data_of(2 * PART + 1))

    assert len(sent) == 4
    for body, md5 in sent:
        assert md5 == base64.b64encode(hashlib.md5(body).digest()).decode()


def test_a_missing_aws_profile_is_a_storage_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A missing profile names the store and the profile, no botocore traceback."""
    from carmigrate.errors import StorageError
    from carmigrate.storage import S3Store

    monkeypatch.setenv("AWS_PROFILE", "carmigrate-no-such-profile")
    with pytest.raises(
        StorageError, match=r"s3://some-bucket: .*carmigrate-no-such-profile"
    ):
        S3Store("some-bucket")


def test_list_all_reports_the_keys_list_leaves_out(s3: S3Server) -> None:
    """Keys that break the key rules are not objects of the store, but list_all
    names each (an empty folder marker holds nothing and is left out), and a
    plan from the bucket lists them as UNMIGRATABLE (#13 item 1)."""
    from carmigrate.migrate import Action, plan
    from carmigrate.storage import MemoryStore, SupportsFullListing, Unmigratable

    store = s3.store()
    assert isinstance(store, SupportsFullListing)
    bad = ["a//b", "./x", "a/../b", "//lead", "t\tab", "full/"]
    for key in [*bad, "empty/"]:
        store.client.put_object(
            Bucket=store.bucket, Key=key, Body=b"" if key == "empty/" else b"data"
        )
    store.write("good/key", b"ok")

    assert [o.key for o in store.list()] == ["good/key"]
    entries = list(store.list_all())
    objects = [e.key for e in entries if not isinstance(e, Unmigratable)]
    left_out = {e.name: e for e in entries if isinstance(e, Unmigratable)}
    assert objects == ["good/key"]
    assert set(left_out) == set(bad)
    assert all(e.size == 4 for e in left_out.values())
    assert "key rules" in left_out["a//b"].reason

    made = plan(store, MemoryStore("dst"))
    actions = {i.source_key: i.action for i in made.items()}
    assert actions == {
        **dict.fromkeys(bad, Action.UNMIGRATABLE),
        "good/key": Action.COPY,
    }
