"""Helpers built on the Protocol: copy, exists, whole-object I/O, restore, retries."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import attrs
import pytest

from carmigrate.errors import (
    BackendUnavailable,
    ChecksumMismatch,
    ColdObject,
    ObjectExists,
    ObjectNotFound,
    StorageError,
)
from carmigrate.storage import (
    Capabilities,
    LocalStore,
    MemoryStore,
    ObjectInfo,
    RestoreStatus,
    RetryPolicy,
    copy_object,
    exists,
    read_bytes,
    restore_object,
    write_bytes,
)
from carmigrate.storage.lowlevel import derive_capabilities
from carmigrate.testing import FlakyStore


def no_sleep() -> tuple[RetryPolicy, list[float]]:
    delays: list[float] = []
    return RetryPolicy(max_attempts=4, sleep=delays.append), delays


def test_exists_read_write_bytes() -> None:
    """The whole-object helpers."""
    store = MemoryStore()
    info = write_bytes(store, "k", b"hello", metadata={"a": "b"})

    assert info.size == 5
    assert exists(store, "k")
    assert not exists(store, "nope")
    assert read_bytes(store, "k", start=1, end=3) == b"el"
    with pytest.raises(ObjectExists):
        write_bytes(store, "k", b"x", if_absent=True)


def test_streaming_copy_between_backends(tmp_path: Path) -> None:
    """Memory → local streams; metadata is dropped where the destination keeps none."""
    src = MemoryStore()
    dst = LocalStore(tmp_path)
    data = bytes(range(256)) * 5000
    src.write("a/b", data, metadata={"m": "1"})

    info = copy_object(src, "a/b", dst, "c/d")

    assert read_bytes(dst, "c/d") == data
    assert (
        info.checksums["sha256"] == hashlib.sha256(data).hexdigest()
    )  # held to the source
    assert info.checksums["md5"] == hashlib.md5(data).hexdigest()


def test_copy_keeps_metadata_when_possible() -> None:
    """Between metadata-keeping stores the source's metadata follows, unless replaced."""
    src, dst = MemoryStore(), MemoryStore()
    src.write("k", b"v", metadata={"m": "1"})

    copy_object(src, "k", dst)
    copy_object(src, "k", dst, "k2", metadata={"n": "2"}, server_side=False)

    assert dst.stat("k").metadata == {"m": "1"}
    assert dst.stat("k2").metadata == {"n": "2"}


def test_copy_retries_transient_faults() -> None:
    """A cut read and a failed write are retried with the policy; the copy is whole."""
    inner = MemoryStore()
    data = b"z" * 100_000
    inner.write("k", data)
    src = FlakyStore(inner, fail_calls=[2], truncate_reads_at=1000)
    dst = FlakyStore(MemoryStore(), fail_calls=[2])
    policy, delays = no_sleep()

    copy_object(src, "k", dst, retry=policy)

    assert read_bytes(dst.inner, "k") == data
    assert len(delays) == 2


def test_copy_gives_up_after_the_policy() -> None:
    """Persistent transient faults surface once the attempts are used up."""
    src = MemoryStore()
    src.write("k", b"v")
    dst = FlakyStore(MemoryStore(), probability=1.0)
    policy, delays = no_sleep()

    with pytest.raises(BackendUnavailable):
        copy_object(src, "k", dst, retry=policy)
    assert len(delays) == 3
    assert list(dst.inner.list()) == []


def test_permanent_errors_are_not_retried() -> None:
    """A permanent fault (or a missing source) fails at once."""
    src = MemoryStore()
    src.write("k", b"v")
    dst = FlakyStore(MemoryStore(), fail_calls=[1], transient=False)
    policy, delays = no_sleep()

    with pytest.raises(StorageError):
        copy_object(src, "k", dst, retry=policy)
    with pytest.raises(ObjectNotFound):
        copy_object(src, "missing", dst, retry=policy)
    assert delays == []


