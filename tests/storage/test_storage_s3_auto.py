"""S3Store's defaults on servers that lack features: Swift works without options.

conditional_write="auto" is found out once per store, on the first if-absent
write: OpenStack Swift's s3api (2.30) answers a PutObject with
``If-None-Match: *`` with ``501 NotImplemented`` ("Conditional object PUTs
are not supported."), whether or not the object exists, and honours the
header on CompleteMultipartUpload; moto honours it on both. With
``checksums=True`` (the default) multipart uploads complete on Swift too,
which neither names the upload's checksum algorithm nor accepts part
checksums in CompleteMultipartUpload.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from storage_helpers import PART, CallLog, S3Server

from carmigrate.errors import BackendUnavailable, ObjectExists, StorageError
from carmigrate.migrate import ItemState, Ledger, execute, plan
from carmigrate.storage import MemoryStore, S3Store, read_bytes

pytestmark = pytest.mark.s3

FALLBACK = "refuses conditional PutObject"


def data_of(size: int) -> bytes:
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha256(str(i).encode()).digest()
        i += 1
    return bytes(out[:size])


def fallbacks(caplog: pytest.LogCaptureFixture) -> int:
    return sum(
        FALLBACK in r.getMessage() and r.name == "carmigrate.storage"
        for r in caplog.records
    )


@pytest.mark.swift
def test_swift_with_default_options_writes_if_absent(
    swift_defaults: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    """The refusal switches the store to multipart mode; a second write still refuses."""
    store = swift_defaults.store()
    assert store.conditional_write_mode == "put"
    assert store.capabilities.conditional_write

    with caplog.at_level(logging.INFO, logger="carmigrate.storage"):
        store.write("k", b"first", if_absent=True)
        with pytest.raises(ObjectExists):
            store.write("k", b"second", if_absent=True)
        big = data_of(3 * PART + 1)
        store.write("big", big, if_absent=True)
        store.write("empty", b"", if_absent=True)
        store.write("k", b"replaced")  # plain writes are untouched

    assert read_bytes(store, "big") == big
    assert read_bytes(store, "empty") == b""
    assert read_bytes(store, "k") == b"replaced"
    assert store.conditional_write_mode == "multipart"
    assert not store.capabilities.conditional_write  # no longer declared atomic
    assert fallbacks(caplog) == 1
    assert "NotImplemented" in caplog.text


@pytest.mark.swift
def test_swift_first_if_absent_write_over_an_object_is_a_conflict(
    swift_defaults: S3Server,
) -> None:
    """An existing object is reported as such even by the write that meets the refusal."""
    bucket = swift_defaults.bucket()
    swift_defaults.store(bucket).write("k", b"there")
    fresh = swift_defaults.store(bucket)

    with pytest.raises(ObjectExists):
        fresh.write("k", b"new", if_absent=True)

    assert fresh.conditional_write_mode == "multipart"
    assert read_bytes(fresh, "k") == b"there"


@pytest.mark.swift
def test_swift_fallback_under_concurrent_writes(
    swift_defaults: S3Server, caplog: pytest.LogCaptureFixture
) -> None:
    """Writers racing into the refusal all succeed; the switch is logged once."""
    store = swift_defaults.store(max_concurrency=1)
    with (
        caplog.at_level(logging.INFO, logger="carmigrate.storage"),
        concurrent.futures.ThreadPoolExecutor(8) as pool,
    ):
        list(
            pool.map(
                lambda n: store.write(f"k{n}", b"v%d" % n, if_absent=True), range(8)
            )
        )

    assert sorted(i.key for i in store.list()) == [f"k{n}" for n in range(8)]
    assert fallbacks(caplog) == 1


@pytest.mark.swift
def test_swift_explicit_put_mode_is_not_switched(swift_defaults: S3Server) -> None:
    """A mode named explicitly is the user's word: the refusal is an error."""
    store = swift_defaults.store(conditional_write="put")

    with pytest.raises(StorageError, match="NotImplemented"):
        store.write("k", b"v", if_absent=True)
    assert store.conditional_write_mode == "put"


@pytest.mark.swift
def test_swift_migration_with_default_options(
    swift_defaults: S3Server, tmp_path: Path
) -> None:
    """The engine copies to Swift opened with the defaults: every item verified."""
    src = MemoryStore("src")
    objects = {"a": b"a" * 10, "b/c": data_of(2 * PART + 7), "d": b""}
    for key, data in objects.items():
        src.write(key, data)
    dst = swift_defaults.store(max_concurrency=1)

    p = plan(src, dst)
    ledger = Ledger(tmp_path / "l.db")
    result = execute(p, ledger, source=src, destination=dst)

    assert result.complete
    assert {r.state for r in ledger.items()} == {ItemState.VERIFIED}
    assert {k: read_bytes(dst, k) for k in objects} == objects


@pytest.mark.swift
def test_swift_multipart_writes_with_default_checksums(
    swift_defaults: S3Server,
) -> None:
    """Multipart writes, fresh and continued, complete without part checksums."""
    bucket = swift_defaults.bucket()
    data = data_of(5 * PART + 3)
    first = swift_defaults.store(bucket, max_concurrency=1)
    first.write("fresh", data)

    def interrupted() -> Iterator[bytes]:
        yield data[: 3 * PART]
        raise BackendUnavailable("the source dropped")

    with pytest.raises(BackendUnavailable):
        first.write("resumed", interrupted())
    second = swift_defaults.store(bucket, max_concurrency=1)
    log = CallLog(second.client)
    second.write("resumed", data)

    assert log.count("UploadPart") == 3  # parts 1..3 were reused
    assert read_bytes(second, "fresh") == data
    assert read_bytes(second, "resumed") == data


def test_moto_completes_with_part_checksums(moto: S3Server) -> None:
    """A server that knows checksums gets every part's, reused parts included."""
    bucket = moto.bucket()
    data = data_of(4 * PART)

    def interrupted() -> Iterator[bytes]:
        yield data[: 2 * PART]
        raise BackendUnavailable("the source dropped")

    with pytest.raises(BackendUnavailable):
        moto.store(bucket, max_concurrency=1).write("k", interrupted())
    store = moto.store(bucket, max_concurrency=1)
    log = CallLog(store.client)
    store.write("k", data)

    [(_, params)] = [c for c in log.calls if c[0] == "CompleteMultipartUpload"]
    parts = params["MultipartUpload"]["Parts"]
    assert [p["PartNumber"] for p in parts] == [1, 2, 3, 4]
    assert all(p.get("ChecksumSHA256") for p in parts)
    assert read_bytes(store, "k") == data


def test_moto_stays_in_put_mode(moto: S3Server) -> None:
    """A server that supports conditional PUTs keeps the atomic mode."""
    store = moto.store()
    log = CallLog(store.client)

    store.write("k", b"first", if_absent=True)
    with pytest.raises(ObjectExists):
        store.write("k", b"second", if_absent=True)

    assert store.conditional_write_mode == "put"
    assert store.capabilities.conditional_write
    assert log.count("PutObject") == 2
    assert log.count("CreateMultipartUpload") == 0


def test_unknown_mode_is_refused() -> None:
    """The modes are auto, put, multipart and none."""
    with pytest.raises(ValueError, match="auto, put, multipart or none"):
        S3Store("b", endpoint_url="http://127.0.0.1:9", conditional_write="maybe")  # type: ignore[arg-type]
