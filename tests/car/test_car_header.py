"""Header values: CARv2 header and characteristics, limits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carmigrate.car import (
    DEFAULT_LIMITS,
    DEFAULT_MAX_HEADER_SIZE,
    DEFAULT_MAX_SECTION_SIZE,
    CarHeader,
    CarLimits,
    CarV2Header,
    Characteristics,
)
from carmigrate.car.lowlevel import PRAGMA
from carmigrate.errors import CarFormatError

u64 = st.integers(min_value=0, max_value=(1 << 64) - 1)


def test_pragma_is_the_fixed_eleven_bytes() -> None:
    """The pragma is varint 10 and the DAG-CBOR map {"version": 2}."""
    assert bytes.fromhex("0aa16776657273696f6e02") == PRAGMA


def test_default_limits_match_go_car() -> None:
    """32 MiB headers and 8 MiB sections, as go-car's defaults."""
    assert (DEFAULT_MAX_HEADER_SIZE, DEFAULT_MAX_SECTION_SIZE) == (32 << 20, 8 << 20)
    assert CarLimits() == DEFAULT_LIMITS


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "8"])
def test_limits_must_be_positive_integers(bad: object) -> None:
    """CarLimits refuses zero, negatives, bools and non-integers."""
    with pytest.raises(ValueError, match="positive integer"):
        CarLimits(max_section_size=bad)  # type: ignore[arg-type]


def test_limits_are_frozen() -> None:
    """CarLimits is a frozen value."""
    import attrs

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        DEFAULT_LIMITS.max_header_size = 1  # type: ignore[misc]


def test_fully_indexed_is_the_leftmost_bit() -> None:
    """The fully-indexed characteristic is the first bit of the 16 bytes (go-car's Hi bit 7)."""
    c = Characteristics().with_fully_indexed(True)
    header = CarV2Header(51, 10, 0, c)

    assert c.fully_indexed
    assert header.encode()[:16] == b"\x80" + bytes(15)
    assert not c.with_fully_indexed(False).fully_indexed
    assert Characteristics(hi=0x80 | 0x01, lo=5).with_fully_indexed(
        False
    ) == Characteristics(1, 5)


@given(
    u64,
    u64,
    st.integers(min_value=51, max_value=1 << 40),
    st.integers(min_value=1, max_value=1 << 40),
)
def test_v2_header_round_trips(
    hi: int, lo: int, data_offset: int, data_size: int
) -> None:
    """Any consistent header encodes to 40 bytes and decodes back, unknown bits kept."""
    header = CarV2Header(
        data_offset, data_size, data_offset + data_size, Characteristics(hi, lo)
    )

    encoded = header.encode()

    assert len(encoded) == 40
    assert CarV2Header.decode(encoded) == header
    assert header.has_index
    assert header.data_end == data_offset + data_size


def test_v2_header_decode_checks_length() -> None:
    """Decoding anything but 40 bytes fails at the given offset."""
    with pytest.raises(CarFormatError) as info:
        CarV2Header.decode(b"\x00" * 39, offset=11)

    assert info.value.offset == 11


@pytest.mark.parametrize("bad", [-1, 1 << 64, True])
def test_header_fields_are_u64(bad: int) -> None:
    """Header fields outside uint64 are refused."""
    with pytest.raises(ValueError, match=r"2\*\*64"):
        CarV2Header(bad, 1)
    with pytest.raises(ValueError, match=r"2\*\*64"):
        Characteristics(bad)


def test_car_header_data_offset() -> None:
    """Index offsets are relative to 0 for a CARv1 and to data_offset for a CARv2."""
    assert CarHeader(1, []).data_offset == 0
    assert CarHeader(2, (), CarV2Header(100, 5)).data_offset == 100
    assert CarHeader(1, iter([])).roots == ()