def test_copy_holds_the_destination_to_checksums() -> None:
    """Expected digests that contradict the source stop the copy before it starts."""
    src, dst = MemoryStore(), MemoryStore()
    src.write("k", b"v")

    with pytest.raises(ChecksumMismatch, match="source reports sha256") as early:
        copy_object(src, "k", dst, checksums={"sha256": "0" * 64})
    with pytest.raises(ChecksumMismatch, match="checksum mismatch") as late:
        copy_object(src, "k", dst, checksums={"sha1": "0" * 40})
    assert list(dst.list()) == []
    sha256_v = hashlib.sha256(b"v").hexdigest()
    assert (early.value.algorithm, early.value.expected) == ("sha256", "0" * 64)
    assert early.value.actual == sha256_v
    assert (late.value.algorithm, late.value.expected) == ("sha1", "0" * 40)
    assert late.value.actual == hashlib.sha1(b"v").hexdigest()
    assert not early.value.transient
    assert isinstance(late.value, StorageError)


class ShortSource:
    """A broken backend: its stream ends early without raising."""

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.url = "memory://short"
        self.inner.write("k", b"x" * 10_000)
        self.capabilities = Capabilities()

    def stat(self, key: str) -> ObjectInfo:
        return attrs.evolve(self.inner.stat(key), checksums={})

    def open_read(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> io.BytesIO:
        return io.BytesIO(b"x" * 5000)


def test_short_source_data_never_becomes_an_object() -> None:
    """Even a backend that silently returns short data cannot produce a short copy."""
    dst = MemoryStore()
    with pytest.raises(StorageError, match="declared as 10000 bytes"):
        copy_object(ShortSource(), "k", dst)  # type: ignore[arg-type]
    assert list(dst.list()) == []


def test_copy_server_side_choice(tmp_path: Path) -> None:
    """server_side=True requires support; False streams even where possible."""
    a = MemoryStore()
    a.write("k", b"v")

    with pytest.raises(StorageError, match="cannot copy on the server"):
        copy_object(a, "k", MemoryStore(), server_side=True)
    copy_object(a, "k", a, "k2", server_side=True)
    copy_object(a, "k", a, "k3", server_side=False)
    assert read_bytes(a, "k2") == read_bytes(a, "k3") == b"v"


class FrozenStore:
    """A MemoryStore whose objects are all GLACIER and that cannot restore."""

    def __init__(self, polls: int) -> None:
        self.inner = MemoryStore()
        self.url = "memory://cold"
        # cold_tier only where a subclass can restore
        self.capabilities = derive_capabilities(Capabilities(), self)
        self.polls = polls
        self.requested = 0
        self.restore: RestoreStatus | None = None

    def stat(self, key: str) -> ObjectInfo:
        info = attrs.evolve(self.inner.stat(key), storage_class="GLACIER")
        if self.restore is not None and self.restore.in_progress:
            self.polls -= 1
            if self.polls <= 0:
                self.restore = RestoreStatus(in_progress=False)
        return attrs.evolve(info, restore=self.restore)

    def open_read(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> io.BytesIO:
        if self.stat(key).cold:
            raise ColdObject("cold", key=key, storage_class="GLACIER")
        return io.BytesIO(read_bytes(self.inner, key, start=start, end=end))


class ColdStore(FrozenStore):
    """A fake cold tier: restores take a few polls."""

    def request_restore(
        self, key: str, *, days: int = 1, tier: str = "Standard"
    ) -> None:
        self.requested += 1
        self.restore = RestoreStatus(in_progress=True)


def test_restore_object_polls_with_injected_clock() -> None:
    """restore_object requests once and polls until readable, without real waiting."""
    store = ColdStore(polls=3)
    store.inner.write("k", b"v")
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    with pytest.raises(ColdObject):
        copy_object(store, "k", MemoryStore())  # type: ignore[arg-type]
    info = restore_object(
        store, "k", poll_interval=10, clock=lambda: now[0], sleep=sleep
    )  # type: ignore[arg-type]

    assert not info.cold
    assert store.requested == 1
    assert now[0] == 20


def test_restore_object_without_support() -> None:
    """A cold object in a store that cannot restore raises ColdObject at once."""
    store = FrozenStore(polls=1)
    store.inner.write("k", b"v")
    with pytest.raises(ColdObject, match="cannot restore"):
        restore_object(store, "k")  # type: ignore[arg-type]


def test_retry_policy_delays() -> None:
    """Delays grow exponentially, are capped, and are jittered within the bound."""
    fixed = RetryPolicy(base_delay=1, max_delay=5, jitter=False)
    assert [fixed.delay(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]
    jittered = RetryPolicy(base_delay=1, max_delay=5)
    assert all(0 <= jittered.delay(n) <= min(5, 2 ** (n - 1)) for n in range(1, 20))
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
