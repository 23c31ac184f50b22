"""DAG-CBOR: canonical encoding, strict decoding, agreement with dag-cbor."""

from __future__ import annotations

import contextlib
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carmigrate.cid import CID, decode_dag_cbor, encode_dag_cbor
from carmigrate.errors import FormatError

cids = st.builds(lambda b: CID.from_data(b, codec="dag-cbor"), st.binary(max_size=8))
ipld = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 64), max_value=(1 << 64) - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | cids,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)


@given(ipld)
def test_round_trip_and_canonical(value: object) -> None:
    """decode(encode(v)) == v, and re-encoding gives the same bytes."""
    enc = encode_dag_cbor(value)

    dec = decode_dag_cbor(enc)

    assert dec == value or (isinstance(value, float) and math.isnan(value))
    assert encode_dag_cbor(dec) == enc


def test_map_keys_sorted_length_first() -> None:
    """Keys are ordered by length, then bytewise, as DAG-CBOR requires."""
    enc = encode_dag_cbor({"bb": 1, "a": 2, "c": 3})

    assert enc == bytes.fromhex("a3") + b"\x61a\x02" + b"\x61c\x03" + b"\x62bb\x01"


@pytest.mark.parametrize(
    ("hexdata", "fragment"),
    [
        ("9f01ff", "indefinite"),
        ("1817", "minimally"),
        ("a2616201616101", "canonical order"),
        ("a2616101616101", "repeated"),
        ("a10101", "keys must be strings"),
        ("c11a00000000", "tag 1"),
        ("f97e00", "64-bit"),
        ("fb7ff8000000000000", "NaN"),
        ("f7", "simple value"),
        ("0101", "trailing"),
        ("d82a4401551200", "0x00 multibase"),
        ("62ff00", "UTF-8"),
        ("9a7fffffff", "cannot fit"),
        ("5a00010000", "expected 65536 more bytes"),
    ],
)
def test_strict_decoding(hexdata: str, fragment: str) -> None:
    """Everything DAG-CBOR forbids is a FormatError naming the problem."""
    with pytest.raises(FormatError, match=fragment):
        decode_dag_cbor(bytes.fromhex(hexdata))


def test_error_offsets_are_shifted() -> None:
    """The offset argument places errors in the enclosing file."""
    with pytest.raises(FormatError, match="byte offset 101"):
        decode_dag_cbor(bytes.fromhex("0101"), offset=100)


def test_deep_nesting_is_refused() -> None:
    """Nesting deeper than the limit is refused both ways, without recursion errors."""
    with pytest.raises(FormatError, match="nesting"):
        decode_dag_cbor(b"\x81" * 300 + b"\x01")
    value: object = 1
    for _ in range(300):
        value = [value]
    with pytest.raises(ValueError, match="deeper"):
        encode_dag_cbor(value)


def test_encode_rejects_non_ipld() -> None:
    """Non-string keys, big ints, NaN and foreign types are refused."""
    with pytest.raises(TypeError):
        encode_dag_cbor({1: 2})
    with pytest.raises(ValueError, match="64 bits"):
        encode_dag_cbor(1 << 64)
    with pytest.raises(ValueError, match="NaN"):
        encode_dag_cbor(float("nan"))
    with pytest.raises(TypeError):
        encode_dag_cbor(object())


@given(st.binary(max_size=64))
def test_random_bytes_decode_or_format_error(data: bytes) -> None:
    """The decoder's only failure mode on arbitrary bytes is FormatError."""
    with contextlib.suppress(FormatError):
        decode_dag_cbor(data)
