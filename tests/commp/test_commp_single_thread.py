"""One-thread hashing (as the migration engine uses it) equals the reference."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carmigrate.commp import PieceHasher, _native_engine, available_implementations


def payload(n: int) -> bytes:
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(i.to_bytes(8, "little")).digest()
        i += 1
    return bytes(out[:n])


NATIVE = [i for i in available_implementations() if i != "reference"]


@pytest.mark.skipif(not NATIVE, reason="needs the compiled core")
@settings(max_examples=12, deadline=None)
@given(
    size=st.integers(min_value=0, max_value=3 << 20),
    step=st.sampled_from([1, 4096, 256 << 10, 1 << 20]),
)
def test_one_thread_many_chunks_equals_reference(size: int, step: int) -> None:
    """Payloads spanning many 254 KiB chunks, fed in any step, give the reference root."""
    data = payload(size)
    native = PieceHasher(threads=1, implementation=NATIVE[0])
    for off in range(0, len(data), step):
        native.update(data[off : off + step])
    half = native.copy()

    expected = PieceHasher(data, implementation="reference").digest()

    assert native.digest() == expected
    assert half.digest() == expected


@pytest.mark.skipif(not NATIVE, reason="needs the compiled core")
def test_reused_buffers_never_mix_hashers() -> None:
    """Hashers that live and die interleaved (their buffers reused) stay apart."""
    sizes = [300_000, 700_001, 260_096, 1 << 20, 5_000]
    datas = [payload(n + 11 * i) for i, n in enumerate(sizes)]
    expected = [PieceHasher(d, implementation="reference").digest() for d in datas]
    step = 100_000
    for _ in range(3):
        live = [PieceHasher(threads=1, implementation=NATIVE[0]) for _ in datas]
        for off in range(0, max(len(d) for d in datas), step):
            for hasher, data in zip(live, datas, strict=True):
                hasher.update(data[off : off + step])
            # a short-lived hasher in between returns its buffer for reuse
            stray = PieceHasher(threads=1, implementation=NATIVE[0])
            stray.update(b"\xff" * 200_000)
            stray.update(b"\xff" * 200_000)  # its buffer grows to a whole chunk
            del stray
            assert _native_engine._SPARE  # ...and is kept for the next hasher
        assert [h.digest() for h in live] == expected
        del live


@pytest.mark.skipif(not NATIVE, reason="needs the compiled core")
def test_a_spare_buffer_of_another_chunk_size_is_not_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A buffer kept from a hasher with bigger chunks never leaks stale bytes."""
    big = PieceHasher(threads=1, implementation=NATIVE[0])
    big.update(b"\xee" * 100_000)
    big.update(b"\xee" * 200_000)  # a whole default-size chunk buffer
    del big
    assert _native_engine._SPARE
    monkeypatch.setattr(_native_engine, "CHUNK_LOG2", 2)  # 508-byte chunks
    data = payload(5_000)
    small = PieceHasher(threads=1, implementation=NATIVE[0])
    for off in range(0, len(data), 100):
        small.update(data[off : off + 100])
    assert small.digest() == PieceHasher(data, implementation="reference").digest()
