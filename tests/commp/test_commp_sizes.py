"""The three sizes: validation, exact conversions (spec §0-§1)."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carmigrate.commp import (
    MAX_HEIGHT,
    MIN_HEIGHT,
    PaddedPieceSize,
    PayloadSize,
    UnpaddedPieceSize,
)
from carmigrate.errors import PieceError

heights = st.integers(MIN_HEIGHT, MAX_HEIGHT)
payloads = st.integers(0, 127 << (MAX_HEIGHT - 2))


@given(heights)
def test_padded_unpadded_round_trip(h: int) -> None:
    p = PaddedPieceSize.from_height(h)
    u = p.unpadded()
    assert isinstance(u, UnpaddedPieceSize)
    assert int(p) == 32 << h
    assert int(u) == int(p) // 128 * 127
    assert u.padded() == p
    assert isinstance(u.padded(), PaddedPieceSize)
    assert p.height == u.height == h
    assert p.quads == u.quads == 1 << (h - 2)


@given(payloads)
def test_payload_lands_in_smallest_piece(n: int) -> None:
    size = PayloadSize(n)
    u = size.unpadded_piece_size()
    p = size.padded_piece_size()
    assert n <= u
    assert u.padded() == p
    assert p.height == size.height
    assert size.padding() == int(u) - n
    # the next smaller piece would not hold it (except for the one-quad piece)
    if size.height > MIN_HEIGHT:
        assert n > int(u) // 2


@pytest.mark.parametrize(
    ("n", "padded"),
    [
        (0, 128),
        (1, 128),
        (127, 128),
        (128, 256),
        (254, 256),
        (255, 512),
        (1 << 20, 2 << 20),
        (127 << 13, 1 << 20),
        ((127 << 13) + 1, 2 << 20),
        (1 << 30, 2 << 30),
        (127 << 28, 32 << 30),
        ((127 << 27) + 1, 32 << 30),
    ],
)
def test_boundaries(n: int, padded: int) -> None:
    """Spec §1: payloads 127·2^(k-1) < n <= 127·2^k give P = 128·2^k."""
    assert PayloadSize(n).padded_piece_size() == padded


def test_frc0069_zero_payload_has_padding_127() -> None:
    assert PayloadSize(0).padding() == 127
    assert PayloadSize(508).padding() == 0
    assert PayloadSize(508).height == 4


@pytest.mark.parametrize(
    "value", [0, 64, 127, 129, 192, 1000, 1 << 64, -128, (32 << MAX_HEIGHT) * 2]
)
def test_bad_padded_size(value: int) -> None:
    with pytest.raises(PieceError, match="padded piece size"):
        PaddedPieceSize(value)


@pytest.mark.parametrize("value", [0, 1, 126, 128, 254 + 127, 127 * 3, -127])
def test_bad_unpadded_size(value: int) -> None:
    with pytest.raises(PieceError, match="unpadded piece size"):
        UnpaddedPieceSize(value)


def test_bad_payload_size() -> None:
    with pytest.raises(PieceError, match="negative"):
        PayloadSize(-1)
    with pytest.raises(PieceError, match="exceeds the largest piece"):
        PayloadSize((127 << (MAX_HEIGHT - 2)) + 1)
    assert PayloadSize(127 << (MAX_HEIGHT - 2)).height == MAX_HEIGHT


@pytest.mark.parametrize("h", [-1, 0, 1, MAX_HEIGHT + 1, 255])
def test_bad_height(h: int) -> None:
    with pytest.raises(PieceError, match="tree height"):
        PaddedPieceSize.from_height(h)


@pytest.mark.parametrize("cls", [PaddedPieceSize, UnpaddedPieceSize, PayloadSize])
@pytest.mark.parametrize("value", [128.0, "128", True, None])
def test_sizes_need_integers(cls: type, value: object) -> None:
    with pytest.raises(PieceError, match="integer"):
        cls(value)


def test_sizes_are_ints_and_pickle() -> None:
    p = PaddedPieceSize(1024)
    assert p == 1024
    assert isinstance(p, int)
    assert repr(p) == "PaddedPieceSize(1024)"
    assert repr(UnpaddedPieceSize(1016)) == "UnpaddedPieceSize(1016)"
    assert repr(PayloadSize(5)) == "PayloadSize(5)"
    assert pickle.loads(pickle.dumps(p)) == p
    assert type(pickle.loads(pickle.dumps(p))) is PaddedPieceSize
    with pytest.raises(AttributeError):
        p.extra = 1  # type: ignore[attr-defined]
