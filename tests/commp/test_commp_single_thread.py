"""One-thread hashing (as the migration engine uses it) equals the reference."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carmigrate.commp import PieceHasher, available_implementations


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
