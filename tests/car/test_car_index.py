"""CARv2 indexes: byte-exact with go-car, strict to decode, never trusted unchecked."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carmigrate.car import (
    INDEX_SORTED,
    MULTIHASH_INDEX_SORTED,
    Block,
    CarBlockReader,
    CarReader,
    CarWriter,
    inspect_car,
    verify_car,
)
from carmigrate.car.lowlevel import CarIndex, IndexEntry
from carmigrate.cid.lowlevel import encode_varint
from carmigrate.errors import CarFormatError
from carmigrate.testing.strategies import blocks

TESTDATA = (
    Path(__file__).resolve().parents[1] / "fixtures" / "go-car" / "v2" / "testdata"
)
SORTED_FIXTURE = TESTDATA / "sample-index.carindex"
MH_FIXTURE = TESTDATA / "sample-multihash-index-sorted.carindex"
SAMPLE_V1 = TESTDATA / "sample-v1.car"


@pytest.mark.parametrize(
    ("path", "codec", "entries"),
    [(SORTED_FIXTURE, INDEX_SORTED, 1049), (MH_FIXTURE, MULTIHASH_INDEX_SORTED, 1043)],
)
def test_go_car_index_files_round_trip_byte_for_byte(
    path: Path, codec: int, entries: int
) -> None:
    """Decoding and re-encoding go-car's index files gives the same bytes."""
    data = path.read_bytes()

    index = CarIndex.decode(data)

    assert index.codec == codec
    assert len(index) == entries
    assert data == index.encode()


def test_building_from_sample_v1_reproduces_go_cars_index_files() -> None:
    """The indexes built from a scan of sample-v1.car equal go-car's files byte for byte."""
    locations = list(CarBlockReader(SAMPLE_V1.read_bytes()).locations())

    sorted_index = CarIndex.build(locations, codec=INDEX_SORTED, include_identity=True)
    mh_index = CarIndex.build(locations)

    assert SORTED_FIXTURE.read_bytes() == sorted_index.encode()
    assert MH_FIXTURE.read_bytes() == mh_index.encode()
    assert CarReader(SAMPLE_V1.read_bytes()).build_index() == mh_index


def test_index_sorted_ignores_the_hash_code_and_multihash_index_keeps_it() -> None:
    """IndexSorted stores digests only; MultihashIndexSorted groups by hash function."""
    index = CarIndex.decode(SORTED_FIXTURE.read_bytes())
    mh = CarIndex.decode(MH_FIXTURE.read_bytes())

    assert {e.hash_code for e in index.entries} == {None}
    assert {e.hash_code for e in mh.entries} == {0xB220}
    assert index.codec_name == "IndexSorted"
    assert mh.codec_name == "MultihashIndexSorted"


def test_find_looks_up_by_multihash() -> None:
    """find() returns the section offsets of a multihash, whatever the CID's codec."""
    reader = CarReader(SAMPLE_V1.read_bytes())
    mh = CarIndex.decode(MH_FIXTURE.read_bytes())
    digest_only = CarIndex.decode(SORTED_FIXTURE.read_bytes())

    for loc in reader.locations[:50]:
        if loc.cid.hash_code == 0:
            assert mh.find(loc.cid) == ()
        else:
            assert mh.find(loc.cid) == (loc.section_offset,)
        assert digest_only.find(loc.cid) == (loc.section_offset,)
        assert mh.find(str(loc.cid.to_v1())) == mh.find(loc.cid)
    assert mh.find(Block.from_data(b"absent").cid) == ()


@given(
    st.lists(blocks(data=st.binary(max_size=40)), max_size=20),
    st.sampled_from([INDEX_SORTED, MULTIHASH_INDEX_SORTED]),
    st.booleans(),
)
def test_built_indexes_round_trip(
    items: list[Block], codec: int, identity: bool
) -> None:
    """encode then decode gives back an equal index, for any blocks."""
    out = io.BytesIO()
    with CarWriter(out, []) as w:
        locations = [w.write(b.cid, b.data) for b in items]

    index = CarIndex.build(locations, codec=codec, include_identity=identity)

    assert CarIndex.decode(index.encode()) == index
    assert len(index) == sum(1 for b in items if identity or b.cid.hash_code != 0)


def test_empty_indexes() -> None:
    """An index of no blocks encodes to the codec and a zero count."""
    assert CarIndex(INDEX_SORTED, ()).encode() == encode_varint(INDEX_SORTED) + bytes(4)
    assert CarIndex.decode(CarIndex(MULTIHASH_INDEX_SORTED, ()).encode()) == CarIndex(
        MULTIHASH_INDEX_SORTED, ()
    )


