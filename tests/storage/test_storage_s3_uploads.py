"""Pending multipart uploads: none left by lost answers, and resume aborts strays.

A lost answer is made with a botocore ``after-call`` hook: the server has
really handled the request (the upload exists), then the client sees a
dropped connection, as when a response is lost on the way back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from storage_helpers import PART, CallLog, S3Server, inject_errors

from carmigrate.errors import BackendUnavailable
from carmigrate.migrate import ItemState, Ledger, Limits, execute, plan, resume
from carmigrate.storage import (
    MemoryStore,
    PendingUpload,
    RetryPolicy,
    S3Store,
    Store,
    SupportsUploadCleanup,
    UploadCleanup,
    capabilities_of,
    read_bytes,
)
from carmigrate.storage.lowlevel import StoreWrapper

pytestmark = pytest.mark.s3

T = TypeVar("T")


def data_of(size: int, seed: int = 0) -> bytes:
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}/{i}".encode()).digest()
        i += 1
    return bytes(out[:size])


def pending(store: S3Store) -> list[tuple[str, str]]:
    """``(full key, upload id)`` of every pending upload in the store's bucket."""
    response = store.client.list_multipart_uploads(Bucket=store.bucket)
    return [(u["Key"], u["UploadId"]) for u in response.get("Uploads", [])]


def lose_answers(client: Any, operation: str, times: int) -> list[dict[str, Any]]:
    """Lose the next ``times`` answers to ``operation`` after the server acted.

    Returns the answers lost (each holds, e.g., the UploadId the server made).
    """
    from botocore.exceptions import ConnectionClosedError

    lost: list[dict[str, Any]] = []

    def handler(parsed: dict[str, Any], **kwargs: Any) -> None:
        if len(lost) < times:
            lost.append(dict(parsed))
            raise ConnectionClosedError(endpoint_url="lost by the test")

    client.meta.events.register(f"after-call.s3.{operation}", handler)
    return lost


def fast(attempts: int = 4) -> RetryPolicy:
    return RetryPolicy(max_attempts=attempts, sleep=lambda _: None)


# ----------------------------------------------------------------------
# a create whose answer is lost


@pytest.mark.parametrize("resume_uploads", [True, False])
def test_lost_create_answer_leaves_no_pending_upload(
    s3: S3Server, resume_uploads: bool
) -> None:
    """The retry makes a second upload; the write aborts the first one."""
    store = s3.store(retry=fast(), max_concurrency=1, resume_uploads=resume_uploads)
    lost = lose_answers(store.client, "CreateMultipartUpload", 1)
    data = data_of(3 * PART + 5)

    store.write("big", data)

    assert len(lost) == 1
    assert lost[0]["UploadId"]  # the server made an upload
    assert read_bytes(store, "big") == data
    assert pending(store) == []


def test_lost_create_answers_of_a_failed_write_are_aborted(s3: S3Server) -> None:
    """Every create's answer lost: the write fails, and leaves no upload behind."""
    store = s3.store(retry=fast(3), max_concurrency=1)
    lost = lose_answers(store.client, "CreateMultipartUpload", 3)

    with pytest.raises(BackendUnavailable):
        store.write("big", data_of(2 * PART + 1))

    assert len(lost) == 3
    assert pending(store) == []


def test_lost_create_answer_keeps_uploads_that_were_there(s3: S3Server) -> None:
    """An upload of the key that existed before the write is not the write's to abort."""
    store = s3.store(retry=fast(), max_concurrency=1)
    other = store.client.create_multipart_upload(Bucket=store.bucket, Key="big")
    lose_answers(store.client, "CreateMultipartUpload", 1)
    data = data_of(2 * PART + 3)

    store.write("big", data, metadata={"m": "1"})  # metadata: always a new upload

    assert read_bytes(store, "big") == data
    assert pending(store) == [("big", other["UploadId"])]


def test_lost_create_answer_found_by_time_when_uploads_cannot_be_listed_first(
    moto: S3Server,
) -> None:
    """Without the listing before the create, the uploads started with ours go.

    moto reports one fixed initiation time for every upload, so the lost
    upload is within the create's time window of ours.
    """
    store = moto.store(retry=fast(), max_concurrency=1, resume_uploads=False)
    inject_errors(
        store.client, "ListMultipartUploads", 1, status=403, code="AccessDenied"
    )
    lost = lose_answers(store.client, "CreateMultipartUpload", 1)
    data = data_of(2 * PART)

    store.write("big", data)

    assert len(lost) == 1
    assert read_bytes(store, "big") == data
    assert pending(store) == []


