"""Reading CARs: the streaming block reader and random access by CID."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carmigrate.car import (
    Block,
    CarBlockReader,
    CarLimits,
    CarReader,
    CarV2Header,
    CarWriter,
    iter_blocks,
    verify_car,
)
from carmigrate.car.lowlevel import PRAGMA
from carmigrate.cid import CID, encode_dag_cbor
from carmigrate.cid.lowlevel import encode_varint
from carmigrate.errors import BlockHashMismatch, CarFormatError, LimitExceeded
from carmigrate.testing.strategies import blocks, car_bytes

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SAMPLE_V1 = FIXTURES / "go-car" / "v2" / "testdata" / "sample-v1.car"
WRAPPED = FIXTURES / "go-car" / "v2" / "testdata" / "sample-wrapped-v2.car"
RW_BS = FIXTURES / "go-car" / "v2" / "testdata" / "sample-rw-bs-v2.car"


class ChunkedStream(io.RawIOBase):
    """A non-seekable stream whose reads return at most the next of ``sizes`` bytes."""

    def __init__(self, data: bytes, sizes: list[int], *, readinto: bool = True) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._sizes = sizes or [1]
        self._i = 0
        self.calls = 0
        if not readinto:
            self.readinto = None  # type: ignore[assignment]

    def readable(self) -> bool:
        return True

    def _next_size(self, want: int) -> int:
        size = self._sizes[self._i % len(self._sizes)]
        self._i += 1
        return max(1, min(size, want))

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        self.calls += 1
        n = min(self._next_size(len(b)), len(self._data) - self._pos)
        if n <= 0:
            return 0
        b[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n

    def read(self, size: int = -1) -> bytes:
        self.calls += 1
        if size < 0:
            size = len(self._data)
        n = min(self._next_size(size), len(self._data) - self._pos)
        out = bytes(self._data[self._pos : self._pos + max(n, 0)])
        self._pos += len(out)
        return out


def write_car(
    items: list[Block], roots: list[CID] | None = None, **options: object
) -> bytes:
    out = io.BytesIO()
    with CarWriter(
        out, roots if roots is not None else [b.cid for b in items[:1]], **options
    ) as w:  # type: ignore[arg-type]
        for b in items:
            w.write(b.cid, b.data)
    return out.getvalue()


def header_bytes(value: object) -> bytes:
    body = encode_dag_cbor(value)
    return encode_varint(len(body)) + body


def section(cid: CID, data: bytes) -> bytes:
    raw = bytes(cid)
    return encode_varint(len(raw) + len(data)) + raw + data


BLOCK_A = Block.from_data(b"aaaa")
BLOCK_B = Block.from_data(b"bbbbbbbb", codec="dag-cbor")
EMPTY = Block.from_data(b"")
V1_HEADER = header_bytes({"roots": [BLOCK_A.cid], "version": 1})


# -- streaming ------------------------------------------------------------------


@given(
    data=car_bytes(max_blocks=8),
    sizes=st.lists(st.integers(min_value=1, max_value=300), min_size=1, max_size=8),
    use_readinto=st.booleans(),
)
def test_any_chunking_of_the_stream_gives_the_same_blocks(
    data: bytes, sizes: list[int], use_readinto: bool
) -> None:
    """Short reads of any sizes, with or without readinto, change nothing."""
    expected = list(iter_blocks(data))

    got = list(iter_blocks(ChunkedStream(data, sizes, readinto=use_readinto)))
    locations = list(CarBlockReader(ChunkedStream(data, sizes)).locations())
    result = verify_car(ChunkedStream(data, sizes))

    assert expected == got
    assert [b.location for b in expected] == locations
    assert result.fully_verified
    assert result.blocks == len(expected)


def test_one_byte_reads_of_a_go_car_fixture() -> None:
    """A CARv2 read one byte per call gives the blocks of the in-memory read."""
    full = WRAPPED.read_bytes()
    stream = ChunkedStream(full, [1])

    got = [b.location for b in iter_blocks(stream)]

    assert got == [b.location for b in iter_blocks(full)]
    assert stream.calls >= 479958


def test_offsets_count_from_where_reading_began() -> None:
    """A stream positioned after a prefix reports offsets relative to that position."""
    data = SAMPLE_V1.read_bytes()
    f = io.BytesIO(b"x" * 1000 + data)
    f.seek(1000)

    got = [b.location for b in iter_blocks(f)]

    assert got == [b.location for b in iter_blocks(data)]


def test_car_reader_counts_offsets_from_the_file_position() -> None:
    """CarReader treats the position at creation as offset 0, for scanning and reads."""
    data = WRAPPED.read_bytes()
    f = io.BytesIO(b"junk" * 100 + data)
    f.seek(400)

    reader = CarReader(f)
    plain = CarReader(data)

    assert reader.locations == plain.locations
    assert reader.index == plain.index
    for cid in list(plain)[:20]:
        assert reader[cid] == plain[cid]


def test_iteration_resumes_where_it_stopped() -> None:
    """Breaking out of a loop and iterating again continues with the next block."""
    reader = CarBlockReader(SAMPLE_V1.read_bytes())
    first = []
    for b in reader:
        first.append(b)
        if len(first) == 10:
            break
    rest = list(reader)

    assert first + rest == list(iter_blocks(SAMPLE_V1.read_bytes()))
    assert list(reader) == []


def test_blocks_and_locations_cannot_be_mixed() -> None:
    """One CarBlockReader iterates blocks or locations, not both."""
    reader = CarBlockReader(SAMPLE_V1.read_bytes())
    iter(reader)
    other = CarBlockReader(SAMPLE_V1.read_bytes())
    other.locations()

    with pytest.raises(ValueError, match="already iterating over blocks"):
        reader.locations()
    with pytest.raises(ValueError, match="already iterating over locations"):
        iter(other)


def test_header_is_available_before_the_first_block() -> None:
    """Version, roots and the CARv2 header are known on creation, and padding is skipped."""
    reader = CarBlockReader(RW_BS.read_bytes())

    assert reader.version == 2
    assert len(reader.roots) == 3
    assert reader.header.v2 is not None
    assert reader.header.data_offset == 1464
    assert next(b.section_offset for b in reader) > 1464


def test_block_values() -> None:
    """CarBlock exposes its block, location and check; locations know their section size."""
    data = write_car([BLOCK_A, EMPTY])
    a, empty = list(iter_blocks(data))

    assert a.block == BLOCK_A
    assert a.length == 4
    assert a.check().value == "verified"
    assert a.location.end == a.offset + 4
    assert a.location.section_length == 1 + 36 + 4
    assert empty.length == 0
    assert empty.data == b""
    assert BLOCK_A.check().value == "verified"


def test_verify_option_raises_at_the_first_mismatch() -> None:
    """iter_blocks(verify=True) raises BlockHashMismatch naming the CID and data offset."""
    good = write_car([BLOCK_A, BLOCK_B])
    loc = list(iter_blocks(good))[1]
    bad = bytearray(good)
    bad[loc.offset] ^= 1

    assert len(list(iter_blocks(bytes(bad)))) == 2
    with pytest.raises(BlockHashMismatch) as info:
        list(iter_blocks(bytes(bad), verify=True))

    assert info.value.offset == loc.offset
    assert info.value.cid == str(BLOCK_B.cid)


# -- malformed headers ----------------------------------------------------------------

BAD_HEADERS = [
    (b"", 0, "expected the CAR header, found the end"),
    (b"\x00", 0, "has length 0"),
    (b"\x80", 0, "cut short"),
    (b"\x80\x00", 0, "not minimally encoded"),
    (b"\xff" * 10, 0, "longer than 9 bytes"),
    (header_bytes([1]), 0, "must be a DAG-CBOR map"),
    (header_bytes({"roots": []}), 0, "no integer 'version'"),
    (header_bytes({"roots": [], "version": True}), 0, "no integer 'version'"),
    (header_bytes({"roots": [], "version": 3}), 0, "unsupported CAR version 3"),
    (header_bytes({"roots": [], "version": 1, "x": 1}), 0, "unexpected fields ['x']"),
    (header_bytes({"version": 1}), 0, "'roots' list of CIDs"),
    (header_bytes({"roots": ["x"], "version": 1}), 0, "'roots' list of CIDs"),
    (header_bytes({"roots": [], "version": 2}), 0, "exactly the 11-byte CARv2 pragma"),
    (b"\x03\xa1\x61\x61", 1, "not valid DAG-CBOR"),
    (b"\x0a\xa2\x61\x62\x01\x61\x61\x02\x00\x00\x00", 1, "not valid DAG-CBOR"),
    (PRAGMA + b"\x00" * 10, 11, "expected the 40-byte CARv2 header, found 10"),
    (
        PRAGMA
        + CarV2Header(51, 10).encode()[:16]
        + (50).to_bytes(8, "little")
        + bytes(16),
        27,
        "data offset 50",
    ),
    (PRAGMA + bytes(16) + (51).to_bytes(8, "little") + bytes(16), 35, "data size is 0"),
    (PRAGMA + CarV2Header(51, 100, 60).encode(), 43, "index offset 60 points inside"),
    (PRAGMA + CarV2Header(1000, 100).encode(), 27, "data offset 1000 is past the end"),
    (
        PRAGMA + CarV2Header(51, 100).encode() + PRAGMA,
        51,
        "must have version 1, found 2",
    ),
    (PRAGMA + CarV2Header(51, 100).encode(), 51, "expected the inner CARv1 header"),
    (
        PRAGMA + CarV2Header(51, 5).encode() + V1_HEADER,
        51,
        "the CARv2 data payload ends after 4",
    ),
]


@pytest.mark.parametrize(
    ("data", "offset", "message"), BAD_HEADERS, ids=[m for _, _, m in BAD_HEADERS]
)
def test_malformed_headers(data: bytes, offset: int, message: str) -> None:
    """Each malformed header raises CarFormatError at the right offset, saying what was expected."""
    with pytest.raises(CarFormatError) as info:
        CarBlockReader(io.BytesIO(data))

    assert info.value.offset == offset
    assert message in str(info.value)


def test_header_limit_is_checked_before_reading() -> None:
    """A header length over the limit raises LimitExceeded with limit and actual."""
    data = encode_varint(1000) + b"\xa0"

    with pytest.raises(LimitExceeded) as info:
        CarBlockReader(data, limits=CarLimits(max_header_size=999))

    assert (
        info.value.what,
        info.value.limit,
        info.value.actual,
        info.value.offset,
    ) == ("header", 999, 1000, 0)


# -- malformed sections --------------------------------------------------------------


def _bad_section_cases() -> list[tuple[bytes, int, str]]:
    h = len(V1_HEADER)
    cid = bytes(BLOCK_A.cid)
    return [
        (V1_HEADER + b"\x80", h, "cut short"),
        (V1_HEADER + b"\x85\x00" + cid, h, "not minimally encoded"),
        (V1_HEADER + b"\xff" * 12, h, "longer than 9 bytes"),
        (V1_HEADER + b"\x00", h, "zero-length section"),
        (V1_HEADER + b"\x05\x02abcd", h + 1, "found byte 0x02"),
        (V1_HEADER + b"\x05\x01\x55\x12\x20\x00", h + 1, "declares a 32-byte digest"),
        (V1_HEADER + b"\x05\x12\x20abc", h + 1, "CIDv0"),
        (V1_HEADER + b"\x03\x01\x80\x80", h + 1, "codec varint"),
        (
            V1_HEADER + encode_varint(len(cid) + 10) + cid + b"abc",
            h,
            "declares 46 bytes but the data ends after 39",
        ),
        (
            V1_HEADER + section(BLOCK_A.cid, b"aaaa") + b"\x01",
            h + 41,
            "declares 1 bytes but the data ends after 0",
        ),
    ]


@pytest.mark.parametrize(
    ("data", "offset", "message"), _bad_section_cases(), ids=lambda x: str(x)[:20]
)
def test_malformed_sections(data: bytes, offset: int, message: str) -> None:
    """Each malformed section raises CarFormatError at the right offset in every reader."""
    with pytest.raises(CarFormatError) as streamed:
        list(iter_blocks(data))
    with pytest.raises(CarFormatError) as scanned:
        list(CarBlockReader(io.BytesIO(data)).locations())
    result = verify_car(data)

    assert message in str(streamed.value)
    assert streamed.value.offset == offset
    assert scanned.value.offset == offset
    assert result.error is not None
    assert result.error.offset == offset


def test_section_limit_is_checked_before_reading() -> None:
    """A section over the limit raises LimitExceeded at its offset, whatever follows."""
    data = V1_HEADER + section(BLOCK_B.cid, b"bbbbbbbb")

    with pytest.raises(LimitExceeded) as info:
        list(iter_blocks(data, limits=CarLimits(max_section_size=43)))

    assert (info.value.what, info.value.limit, info.value.actual) == ("section", 43, 44)
    assert info.value.offset == len(V1_HEADER)
    assert len(list(iter_blocks(data, limits=CarLimits(max_section_size=44)))) == 1


def test_a_section_may_hold_only_a_cid() -> None:
    """A section with a CID and no data is an empty block (not a zero-length section)."""
    data = V1_HEADER + section(EMPTY.cid, b"")

    (block,) = iter_blocks(data, verify=True)

    assert block.data == b""
    assert block.cid == EMPTY.cid


def test_section_crossing_the_end_of_a_carv2_payload() -> None:
    """A section that runs past data_offset + data_size is an error even if the file goes on."""
    payload = V1_HEADER + section(BLOCK_A.cid, b"aaaa")
    short = (
        PRAGMA + CarV2Header(51, len(payload) - 2).encode() + payload + b"\x00" * 100
    )

    with pytest.raises(CarFormatError, match="the CARv2 data payload ends") as info:
        list(iter_blocks(short))
    with pytest.raises(CarFormatError, match="the CARv2 data payload ends"):
        list(CarBlockReader(io.BytesIO(short)).locations())

    assert info.value.offset == 51 + len(V1_HEADER)


def test_carv2_payload_shorter_than_declared() -> None:
    """A CARv2 whose file ends before data_offset + data_size is an error."""
    payload = V1_HEADER + section(BLOCK_A.cid, b"aaaa")
    data = PRAGMA + CarV2Header(51, len(payload) + 10).encode() + payload

    with pytest.raises(CarFormatError, match="should run to offset"):
        list(iter_blocks(io.BytesIO(data)))


def test_bytes_after_a_carv2_payload_are_not_read_as_sections() -> None:
    """Whatever follows the data payload (an index, garbage) is not parsed as blocks."""
    payload = V1_HEADER + section(BLOCK_A.cid, b"aaaa")
    data = PRAGMA + CarV2Header(51, len(payload)).encode() + payload + b"\xff" * 64

    assert len(list(iter_blocks(ChunkedStream(data, [7])))) == 1


# -- random access --------------------------------------------------------------------


@given(
    st.lists(blocks(data=st.binary(max_size=64)), max_size=12), st.sampled_from([1, 2])
)
def test_car_reader_finds_every_block(items: list[Block], version: int) -> None:
    """Every CID written can be looked up; the first occurrence wins for duplicates."""
    data = write_car(items, version=version)

    reader = CarReader(data)

    assert set(reader) == {b.cid for b in items}
    assert len(reader) == len({b.cid for b in items})
    assert len(reader.locations) == len(items)
    for b in items:
        assert b.cid in reader
        assert reader.has(str(b.cid))
        got = reader[b.cid]
        assert got.data == b.data
        assert reader.get(bytes(b.cid)) == got
        assert reader.locate(b.cid) == got.location


def test_car_reader_missing_and_odd_keys() -> None:
    """Absent CIDs give KeyError or the default; non-CIDs are simply not contained."""
    reader = CarReader(write_car([BLOCK_A]))

    with pytest.raises(KeyError):
        reader[BLOCK_B.cid]
    with pytest.raises(KeyError):
        reader.locate(BLOCK_B.cid)

    assert reader.get(BLOCK_B.cid) is None
    assert reader.get(BLOCK_B.cid, reader[BLOCK_A.cid]) == reader[BLOCK_A.cid]
    assert BLOCK_B.cid not in reader
    assert 42 not in reader
    assert "not a cid" not in reader
    assert not reader.has(BLOCK_B.cid)


def test_car_reader_verifies_returned_blocks() -> None:
    """A corrupted block is found by the scan but refused by get() unless verify=False."""
    data = bytearray(write_car([BLOCK_A, BLOCK_B]))
    loc = CarReader(bytes(data)).locate(BLOCK_B.cid)
    data[loc.offset] ^= 0xFF

    reader = CarReader(bytes(data))
    trusting = CarReader(bytes(data), verify=False)

    assert reader[BLOCK_A.cid].data == b"aaaa"
    with pytest.raises(BlockHashMismatch) as info:
        reader[BLOCK_B.cid]
    with pytest.raises(BlockHashMismatch):
        list(reader.iter_blocks())
    assert info.value.offset == loc.offset
    assert trusting[BLOCK_B.cid].data != BLOCK_B.data


def test_car_reader_needs_a_seekable_source() -> None:
    """A non-seekable stream is refused with a pointer to the streaming reader."""
    with pytest.raises(ValueError, match="seekable"):
        CarReader(ChunkedStream(SAMPLE_V1.read_bytes(), [100]))
    with pytest.raises(ValueError, match="embedded_index"):
        CarReader(SAMPLE_V1.read_bytes(), embedded_index="trust")  # type: ignore[arg-type]


def test_car_reader_open_and_close(tmp_path: Path) -> None:
    """open() owns the file and closes it; a file cut after the scan gives an error on read."""
    path = tmp_path / "a.car"
    path.write_bytes(write_car([BLOCK_A, BLOCK_B]))

    with CarReader.open(path) as reader:
        assert reader[BLOCK_A.cid].data == b"aaaa"
        with path.open("r+b") as f:
            f.truncate(path.stat().st_size - 3)
        with pytest.raises(CarFormatError, match="now ends after 5"):
            reader[BLOCK_B.cid]
    reader.close()

    assert reader._owned is None
    with pytest.raises(OSError, match="No such file"):
        CarReader.open(tmp_path / "missing.car")


def test_car_reader_open_closes_the_file_on_a_bad_car(tmp_path: Path) -> None:
    """A malformed file is closed again when open() fails."""
    path = tmp_path / "bad.car"
    path.write_bytes(b"\x00")

    with pytest.raises(CarFormatError):
        CarReader.open(path)


def test_car_reader_serves_threads() -> None:
    """Concurrent look-ups from several threads all get the right bytes."""
    data = SAMPLE_V1.read_bytes()
    reader = CarReader(io.BytesIO(data))
    cids = list(reader)
    errors: list[str] = []

    def work(offset: int) -> None:
        for cid in cids[offset::4]:
            loc = reader.locate(cid)
            if reader[cid].data != data[loc.offset : loc.end]:
                errors.append(str(cid))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []


def test_car_reader_iter_blocks_includes_duplicates() -> None:
    """iter_blocks() returns every section, in order, duplicates included."""
    reader = CarReader(write_car([BLOCK_A, BLOCK_B, BLOCK_A]))

    assert [b.cid for b in reader.iter_blocks()] == [
        BLOCK_A.cid,
        BLOCK_B.cid,
        BLOCK_A.cid,
    ]
    assert list(reader) == [BLOCK_A.cid, BLOCK_B.cid]
    assert reader.locate(BLOCK_A.cid) == reader.locations[0]
