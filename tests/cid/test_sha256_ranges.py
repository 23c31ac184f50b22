"""sha256_ranges: SHA-256 of many ranges of one buffer."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

import carmigrate.cid._ranges as ranges_module
from carmigrate.cid.lowlevel import SHA256_RANGES_NATIVE, sha256_ranges


@pytest.fixture(params=["native", "hashlib"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run with the compiled two-stream code, or with hashlib alone."""
    if request.param == "native" and not SHA256_RANGES_NATIVE:
        pytest.skip("sha256_ranges has no compiled form here")
    if request.param == "hashlib":
        monkeypatch.setattr(ranges_module, "_NATIVE", None)
    return str(request.param)


@st.composite
def buffers_and_ranges(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, int]]]:
    """A buffer and ranges in it, with lengths around the 64-byte block and padding edges."""
    data = draw(st.binary(max_size=3000))
    edges = st.sampled_from([0, 1, 55, 56, 63, 64, 65, 119, 120, 127, 128, 129])
    out = []
    for _ in range(draw(st.integers(0, 9))):
        start = draw(st.integers(0, len(data)))
        room = len(data) - start
        length = min(draw(st.one_of(edges, st.integers(0, room))), room)
        out.append((start, length))
    return data, out


@pytest.mark.usefixtures("path")
@given(buffers_and_ranges())
def test_each_digest_is_hashlibs(case: tuple[bytes, list[tuple[int, int]]]) -> None:
    """Every range hashes as hashlib hashes its slice, in the order given."""
    data, ranges = case

    got = sha256_ranges(data, ranges)

    assert got == [hashlib.sha256(data[s : s + n]).digest() for s, n in ranges]


@pytest.mark.usefixtures("path")
def test_large_uneven_ranges() -> None:
    """A whole buffer with its parts, of very different sizes, as one call."""
    data = bytes(range(256)) * 5000 + b"tail"
    ranges = [(0, len(data)), (3, 700_001), (700_004, 1), (1000, 0), (64, 64 * 1000)]

    got = sha256_ranges(bytearray(data), ranges)

    assert got == [hashlib.sha256(data[s : s + n]).digest() for s, n in ranges]


@pytest.mark.usefixtures("path")
def test_a_memoryview_of_another_format_is_read_as_bytes() -> None:
    """Buffers of wider items are hashed as their bytes."""
    raw = bytes(range(200)) * 8
    words = memoryview(raw).cast("I")

    assert sha256_ranges(words, [(4, 500)]) == [hashlib.sha256(raw[4:504]).digest()]


@pytest.mark.usefixtures("path")
@pytest.mark.parametrize("bad", [(-1, 2), (0, 11), (10, 1), (3, -1), (11, 0)])
def test_a_range_outside_the_buffer_is_refused(bad: tuple[int, int]) -> None:
    """The error names the range and the buffer's size."""
    with pytest.raises(ValueError, match=r"range 1 \(start .*10-byte buffer"):
        sha256_ranges(b"0123456789", [(0, 10), bad])


@pytest.mark.usefixtures("path")
def test_no_ranges_no_digests() -> None:
    """An empty list of ranges gives an empty list."""
    assert sha256_ranges(b"abc", []) == []


@pytest.mark.usefixtures("path")
def test_pairs_may_be_any_sequence() -> None:
    """Lists work as pairs as well as tuples."""
    data = b"0123456789"
    assert sha256_ranges(data, [[2, 5]]) == [hashlib.sha256(data[2:7]).digest()]  # type: ignore[list-item]


@pytest.mark.skipif(not SHA256_RANGES_NATIVE, reason="tests the compiled module")
def test_ranges_changed_while_being_read_are_safe() -> None:
    """Code run while converting a range (``__index__``) cannot make the call read freed items."""
    from carmigrate.cid import _sha256  # type: ignore[attr-defined]

    class ClearsTheList:
        def __index__(self) -> int:
            ranges.clear()
            return 0

    ranges: list[tuple[object, int]] = [(ClearsTheList(), 1), *[(0, 1)] * 1000]

    out = _sha256.sha256_ranges(bytes(100), ranges)

    assert out == hashlib.sha256(b"\0").digest() * 1001


@pytest.mark.skipif(not SHA256_RANGES_NATIVE, reason="tests the compiled module")
@pytest.mark.parametrize("bad", [(1,), (0, 1, 2), ("a", 1), (2**70, 1)])
def test_a_malformed_pair_is_a_clear_error(bad: tuple[object, ...]) -> None:
    """Wrong arity, a non-integer or an integer too large is refused with its position."""
    with pytest.raises((ValueError, TypeError, OverflowError)):
        sha256_ranges(b"abc", [(0, 1), bad])  # type: ignore[list-item]