def _refuse_lists(client: Any, refused: set[int]) -> None:
    """Refuse (403) the ListMultipartUploads calls with these numbers (from 1)."""
    from botocore.awsrequest import AWSResponse

    seen: list[int] = []
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?>'
        b"<Error><Code>AccessDenied</Code><Message>test</Message></Error>"
    )

    class Raw:
        def stream(self, **kwargs: Any) -> Iterator[bytes]:
            yield body

    def handler(request: Any, **kwargs: Any) -> Any:
        seen.append(1)
        if len(seen) not in refused:
            return None
        return AWSResponse(request.url, 403, {"Content-Type": "application/xml"}, Raw())

    client.meta.events.register("before-send.s3.ListMultipartUploads", handler)


def test_lost_create_answer_checked_again_at_the_end_of_the_write(
    moto: S3Server,
) -> None:
    """The check after the retry cannot list: the write checks again when it ends."""
    store = moto.store(retry=fast(), max_concurrency=1)
    lose_answers(store.client, "CreateMultipartUpload", 1)
    _refuse_lists(store.client, {2})  # 1: before the create; 2: the check
    calls = CallLog(store.client)
    data = data_of(2 * PART)

    store.write("big", data)

    assert calls.count("ListMultipartUploads") == 3
    assert read_bytes(store, "big") == data
    assert pending(store) == []


