"""fr32 padding and unpadding (spec §2)."""

from __future__ import annotations

import pytest
from commp_payloads import counter
from hypothesis import given
from hypothesis import strategies as st

from carmigrate.commp._fr32 import pad_quad
from carmigrate.commp.lowlevel import fr32_pad, fr32_unpad
from carmigrate.errors import PieceError

quads = st.integers(0, 12).flatmap(
    lambda q: st.binary(min_size=127 * q, max_size=127 * q)
)


def _shift_form(quad: bytes) -> bytes:
    """The spec's byte-level form, written out independently."""
    src = quad + b"\0"
    out = bytearray(src[0:32])
    for c in (1, 2, 3):
        for m in range(32):
            out.append(
                ((src[32 * c + m] << 2 * c) | (src[32 * c + m - 1] >> (8 - 2 * c)))
                & 0xFF
            )
    for leaf in range(4):
        out[32 * leaf + 31] &= 0x3F
    return bytes(out)


@given(quads)
def test_round_trip(data: bytes) -> None:
    padded = fr32_pad(data)
    assert len(padded) == len(data) // 127 * 128
    assert fr32_unpad(padded) == data
    for leaf in range(0, len(padded), 32):
        assert padded[leaf + 31] & 0xC0 == 0


@given(st.binary(min_size=127, max_size=127))
def test_integer_form_equals_shift_form(quad: bytes) -> None:
    assert pad_quad(quad) == _shift_form(quad)


@given(quads)
def test_native_pad_equals_integer_form(data: bytes) -> None:
    """fr32_pad uses the compiled core when present; pad_quad is the spec."""
    expected = b"".join(pad_quad(data[i : i + 127]) for i in range(0, len(data), 127))
    assert fr32_pad(data) == expected


def test_known_layout() -> None:
    quad = bytes([0xFF]) * 127
    padded = fr32_pad(quad)
    assert padded == (b"\xff" * 31 + b"\x3f") * 3 + b"\xff" * 31 + b"\x3f"
    assert fr32_pad(bytes(127)) == bytes(128)
    data = counter(127 * 5)
    assert fr32_pad(memoryview(data)) == fr32_pad(bytearray(data))


@pytest.mark.parametrize("n", [1, 126, 128, 253])
def test_pad_needs_whole_quads(n: int) -> None:
    with pytest.raises(PieceError, match="whole 127-byte quads"):
        fr32_pad(bytes(n))


@pytest.mark.parametrize("n", [1, 127, 129])
def test_unpad_needs_whole_quads(n: int) -> None:
    with pytest.raises(PieceError, match="whole 128-byte quads"):
        fr32_unpad(bytes(n))


def test_unpad_rejects_non_fr32_leaves() -> None:
    bad = bytearray(256)
    bad[128 + 64 + 31] = 0x40
    with pytest.raises(PieceError, match=r"bytes 192\.\.223 are not an fr32 leaf"):
        fr32_unpad(bytes(bad))
