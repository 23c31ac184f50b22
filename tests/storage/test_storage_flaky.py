"""FlakyStore injects faults deterministically and never returns short data."""

from __future__ import annotations

from pathlib import Path

import pytest
from storage_helpers import ColdMemoryStore, S3Server

from carmigrate.errors import BackendUnavailable, ObjectNotFound, StorageError
from carmigrate.storage import (
    LocalStore,
    MemoryStore,
    S3Store,
    SupportsPresignedUrls,
    SupportsRestore,
    SupportsServerSideCopy,
    SupportsTemporaryCleanup,
    capabilities_of,
    copy_object,
    read_bytes,
    restore_object,
)
from carmigrate.testing import FlakyStore


def test_fails_the_nth_call_before_doing_anything() -> None:
    """fail_calls counts calls from 1; a failing write writes nothing."""
    flaky = FlakyStore(MemoryStore(), fail_calls=[2])
    flaky.write("a", b"1")
    with pytest.raises(BackendUnavailable, match="call 2"):
        flaky.write("b", b"2")
    flaky.write("c", b"3")

    assert [i.key for i in flaky.inner.list()] == ["a", "c"]
    assert flaky.calls == 3
    assert flaky.failures == 1
    assert [o for *_, o in flaky.log] == ["ok", "fail", "ok"]


def test_after_mode_loses_the_answer() -> None:
    """when='after': the operation happened, the caller still sees an error."""
    flaky = FlakyStore(MemoryStore(), fail_calls=[1], when="after", transient=False)
    with pytest.raises(StorageError) as raised:
        flaky.write("a", b"1")

    assert not raised.value.transient
    assert read_bytes(flaky.inner, "a") == b"1"


def test_probability_is_seeded() -> None:
    """The same seed fails the same calls."""

    def failures(seed: int) -> list[int]:
        flaky = FlakyStore(MemoryStore(), probability=0.3, seed=seed)
        out = []
        for i in range(50):
            try:
                flaky.write(f"k{i}", b"x")
            except BackendUnavailable:
                out.append(i)
        return out

    assert failures(1) == failures(1)
    assert failures(1) != failures(2)
    assert 5 < len(failures(1)) < 30


def test_truncated_read_raises_never_short_data() -> None:
    """A truncated read delivers some bytes and then raises."""
    inner = MemoryStore()
    inner.write("k", b"x" * 1000)
    flaky = FlakyStore(inner, fail_calls=[1], truncate_reads_at=100)

    with flaky.open_read("k") as f:
        assert f.read(100) == b"x" * 100
        with pytest.raises(BackendUnavailable, match="cut after 100 bytes"):
            f.read()
    assert read_bytes(flaky, "k") == b"x" * 1000  # the next call is fine
    # a truncation point past the end is no fault at all
    late = FlakyStore(inner, fail_calls=[1], truncate_reads_at=5000)
    assert read_bytes(late, "k") == b"x" * 1000


def test_methods_filter_latency_and_capabilities() -> None:
    """Only chosen methods count; latency uses the injected sleep."""
    slept: list[float] = []
    flaky = FlakyStore(
        MemoryStore(),
        fail_calls=[1],
        methods=["stat"],
        latency=0.25,
        sleep=slept.append,
    )
    flaky.write("k", b"v")
    with pytest.raises(BackendUnavailable):
        flaky.stat("k")
    with pytest.raises(ObjectNotFound):
        flaky.stat("missing")

    assert slept == [0.25, 0.25, 0.25]
    assert flaky.capabilities == flaky.inner.capabilities
    assert flaky.url == flaky.inner.url


def test_bad_arguments() -> None:
    """Unknown methods, probabilities outside [0, 1] and bad modes are refused."""
    with pytest.raises(ValueError, match="unknown methods"):
        FlakyStore(MemoryStore(), methods=["copy"])
    with pytest.raises(ValueError, match="probability"):
        FlakyStore(MemoryStore(), probability=1.5)
    with pytest.raises(ValueError, match="when"):
        FlakyStore(MemoryStore(), when="during")  # type: ignore[arg-type]


def _no_wait(seconds: float) -> None:
    pass