def test_lost_create_answer_that_cannot_be_found_is_a_warning(
    moto: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    """Neither check can list: the write succeeds, warns, and leaves it to resume."""
    store = moto.store(retry=fast(), max_concurrency=1)
    lost = lose_answers(store.client, "CreateMultipartUpload", 1)
    _refuse_lists(store.client, {2, 3})
    data = data_of(2 * PART)

    with caplog.at_level("WARNING", logger="carmigrate.storage"):
        store.write("big", data)

    assert read_bytes(store, "big") == data
    assert "could not be listed" in caplog.text
    assert pending(store) == [("big", lost[0]["UploadId"])]


def test_lost_create_answer_of_a_multipart_copy(s3: S3Server) -> None:
    """Server-side copies through UploadPartCopy abort the uploads of lost answers too."""
    bucket = s3.bucket()
    src = s3.store(bucket, "src")
    dst = s3.store(
        bucket, "dst", retry=fast(), copy_threshold=PART, copy_part_size=PART
    )
    data = data_of(2 * PART + 9)
    src.write("obj", data)
    lost = lose_answers(dst.client, "CreateMultipartUpload", 1)

    dst.copy_from(src, "obj", "obj")

    assert len(lost) == 1
    assert read_bytes(dst, "obj") == data
    assert pending(dst) == []


# ----------------------------------------------------------------------
# abort_uploads (SupportsUploadCleanup)


def _make(store: S3Store, key: str) -> str:
    full = store.prefix + key
    return str(
        store.client.create_multipart_upload(Bucket=store.bucket, Key=full)["UploadId"]
    )


def test_s3_store_implements_upload_cleanup(moto: S3Server) -> None:
    """S3Store has the Protocol; it has no capability flag, and none changes."""
    store = moto.store()

    assert isinstance(store, SupportsUploadCleanup)
    assert not isinstance(MemoryStore(), SupportsUploadCleanup)
    assert capabilities_of(store) == store.capabilities


def test_abort_uploads_of_exactly_the_given_keys(s3: S3Server) -> None:
    """Uploads of the keys go; uploads of keys they are a prefix of, and others, stay."""
    bucket = s3.bucket()
    store = s3.store(bucket, "p")
    a1, a2 = _make(store, "a"), _make(store, "a")
    ab = _make(store, "a/b")
    other = _make(store, "other")
    outside = s3.store(bucket, "q")
    foreign = _make(outside, "a")

    result = store.abort_uploads(["a", "missing"])

    assert sorted(u.upload_id for u in result.aborted) == sorted([a1, a2])
    assert {u.key for u in result.aborted} == {"a"}
    assert result.kept == ()
    assert result.failed == ()
    assert sorted(pending(store)) == sorted(
        [("p/a/b", ab), ("p/other", other), ("q/a", foreign)]
    )


def test_abort_uploads_keeps_the_one_a_write_continues(s3: S3Server) -> None:
    """keep_resumable keeps the upload the next write of the key continues."""
    store = s3.store(max_concurrency=1)
    data = data_of(3 * PART)
    made = {_make(store, "r"), _make(store, "r")}

    result = store.abort_uploads([], keep_resumable=["r"])

    # the newer one; Swift's initiation times have whole seconds, so two
    # uploads of one second tie and the last listed wins, as for a write
    [kept] = [u.upload_id for u in result.kept]
    [aborted] = [u.upload_id for u in result.aborted]
    assert {kept, aborted} == made
    assert pending(store) == [("r", kept)]
    log = CallLog(store.client)
    store.write("r", data)
    assert log.count("CreateMultipartUpload") == 0  # the kept one was continued
    assert read_bytes(store, "r") == data
    assert pending(store) == []


def test_abort_uploads_keeps_nothing_without_resume(moto: S3Server) -> None:
    """A store that does not continue uploads keeps none; a key in both lists is kept."""
    bucket = moto.bucket()
    plain = moto.store(bucket, resume_uploads=False)
    _make(plain, "r")
    assert len(plain.abort_uploads([], keep_resumable=["r"]).aborted) == 1

    store = moto.store(bucket)
    kept = _make(store, "r")
    result = store.abort_uploads(["r"], keep_resumable=["r"])
    assert [u.upload_id for u in result.kept] == [kept]
    assert result.aborted == ()


def test_abort_uploads_reports_what_it_could_not_abort(moto: S3Server) -> None:
    """An abort the server refuses is reported with its reason; the upload stays."""
    store = moto.store(retry=fast(2))
    upload_id = _make(store, "k")
    inject_errors(
        store.client, "AbortMultipartUpload", 1, status=403, code="AccessDenied"
    )

    result = store.abort_uploads(["k"])

    assert result.aborted == ()
    [(upload, reason)] = result.failed
    assert upload == PendingUpload(
        key="k", upload_id=upload_id, initiated=upload.initiated
    )
    assert "access denied" in reason
    assert pending(store) == [("k", upload_id)]


def test_abort_uploads_reads_no_keys_when_nothing_is_pending(moto: S3Server) -> None:
    """Nothing pending: the (possibly huge) key iterables are not read."""
    store = moto.store()

    def never() -> Iterator[str]:
        raise AssertionError("read")
        yield ""  # pragma: no cover

    assert store.abort_uploads(never(), keep_resumable=never()) == UploadCleanup()


def test_wrappers_forward_abort_uploads(moto: S3Server) -> None:
    """StoreWrapper forwards the Protocol through forward(); it can be hidden."""

    class Recording(StoreWrapper):
        def __init__(self, inner: Store) -> None:
            super().__init__(inner)
            self.calls: list[tuple[str, str]] = []

        def forward(self, method: str, key: str, call: Callable[[], T]) -> T:
            self.calls.append((method, key))
            return call()

    class Hiding(StoreWrapper):
        forwarded_protocols = StoreWrapper.forwarded_protocols - {SupportsUploadCleanup}

    store = moto.store()
    upload_id = _make(store, "k")
    wrapper = Recording(store)

    assert isinstance(wrapper, SupportsUploadCleanup)
    assert [u.upload_id for u in wrapper.abort_uploads(["k"]).aborted] == [upload_id]
    assert wrapper.calls == [("abort_uploads", "")]
    assert not isinstance(Hiding(store), SupportsUploadCleanup)
    assert not isinstance(Recording(MemoryStore()), SupportsUploadCleanup)


# ----------------------------------------------------------------------
# resume


def test_resume_aborts_stray_uploads_under_the_plans_keys(
    moto: S3Server, tmp_path: Path
) -> None:
    """Uploads under keys the plan wrote go; under keys still to write, all but one;
    under keys the plan does not own, none.
    """
    src = MemoryStore("src")
    big = data_of(3 * PART)
    src.write("a", b"a" * 100)
    src.write("b", big)
    store = moto.store(prefix="dst", max_concurrency=1)
    p = plan(src, store)
    ledger = Ledger(tmp_path / "l.db")
    first = execute(
        p, ledger, source=src, destination=store, limits=Limits(max_items=1)
    )
    assert first.stop_reason == "max_items"
    assert {r.item.key: r.state for r in ledger.items()} == {
        "a": ItemState.VERIFIED,
        "b": ItemState.PENDING,
    }
    stray_done = _make(store, "a")  # e.g. the lost answer of a finished write
    _make(store, "b")
    resumable = _make(store, "b")
    unowned = _make(store, "not-in-plan")
    unowned_prefix = _make(store, "a/longer")

    result = resume(ledger, source=src, destination=store)

    assert result.complete
    assert read_bytes(store, "b") == big
    left = sorted(pending(store))
    assert left == sorted(
        [("dst/not-in-plan", unowned), ("dst/a/longer", unowned_prefix)]
    )
    assert stray_done not in dict(left).values()
    assert resumable not in dict(left).values()  # continued by the write of b


def test_engine_hook_reports_aborted_kept_and_failed(
    moto: S3Server, tmp_path: Path
) -> None:
    """abort_stray_uploads (what resume calls) returns the store's answer."""
    from carmigrate.migrate._executor import abort_stray_uploads

    src = MemoryStore("src")
    src.write("a", b"x")
    src.write("b", b"y")
    store = moto.store(retry=fast(1))
    p = plan(src, store)
    ledger = Ledger(tmp_path / "l.db")
    execute(p, ledger, source=src, destination=store, limits=Limits(max_items=1))
    a = _make(store, "a")
    b = _make(store, "b")
    _make(store, "zzz")

    result = abort_stray_uploads(ledger, store)

    assert result is not None
    assert [u.upload_id for u in result.aborted] == [a]
    assert [u.upload_id for u in result.kept] == [b]
    assert abort_stray_uploads(ledger, MemoryStore()) is None