def test_index_values_are_validated() -> None:
    """CarIndex refuses unknown codecs, entries out of order and hash codes that do not fit."""
    a = IndexEntry(0x12, b"\x02" * 32, 10)
    b = IndexEntry(0x12, b"\x01" * 32, 20)

    with pytest.raises(ValueError, match="unknown CARv2 index codec"):
        CarIndex(0x55, ())
    with pytest.raises(ValueError, match="sorted"):
        CarIndex(MULTIHASH_INDEX_SORTED, (a, b))
    with pytest.raises(ValueError, match="hash_code None"):
        CarIndex(INDEX_SORTED, (a,))
    with pytest.raises(ValueError, match="outside"):
        CarIndex(MULTIHASH_INDEX_SORTED, (IndexEntry(0x12, b"", -1),))
    with pytest.raises(ValueError, match="before the data offset"):
        CarIndex.build(
            list(CarBlockReader(SAMPLE_V1.read_bytes()).locations())[:1],
            data_offset=10**6,
        )


def _sorted_body(*buckets: tuple[int, int, bytes]) -> bytes:
    out = encode_varint(INDEX_SORTED) + struct.pack("<i", len(buckets))
    for width, length, entries in buckets:
        out += struct.pack("<IQ", width, length) + entries
    return out


def _entry(digest: bytes, offset: int) -> bytes:
    return digest + struct.pack("<Q", offset)


BAD_INDEXES = [
    (b"", 0, "expected the index codec varint"),
    (encode_varint(0x55), 0, "unknown CARv2 index codec 0x55 (raw)"),
    (
        encode_varint(INDEX_SORTED) + b"\x01",
        2,
        "the bucket count: 4 bytes needed, 1 left",
    ),
    (
        encode_varint(INDEX_SORTED) + struct.pack("<i", -1),
        2,
        "bucket count -1 is negative",
    ),
    (_sorted_body((7, 0, b"")), 6, "width 7 is outside"),
    (_sorted_body((40, 41, b"")), 10, "not a multiple of its width 40"),
    (
        _sorted_body((40, 80, _entry(b"\x01" * 32, 0))),
        18,
        "2 entries: 80 bytes needed, 40 left",
    ),
    (
        _sorted_body((40, 80, _entry(b"\x02" * 32, 0) + _entry(b"\x01" * 32, 0))),
        58,
        "sorted by digest",
    ),
    (_sorted_body((40, 0, b""), (40, 0, b"")), 18, "sorted by width; 40 follows 40"),
    (
        encode_varint(MULTIHASH_INDEX_SORTED) + struct.pack("<i", -5),
        2,
        "hash function count -5",
    ),
    (
        encode_varint(MULTIHASH_INDEX_SORTED)
        + struct.pack("<iQi", 2, 0x12, 0)
        + struct.pack("<Qi", 0x12, 0),
        18,
        "sorted by multihash code; 0x12 follows 0x12",
    ),
    (
        encode_varint(MULTIHASH_INDEX_SORTED) + struct.pack("<i", 1) + b"\x12",
        6,
        "a multihash code",
    ),
]


@pytest.mark.parametrize(
    ("data", "offset", "message"), BAD_INDEXES, ids=[m for _, _, m in BAD_INDEXES]
)
def test_malformed_indexes(data: bytes, offset: int, message: str) -> None:
    """Each malformed index raises CarFormatError naming the offset (shifted by the base)."""
    with pytest.raises(CarFormatError) as info:
        CarIndex.decode(data, offset=1000)

    assert message in str(info.value)
    assert info.value.offset == 1000 + offset


def test_decode_checks_lengths_before_allocating() -> None:
    """A bucket declaring 2**63 bytes fails on the length check, not on memory."""
    data = _sorted_body((40, 40 * (1 << 58), b""))

    with pytest.raises(CarFormatError, match="bytes needed"):
        CarIndex.decode(data)


# -- checking an embedded index against the data ---------------------------------

A = Block.from_data(b"alpha")
B = Block.from_data(b"bravo", codec="dag-cbor")
ID = Block.from_data(b"id", hash="identity")