def test_wrapping_a_cold_store_keeps_restore() -> None:
    """A FlakyStore around a store that restores is a SupportsRestore and restores."""
    cold = ColdMemoryStore(polls=1)
    cold.write("frozen", b"data")
    flaky = FlakyStore(cold)

    assert isinstance(flaky, SupportsRestore)
    assert flaky.capabilities.cold_tier
    info = restore_object(flaky, "frozen", poll_interval=0, sleep=_no_wait)
    assert not info.cold
    assert read_bytes(flaky, "frozen") == b"data"
    assert cold.requests == [("frozen", 1, "Standard")]


def test_wrapping_a_local_store_has_exactly_its_protocols(tmp_path: Path) -> None:
    """Around LocalStore: copy and cleanup are passed through, restore is not there."""
    local = LocalStore(tmp_path / "root")
    flaky = FlakyStore(local)

    assert isinstance(flaky, FlakyStore)
    assert not isinstance(flaky, SupportsRestore)
    assert not isinstance(flaky, SupportsPresignedUrls)
    assert isinstance(flaky, SupportsServerSideCopy)
    assert isinstance(flaky, SupportsTemporaryCleanup)
    assert flaky.capabilities == local.capabilities
    assert capabilities_of(flaky) == flaky.capabilities
    assert flaky.remove_temporary().removed == 0


def test_faults_in_optional_methods(tmp_path: Path) -> None:
    """Optional methods named in methods= are counted and fail like the others."""
    inner = MemoryStore()
    inner.write("src", b"v")
    flaky = FlakyStore(inner, methods=["copy_from"], fail_calls=[1])

    with pytest.raises(BackendUnavailable, match=r"call 1 \(copy_from 'dst'\)"):
        flaky.copy_from(flaky, "src", "dst")
    assert [i.key for i in inner.list()] == ["src"]  # failed before: nothing copied
    copy_object(flaky, "src", flaky, "dst")  # server-side, second call: no fault
    assert read_bytes(inner, "dst") == b"v"
    assert flaky.log == [(1, "copy_from", "dst", "fail"), (2, "copy_from", "dst", "ok")]

    local = FlakyStore(
        LocalStore(tmp_path / "root"),
        methods=["remove_temporary"],
        fail_calls=[1],
        transient=False,
    )
    with pytest.raises(StorageError, match="remove_temporary"):
        local.remove_temporary()
    assert local.remove_temporary().removed == 0


def test_optional_methods_the_store_lacks_are_refused() -> None:
    """Counting request_restore on a store that cannot restore is a mistake."""
    with pytest.raises(ValueError, match="unknown methods"):
        FlakyStore(MemoryStore(), methods=["request_restore"])
    FlakyStore(ColdMemoryStore(), methods=["request_restore"])


@pytest.mark.s3
def test_wrapping_a_cold_tier_s3_store_restores(moto: S3Server) -> None:
    """A FlakyStore around a cold-tier S3 store restores its cold objects."""
    store = moto.store(storage_class="GLACIER")
    store.write("frozen", b"data")
    flaky = FlakyStore(store, fail_calls=[2])

    assert isinstance(flaky, SupportsRestore)
    assert flaky.capabilities.cold_tier
    with pytest.raises(BackendUnavailable):  # call 2 (the first stat is call 1)
        restore_object(flaky, "frozen", poll_interval=0, sleep=_no_wait)
    info = restore_object(flaky, "frozen", poll_interval=0, sleep=_no_wait)
    assert not info.cold
    assert read_bytes(flaky, "frozen") == b"data"


@pytest.mark.s3
def test_wrapping_an_s3_store_without_cold_tier(moto: S3Server) -> None:
    """cold_tier=False: neither the store nor its wrapper claims to restore."""
    store = moto.store(cold_tier=False)
    flaky = FlakyStore(store)

    assert isinstance(store, S3Store)
    assert not isinstance(flaky, SupportsRestore)
    assert not flaky.capabilities.cold_tier
    assert isinstance(flaky, SupportsPresignedUrls)
    assert flaky.presign("k").startswith(moto.endpoint)
