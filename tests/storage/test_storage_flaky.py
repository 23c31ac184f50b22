"""FlakyStore injects faults deterministically and never returns short data."""

from __future__ import annotations

import pytest

from carmigrate.errors import BackendUnavailable, ObjectNotFound, StorageError
from carmigrate.storage import MemoryStore, read_bytes
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
    assert not flaky.capabilities.server_side_copy
    assert flaky.url == flaky.inner.url


def test_bad_arguments() -> None:
    """Unknown methods, probabilities outside [0, 1] and bad modes are refused."""
    with pytest.raises(ValueError, match="unknown methods"):
        FlakyStore(MemoryStore(), methods=["copy"])
    with pytest.raises(ValueError, match="probability"):
        FlakyStore(MemoryStore(), probability=1.5)
    with pytest.raises(ValueError, match="when"):
        FlakyStore(MemoryStore(), when="during")  # type: ignore[arg-type]
