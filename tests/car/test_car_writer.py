"""Writing CARs: round trips, determinism, go-car byte compatibility, lifecycle."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carmigrate.car import (
    INDEX_SORTED,
    MULTIHASH_INDEX_SORTED,
    Block,
    CarBlockReader,
    CarLimits,
    CarReader,
    CarWriter,
    index_car,
    iter_blocks,
    verify_car,
)
from carmigrate.cid import CID
from carmigrate.errors import BlockHashMismatch, CarFormatError, LimitExceeded
from carmigrate.testing.strategies import blocks, car_bytes, cids

TESTDATA = (
    Path(__file__).resolve().parents[1] / "fixtures" / "go-car" / "v2" / "testdata"
)
A = Block.from_data(b"alpha")
B = Block.from_data(b"bravo" * 1000, codec="dag-cbor")


class Unseekable(io.RawIOBase):
    """A write-only pipe stand-in."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.chunks.append(bytes(b))
        return len(b)


def _write(items: list[Block], roots: list[CID], **options: object) -> bytes:
    out = io.BytesIO()
    with CarWriter(out, roots, **options) as w:  # type: ignore[arg-type]
        for b in items:
            w.write(b.cid, b.data)
    return out.getvalue()


@given(
    st.lists(blocks(), max_size=12),
    st.lists(cids(), max_size=3),
    st.sampled_from([1, 2]),
    st.sampled_from([MULTIHASH_INDEX_SORTED, INDEX_SORTED, None]),
    st.booleans(),
)
def test_write_then_read_round_trips(
    items: list[Block],
    roots: list[CID],
    version: int,
    codec: int | None,
    identity: bool,
) -> None:
    """Whatever is written reads back: roots, version, blocks in order, and it verifies."""
    data = _write(
        items, roots, version=version, index_codec=codec, store_identity_cids=identity
    )

    reader = CarBlockReader(data)
    got = [b.block for b in reader]
    result = verify_car(data)

    assert reader.version == version
    assert reader.roots == tuple(roots)
    assert got == items
    assert result.fully_verified
    assert result.index_checked == (version == 2 and codec is not None)
    if version == 2:
        v2 = reader.header.v2
        assert v2 is not None
        assert v2.characteristics.fully_indexed == (identity and codec is not None)


@given(car_bytes())
def test_output_is_deterministic(data: bytes) -> None:
    """Writing the same blocks again gives the same bytes."""
    reader = CarBlockReader(data)
    v2 = reader.header.v2
    items = [b.block for b in reader]
    options: dict[str, object] = {"version": reader.version}
    if v2 is not None:
        index = CarReader(data).index
        options["index_codec"] = None if index is None else index.codec
        options["store_identity_cids"] = v2.characteristics.fully_indexed

    again = _write(items, list(reader.roots), **options)

    assert data == again


def test_wrapping_sample_v1_reproduces_go_cars_wrapped_v2() -> None:
    """index_car of go-car's sample-v1.car is byte for byte go-car's sample-wrapped-v2.car."""
    out = io.BytesIO()

    header = index_car((TESTDATA / "sample-v1.car").read_bytes(), out)

    assert out.getvalue() == (TESTDATA / "sample-wrapped-v2.car").read_bytes()
    assert header.v2 is not None
    assert (header.v2.data_offset, header.v2.data_size, header.v2.index_offset) == (
        51,
        479907,
        479958,
    )


def test_index_car_rewraps_a_carv2_and_streams_its_input() -> None:
    """A CARv2 input (even from a pipe) is re-indexed; its payload is kept as is."""
    source = (TESTDATA / "sample-rw-bs-v2.car").read_bytes()
    out = io.BytesIO()

    index_car(io.BufferedReader(io.BytesIO(source)), out, index_codec=INDEX_SORTED)
    reader = CarReader(out.getvalue())

    assert [b.block for b in reader.iter_blocks()] == [
        b.block for b in iter_blocks(source)
    ]
    assert reader.index is not None
    assert reader.index.codec == INDEX_SORTED


def test_index_car_stops_at_a_bad_block() -> None:
    """index_car verifies by default and leaves an unfinished (invalid) CARv2 behind."""
    good = _write([A, B], [A.cid])
    bad = bytearray(good)
    loc = list(iter_blocks(good))[1]
    bad[loc.offset + 3] ^= 1
    out = io.BytesIO()

    with pytest.raises(BlockHashMismatch) as info:
        index_car(bytes(bad), out)

    assert info.value.offset == loc.offset
    with pytest.raises(CarFormatError, match="data offset 0 points inside the pragma"):
        CarBlockReader(out.getvalue())
    unchecked = io.BytesIO()
    index_car(bytes(bad), unchecked, verify=False)
    assert len(CarReader(unchecked.getvalue(), verify=False)) == 2


