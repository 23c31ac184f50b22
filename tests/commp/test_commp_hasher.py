"""PieceHasher and commp(): streaming, splits, copies, sources, threads."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import pytest
from commp_payloads import IMPLEMENTATIONS, NATIVE, counter
from hypothesis import given, settings
from hypothesis import strategies as st

from carmigrate.commp import (
    GO_MIN_PAYLOAD,
    IMPLEMENTATION,
    MAX_HEIGHT,
    PieceHasher,
    PieceInfo,
    commp,
)
from carmigrate.errors import PieceError

needs_native = pytest.mark.skipif(not NATIVE, reason="compiled core not built")

# sizes around quad and power-of-two boundaries: 127·2^k - 1, 127·2^k, 127·2^k + 1
BOUNDARY_SIZES = sorted({max(0, (127 << k) + d) for k in range(12) for d in (-1, 0, 1)})


def _reference(data: bytes) -> PieceInfo:
    return commp(data, implementation="reference")


@st.composite
def payloads(draw: st.DrawFn, max_size: int = 40_000) -> bytes:
    size = draw(
        st.one_of(
            st.integers(0, max_size),
            st.sampled_from([s for s in BOUNDARY_SIZES if s <= max_size]),
        )
    )
    kind = draw(st.sampled_from(["counter", "zero", "random-tail"]))
    if kind == "zero":
        return bytes(size)
    data = counter(size + 7)[7:]
    if kind == "random-tail" and size:
        tail = draw(st.binary(min_size=1, max_size=min(size, 64)))
        data = data[: size - len(tail)] + tail
    return data


# --- reference == native ----------------------------------------------------


@needs_native
@settings(max_examples=40)
@given(data=payloads(), impl=st.sampled_from(NATIVE or ("reference",)))
def test_native_equals_reference(data: bytes, impl: str) -> None:
    assert commp(data, implementation=impl) == _reference(data)


@needs_native
@settings(max_examples=30)
@given(
    data=payloads(max_size=20_000),
    impl=st.sampled_from(NATIVE or ("reference",)),
    chunk_log2=st.integers(0, 5),
    batch_chunks=st.integers(1, 4),
    threads=st.integers(1, 4),
)
def test_native_equals_reference_across_chunk_splits(
    data: bytes, impl: str, chunk_log2: int, batch_chunks: int, threads: int
) -> None:
    """Small chunks put thread-split and batch boundaries everywhere."""
    from carmigrate.commp import _native_engine

    saved = _native_engine.CHUNK_LOG2, _native_engine.BATCH_CHUNKS
    _native_engine.CHUNK_LOG2, _native_engine.BATCH_CHUNKS = chunk_log2, batch_chunks
    try:
        got = commp(data, implementation=impl, threads=threads)
    finally:
        _native_engine.CHUNK_LOG2, _native_engine.BATCH_CHUNKS = saved
    assert got == _reference(data)


@needs_native
@pytest.mark.parametrize("impl", NATIVE)
def test_native_equals_reference_at_boundaries(impl: str) -> None:
    for size in BOUNDARY_SIZES:
        data = counter(size)
        assert commp(data, implementation=impl) == _reference(data), size


# --- streaming shape --------------------------------------------------------


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@settings(max_examples=25)
@given(data=payloads(max_size=6_000), cuts=st.lists(st.integers(0, 6_000), max_size=8))
def test_any_split_of_updates_gives_the_same_digest(
    impl: str, data: bytes, cuts: list[int]
) -> None:
    whole = PieceHasher(data, implementation=impl).digest()
    h = PieceHasher(implementation=impl)
    points = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    for a, b in itertools.pairwise(points):
        h.update(data[a:b])
    assert h.digest() == whole
    assert h.payload_size == len(data)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@settings(max_examples=20)
@given(
    prefix=payloads(max_size=3_000),
    a=st.binary(max_size=700),
    b=st.binary(max_size=700),
)
def test_copy_is_independent(impl: str, prefix: bytes, a: bytes, b: bytes) -> None:
    h = PieceHasher(prefix, implementation=impl)
    before = h.piece_info()
    c = h.copy()
    assert c.piece_info() == before
    c.update(a)
    h.update(b)
    assert c.piece_info() == commp(prefix + a, implementation=impl)
    assert h.piece_info() == commp(prefix + b, implementation=impl)
    assert c.implementation == h.implementation == impl


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_digest_does_not_change_state(impl: str) -> None:
    data = counter(5000)
    h = PieceHasher(implementation=impl)
    h.update(data[:1000])
    first = h.hexdigest()
    assert h.hexdigest() == first
    h.update(data[1000:])
    assert h.digest() == commp(data, implementation=impl).root
    assert h.hexdigest() == h.digest().hex()


def test_hashlib_shape() -> None:
    h = PieceHasher()
    assert h.name == "sha2-256-trunc254-padded"
    assert h.digest_size == 32
    assert h.block_size == 127
    assert len(h.digest()) == 32
    assert h.implementation == IMPLEMENTATION
    assert "PieceHasher" in repr(h)
    assert h.read_size > 0


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_update_accepts_buffers(impl: str) -> None:
    import array

    data = counter(1000)
    want = commp(data, implementation=impl)
    for value in (bytearray(data), memoryview(data), array.array("B", data)):
        assert PieceHasher(value, implementation=impl).piece_info() == want
    ints = array.array("I", data[:996])
    assert PieceHasher(ints, implementation=impl).piece_info() == commp(
        data[:996], implementation=impl
    )
    with pytest.raises(TypeError):
        PieceHasher(implementation=impl).update("text")  # type: ignore[arg-type]


# --- small payloads and limits ---------------------------------------------


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_small_payloads_follow_frc0069_or_refuse(impl: str) -> None:
    zero = commp(b"", implementation=impl)
    assert zero.payload_size == 0
    assert zero.padding == 127
    assert zero.cid_v1 == commp(bytes(64), implementation=impl).cid_v1
    assert zero.cid_v2 != commp(bytes(64), implementation=impl).cid_v2
    with pytest.raises(PieceError, match="64 bytes is shorter than the minimum of 65"):
        commp(bytes(64), min_payload=GO_MIN_PAYLOAD, implementation=impl)
    assert (
        commp(bytes(65), min_payload=GO_MIN_PAYLOAD, implementation=impl).padding == 62
    )
    h = PieceHasher(b"abc", min_payload=10, implementation=impl)
    with pytest.raises(PieceError, match="shorter than the minimum of 10"):
        h.digest()
    h.update(bytes(7))
    assert len(h.digest()) == 32


def test_bad_arguments() -> None:
    with pytest.raises(PieceError, match="threads must be at least 1"):
        PieceHasher(threads=0)
    with pytest.raises(PieceError, match="min_payload"):
        PieceHasher(min_payload=-1)
    with pytest.raises(PieceError, match="not available"):
        PieceHasher(implementation="native-sparc")
    with pytest.raises(TypeError, match="commp\\(\\) takes bytes"):
        commp(12345)  # type: ignore[arg-type]


def test_payload_larger_than_the_largest_piece_is_refused() -> None:
    h = PieceHasher(b"x")
    h._size = (127 << (MAX_HEIGHT - 2)) - 1  # pretend, without hashing exabytes
    with pytest.raises(PieceError, match="exceeds the largest piece"):
        h.update(b"ab")
    assert h.payload_size == (127 << (MAX_HEIGHT - 2)) - 1


# --- sources ----------------------------------------------------------------


class _ReadOnly:
    """A stream with read() only, returning short reads."""

    def __init__(self, data: bytes) -> None:
        self._f = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        return self._f.read(min(n, 1000) if n >= 0 else n)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_commp_sources(impl: str, tmp_path: Path) -> None:
    data = counter(300_000 if impl != "reference" else 30_000)
    want = commp(data, implementation=impl)
    path = tmp_path / "payload.car"
    path.write_bytes(data)
    assert commp(path, implementation=impl) == want
    assert commp(str(path), implementation=impl) == want
    assert commp(io.BytesIO(data), implementation=impl) == want
    assert commp(_ReadOnly(data), implementation=impl) == want
    with path.open("rb") as f:
        assert commp(f, implementation=impl) == want
    assert commp(memoryview(data), implementation=impl) == want


def test_commp_source_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        commp(tmp_path / "missing.car")
    with pytest.raises(TypeError, match="not bytes"):
        commp(io.StringIO("text"))

    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, b: memoryview) -> int:  # type: ignore[override]
            raise OSError("disk on fire")

    with pytest.raises(OSError, match="disk on fire"):
        commp(Broken())

    class NonBlocking(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, b: memoryview) -> None:  # type: ignore[override]
            return None

    with pytest.raises(PieceError, match="non-blocking"):
        commp(NonBlocking())


# --- threads ----------------------------------------------------------------


@needs_native
@pytest.mark.parametrize("impl", NATIVE)
@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_threads_on_inputs_large_enough_to_split(
    impl: str, threads: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A few MiB in 64-quad chunks: many batches, each split across threads."""
    from carmigrate.commp import _native_engine

    monkeypatch.setattr(_native_engine, "CHUNK_LOG2", 6)
    monkeypatch.setattr(_native_engine, "BATCH_CHUNKS", 16)
    for size in (3 << 20, (127 << 15) + 12_345):
        data = counter(size)
        single = commp(data, implementation=impl, threads=1)
        assert commp(data, implementation=impl, threads=threads) == single
        assert commp(io.BytesIO(data), implementation=impl, threads=threads) == single
    # the default chunking, on several threads, for a multi-chunk payload
    monkeypatch.undo()
    data = counter(5 << 20)
    assert commp(data, implementation=impl, threads=threads) == commp(
        data, implementation=impl, threads=1
    )


@needs_native
@pytest.mark.parametrize("impl", NATIVE)
def test_payloads_of_exactly_one_batch_of_one_chunk(
    impl: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from carmigrate.commp import _native_engine

    monkeypatch.setattr(_native_engine, "CHUNK_LOG2", 2)
    monkeypatch.setattr(_native_engine, "BATCH_CHUNKS", 1)
    for size in (507, 508, 509, 1016, 1017, 2032, 4064):
        data = counter(size)
        for h in (PieceHasher(data, threads=1, implementation=impl),):
            assert h.piece_info() == _reference(data), size


@needs_native
def test_streaming_a_large_payload_matches_one_shot() -> None:
    data = counter(9_000_001)
    h = PieceHasher()
    for off in range(0, len(data), 65_536):
        h.update(data[off : off + 65_536])
    assert h.piece_info() == commp(data)