def _v2(items: list[Block], **options: object) -> tuple[bytes, int]:
    out = io.BytesIO()
    with CarWriter(out, [items[0].cid], version=2, **options) as w:  # type: ignore[arg-type]
        for b in items:
            w.write(b.cid, b.data)
    header = w.close()
    assert header.v2 is not None
    return out.getvalue(), header.v2.index_offset


def _with_index(car: bytes, index_offset: int, index: bytes) -> bytes:
    return car[:index_offset] + index


def _reject(data: bytes) -> CarFormatError:
    with pytest.raises(CarFormatError) as info:
        CarReader(data)
    result = verify_car(data)
    assert result.error is not None
    assert result.error.offset == info.value.offset
    assert not result.index_checked
    with pytest.raises(CarFormatError):
        inspect_car(io.BytesIO(data))
    return info.value


def test_a_correct_embedded_index_is_checked_and_kept() -> None:
    """A truthful, complete index is accepted by every reader."""
    car, _ = _v2([A, B, ID])

    reader = CarReader(car)
    result = verify_car(car)

    assert reader.index == CarIndex.build(reader.locations, data_offset=51)
    assert result.index_checked
    assert inspect_car(car).index == reader.index


def test_an_entry_pointing_at_the_wrong_section_is_rejected() -> None:
    """An index entry with a shifted offset is reported at the entry's own position."""
    car, at = _v2([A, B])
    index = CarIndex.decode(car[at:])
    entries = list(index.entries)
    entries[0] = entries[0]._replace(offset=entries[0].offset + 1)
    bad = _with_index(car, at, CarIndex(index.codec, entries).encode())

    error = _reject(bad)

    assert "where no section with that multihash starts" in error.reason
    # codec varint (2) + group count (4) + code (8) + bucket count (4) + width/len (12)
    assert error.offset == at + 30


def test_a_missing_entry_is_rejected() -> None:
    """An index that leaves out a block is reported at the index offset."""
    car, at = _v2([A, B])
    index = CarIndex.decode(car[at:])
    bad = _with_index(car, at, CarIndex(index.codec, index.entries[:1]).encode())

    error = _reject(bad)

    assert error.offset == at
    assert "has no entry for the block" in error.reason


def test_fully_indexed_needs_identity_entries() -> None:
    """With the fully-indexed bit, identity CIDs must be in the index; without it they may be."""
    car, at = _v2([A, ID], store_identity_cids=True)
    full = CarIndex.decode(car[at:])
    partial = CarIndex(full.codec, [e for e in full.entries if e.hash_code != 0])
    plain, plain_at = _v2([A, ID])

    error = _reject(_with_index(car, at, partial.encode()))
    with_extra = _with_index(plain, plain_at, full.encode())

    assert CarReader(car).index == full
    assert "has no entry" in error.reason
    assert CarReader(with_extra).index == full


def test_an_index_sorted_embedded_index_is_checked_by_digest() -> None:
    """IndexSorted entries match on digest and offset."""
    car, at = _v2([A, B], index_codec=INDEX_SORTED)

    assert CarReader(car).index is not None
    assert CarReader(car).index.codec == INDEX_SORTED  # type: ignore[union-attr]
    entries = list(CarIndex.decode(car[at:]).entries)
    entries[1] = entries[1]._replace(offset=0)
    _reject(
        _with_index(
            car,
            at,
            CarIndex(
                INDEX_SORTED, sorted(entries, key=lambda e: (len(e.digest), e.digest))
            ).encode(),
        )
    )


def test_an_index_larger_than_the_data_allows_is_rejected_without_reading_it_all() -> (
    None
):
    """An index region far larger than a truthful index is only read up to a bound."""
    car, at = _v2([A])
    fake = (
        encode_varint(INDEX_SORTED)
        + struct.pack("<iIQ", 1, 40, 40 * 10_000)
        + b"\x00" * 400_000
    )

    error = _reject(_with_index(car, at, fake))

    assert "more than the blocks in the data can need" in error.reason


def test_index_offset_past_the_end() -> None:
    """An index offset at the end of the file is an error when checking."""
    car, at = _v2([A])

    error = _reject(car[:at])

    assert error.offset == 43


def test_ignoring_the_embedded_index() -> None:
    """embedded_index='ignore' never reads the index bytes."""
    car, at = _v2([A, B])
    bad = _with_index(car, at, b"\xff" * 10)

    reader = CarReader(bad, embedded_index="ignore")

    assert reader.index is None
    assert reader[A.cid].data == b"alpha"
    assert verify_car(bad, check_index=False).fully_verified
    assert inspect_car(bad, check_index=False).index is None