def test_v1_streams_to_an_unseekable_sink() -> None:
    """A CARv1 is written to a pipe: header at once, each section on write."""
    sink = Unseekable()
    w = CarWriter(sink, [A.cid])  # type: ignore[arg-type]
    header_chunks = len(sink.chunks)
    loc = w.write(A.cid, A.data)
    w.close()

    assert header_chunks == 1
    assert b"".join(sink.chunks) == _write([A], [A.cid])
    assert loc.offset == len(b"".join(sink.chunks)) - 5


def test_v2_needs_a_seekable_sink() -> None:
    """A CARv2 writer refuses a sink it cannot seek, before writing anything."""
    sink = Unseekable()

    with pytest.raises(ValueError, match="seekable"):
        CarWriter(sink, [], version=2)  # type: ignore[arg-type]

    assert sink.chunks == []


def test_bad_options() -> None:
    """Unknown versions and index codecs are refused."""
    with pytest.raises(ValueError, match="version"):
        CarWriter(io.BytesIO(), [], version=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="index_codec"):
        CarWriter(io.BytesIO(), [], version=2, index_codec=0x55)


def test_write_after_close_and_close_twice() -> None:
    """close() is idempotent and returns the header; writing afterwards raises."""
    out = io.BytesIO()
    w = CarWriter(out, [A.cid], version=2)
    w.write(A.cid, A.data)

    first = w.close()
    second = w.close()

    assert first == second
    assert w.closed
    assert w.blocks_written == 1
    assert w.position == len(out.getvalue())
    with pytest.raises(ValueError, match="closed"):
        w.write(B.cid, B.data)


def test_an_exception_in_the_with_block_leaves_an_invalid_carv2(tmp_path: Path) -> None:
    """If the body raises, the header stays zeroed so the file cannot pass for complete."""
    path = tmp_path / "partial.car"

    def write_then_fail() -> CarWriter:
        with CarWriter.open(path, [A.cid], version=2) as w:
            w.write(A.cid, A.data)
            raise RuntimeError(w)

    with pytest.raises(RuntimeError) as info:
        write_then_fail()
    w = info.value.args[0]

    assert w.closed
    with pytest.raises(CarFormatError, match="data offset 0 points inside the pragma"):
        CarReader.open(path)


def test_open_writes_a_file(tmp_path: Path) -> None:
    """CarWriter.open creates the file and closes it on close()."""
    path = tmp_path / "out.car"

    with CarWriter.open(path, [A.cid, B.cid], version=2, index_codec=None) as w:
        w.write(A.cid, A.data)
        w.write(B.cid, B.data)

    with CarReader.open(path) as reader:
        assert reader.roots == (A.cid, B.cid)
        assert reader.index is None
        assert reader.header.v2 is not None
        assert reader.header.v2.index_offset == 0
        assert reader[B.cid].data == B.data


def test_open_closes_the_file_when_the_header_is_refused(tmp_path: Path) -> None:
    """A header over the limit raises LimitExceeded from open() too."""
    with pytest.raises(LimitExceeded):
        CarWriter.open(
            tmp_path / "x.car", [A.cid] * 10, limits=CarLimits(max_header_size=50)
        )


def test_limits_and_verification_on_write() -> None:
    """Sections over the limit and (when verifying) blocks that do not match are refused."""
    w = CarWriter(io.BytesIO(), [], limits=CarLimits(max_section_size=100), verify=True)

    with pytest.raises(LimitExceeded) as too_big:
        w.write(B.cid, B.data)
    with pytest.raises(BlockHashMismatch):
        w.write(A.cid, b"not alpha")
    loc = w.write(A.cid, A.data)

    assert too_big.value.offset == loc.section_offset
    assert w.blocks_written == 1


def test_writer_keeps_a_positioned_sink_intact() -> None:
    """A CARv2 written after existing bytes patches its own header, not the file's start."""
    out = io.BytesIO()
    out.write(b"prefix")
    with CarWriter(out, [A.cid], version=2) as w:
        w.write(A.cid, A.data)

    data = out.getvalue()

    assert data.startswith(b"prefix")
    assert verify_car(data[6:]).index_checked
    assert out.tell() == len(data)
