"""The public Hypothesis strategies and the CAR corrupter."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from carmigrate.car import (
    INDEX_SORTED,
    Block,
    CarBlockReader,
    CarWriter,
    iter_blocks,
    verify_car,
)
from carmigrate.cid import CID, HashCheck
from carmigrate.errors import BlockHashMismatch, CarFormatError, LimitExceeded
from carmigrate.testing.strategies import (
    CORRUPTIONS,
    Corruption,
    blocks,
    car_bytes,
    cids,
    corrupt_car,
    corruptions,
)


@given(cids())
def test_cids_are_well_formed(cid: CID) -> None:
    """Drawn CIDs survive a round trip through their string and binary forms."""
    assert CID.decode(str(cid)) == cid
    assert CID.from_bytes(bytes(cid)) == cid


@given(cids(codecs=st.just("dag-cbor"), hashes=st.just(0x12), versions=st.just(1)))
def test_cids_follow_their_arguments(cid: CID) -> None:
    """Codec, hash function and version come from the given strategies."""
    assert (cid.version, cid.codec_name, cid.hash_code, len(cid.digest)) == (
        1,
        "dag-cbor",
        0x12,
        32,
    )


@given(cids(codecs=st.just("dag-pb"), hashes=st.just("sha2-256"), versions=st.just(0)))
def test_cids_v0(cid: CID) -> None:
    """Version 0 is drawn for dag-pb with sha2-256."""
    assert cid.version == 0


@given(blocks())
def test_blocks_hash_to_their_cids(block: Block) -> None:
    """Every drawn block verifies against its CID."""
    assert block.check() is HashCheck.VERIFIED


@given(
    blocks(
        data=st.binary(min_size=3, max_size=3),
        hashes=st.just("sha2-512"),
        versions=st.just(0),
    )
)
def test_blocks_follow_their_arguments(block: Block) -> None:
    """Data and hash come from the given strategies; v0 falls back to v1 when impossible."""
    assert len(block.data) == 3
    assert block.cid.hash_code == 0x13
    assert block.cid.version == 1


@given(car_bytes(version=2, min_blocks=1, max_blocks=3))
def test_car_bytes_are_well_formed(data: bytes) -> None:
    """Drawn CARs have the requested version and block count and verify fully."""
    reader = CarBlockReader(data)
    count = sum(1 for _ in reader)

    assert reader.version == 2
    assert 1 <= count <= 3
    assert verify_car(data).fully_verified


@given(
    car_bytes(
        version=1,
        blocks=blocks(data=st.just(b"same")),
        min_blocks=2,
        max_blocks=2,
        max_roots=0,
    )
)
def test_car_bytes_with_given_blocks(data: bytes) -> None:
    """The blocks strategy and the bounds are used as given."""
    reader = CarBlockReader(data)

    assert reader.roots == ()
    assert [b.data for b in reader] == [b"same", b"same"]


@given(corruptions())
def test_corruptions_are_detected_as_promised(corruption: Corruption) -> None:
    """verify_car reports the promised error class at the promised offset."""
    failure = verify_car(corruption.data).first_failure

    assert corruption.how in CORRUPTIONS
    assert type(failure) is corruption.error
    assert failure is not None
    assert failure.offset == corruption.offset


@given(corruptions(hows=st.just("truncate")))
def test_truncations_break_streaming_too(corruption: Corruption) -> None:
    """A truncated CAR raises CarFormatError from iter_blocks at the promised offset."""
    with pytest.raises(CarFormatError) as info:
        list(iter_blocks(corruption.data))

    assert info.value.offset == corruption.offset


def _car(*payloads: bytes) -> bytes:
    out = io.BytesIO()
    with CarWriter(out, []) as w:
        for p in payloads or (b"data0", b"data1", b"data2"):
            b = Block.from_data(p)
            w.write(b.cid, b.data)
    return out.getvalue()


def test_corrupt_car_each_way() -> None:
    """Each corruption gives its documented error class and offset."""
    data = _car()
    locs = list(CarBlockReader(data).locations())

    flip = corrupt_car(data, how="flip-data", block=1)
    cut = corrupt_car(data, how="truncate", block=2)
    length = corrupt_car(data, how="section-length", block=0)
    header = corrupt_car(data, how="header-length")

    assert (flip.error, flip.offset) == (BlockHashMismatch, locs[1].offset)
    assert (cut.error, cut.offset) == (CarFormatError, locs[2].section_offset)
    assert (length.error, length.offset) == (LimitExceeded, locs[0].section_offset)
    assert (header.error, header.offset) == (LimitExceeded, 0)
    assert len(flip.data) == len(data)
    assert len(cut.data) < len(data)


def test_corrupt_car_bad_arguments() -> None:
    """Unknown corruptions, blocks out of range and non-CARs raise InvalidArgument."""
    data = _car()
    empty_blocks = _car(b"")

    with pytest.raises(InvalidArgument, match="how="):
        corrupt_car(data, how="melt")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="out of range"):
        corrupt_car(data, how="truncate", block=3)
    with pytest.raises(InvalidArgument, match="well-formed CAR"):
        corrupt_car(b"\x00", how="truncate")
    with pytest.raises(InvalidArgument, match="no block"):
        corrupt_car(empty_blocks, how="flip-data")
    with pytest.raises(InvalidArgument, match="no complete varint"):
        corrupt_car(b"\x80", how="header-length")


@pytest.mark.parametrize(
    ("strategy", "match"),
    [
        (lambda: cids(codecs=["raw"]), "codecs"),  # type: ignore[arg-type]
        (lambda: cids(hashes=st.just("no-such-hash")), "hash function"),
        (lambda: cids(versions=st.just(2)), "versions"),
        (lambda: blocks(data=b"x"), "data"),  # type: ignore[arg-type]
        (lambda: blocks(hashes=st.just("sha3-256")), "cannot compute"),
        (lambda: blocks(versions=st.just(7)), "versions"),
        (lambda: car_bytes(version=3), "version"),  # type: ignore[arg-type]
        (lambda: car_bytes(min_blocks=-1), "min_blocks"),
        (lambda: car_bytes(min_blocks=3, max_blocks=2), "less than"),
        (lambda: car_bytes(blocks=[]), "blocks"),  # type: ignore[arg-type]
        (lambda: corruptions(cars=b""), "cars"),  # type: ignore[arg-type]
        (lambda: corruptions(hows=st.just("melt")), "hows"),
    ],
)
def test_bad_arguments_raise_invalid_argument_at_draw_time(
    strategy: object, match: str
) -> None:
    """Bad arguments do not fail on the call, only when drawing, with InvalidArgument."""
    s = strategy()  # type: ignore[operator]

    @given(s)
    def draw(_: object) -> None:
        pass

    with pytest.raises(InvalidArgument, match=match):
        draw()


def test_index_choice_is_drawn_for_carv2() -> None:
    """Drawn CARv2 files use every index option over enough draws."""
    from carmigrate.car import CarReader

    seen = set()

    @given(car_bytes(version=2, min_blocks=1, max_blocks=1))
    def collect(data: bytes) -> None:
        index = CarReader(data).index
        seen.add(None if index is None else index.codec)

    collect()

    assert INDEX_SORTED in seen


def test_section_length_corruption_keeps_a_carv2_header_consistent() -> None:
    """In a CARv2 the longer length prefix is accounted for, so only the limit trips."""
    out = io.BytesIO()
    with CarWriter(out, [], version=2) as w:
        for p in (b"a", b"b", b"c"):
            b = Block.from_data(p)
            w.write(b.cid, b.data)
    data = out.getvalue()
    last = list(CarBlockReader(data).locations())[-1]

    broken = corrupt_car(data, how="section-length", block=2)
    failure = verify_car(broken.data).first_failure

    assert type(failure) is LimitExceeded
    assert failure.offset == last.section_offset == broken.offset
