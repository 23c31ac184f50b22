"""verify_car: counts, mismatches, unverifiable blocks, structure and index errors."""

from __future__ import annotations

import hashlib
import io
import os
import threading

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import carmigrate.car._verify as verify_module
from carmigrate.car import (
    Block,
    CarLimits,
    CarWriter,
    VerifyResult,
    iter_blocks,
    verify_car,
)
from carmigrate.cid import CID, Multihash
from carmigrate.errors import BlockHashMismatch, CarFormatError, LimitExceeded
from carmigrate.testing.strategies import Corruption, car_bytes, corruptions

SMALL = [Block.from_data(bytes([i]) * 50, codec="dag-cbor") for i in range(6)]
V0 = Block(CID.from_data(b"v0 block", codec="dag-pb", version=0), b"v0 block")
SHA512 = Block.from_data(b"five twelve", hash="sha2-512")
BLAKE = Block.from_data(b"blake", hash="blake2b-256")
IDENTITY = Block.from_data(b"id", hash="identity")
# sha3-256 is a known code carmigrate cannot compute: unverifiable, never verified.
SHA3 = Block(CID.create(1, "raw", Multihash(0x16, b"\x01" * 32)), b"whatever")


def _car(items: list[Block], **options: object) -> bytes:
    out = io.BytesIO()
    with CarWriter(out, [items[0].cid] if items else [], **options) as w:  # type: ignore[arg-type]
        for b in items:
            w.write(b.cid, b.data)
    return out.getvalue()


def _flip(data: bytes, *offsets: int) -> bytes:
    out = bytearray(data)
    for o in offsets:
        out[o] ^= 0xFF
    return bytes(out)


def test_counts_for_a_good_car() -> None:
    """A good CAR verifies every block of every supported hash and CID version."""
    items = [*SMALL, V0, SHA512, BLAKE, IDENTITY, Block.from_data(b"")]
    data = _car(items)

    result = verify_car(data)

    assert result.ok
    assert result.fully_verified
    assert (result.version, result.blocks, result.verified, result.unverifiable) == (
        1,
        11,
        11,
        0,
    )
    assert result.bytes == sum(len(b.data) for b in items)
    assert result.mismatches == ()
    assert result.first_failure is None
    assert result.roots == (items[0].cid,)
    result.raise_for_failure()


def test_unverifiable_blocks_are_counted_apart() -> None:
    """A block with an unsupported hash is unverifiable: ok, but not fully verified."""
    data = _car([SMALL[0], SHA3, SMALL[1]])
    offset = list(iter_blocks(data))[1].offset

    result = verify_car(data)

    assert result.ok
    assert not result.fully_verified
    assert (result.blocks, result.verified, result.unverifiable) == (3, 2, 1)
    assert result.unverifiable_hashes == frozenset({0x16})
    assert result.first_unverifiable_offset == offset


def _mismatch_case() -> tuple[bytes, list[int]]:
    items = [*SMALL, V0, SHA512]
    data = _car(items)
    locs = list(iter_blocks(data))
    bad = [locs[1].offset, locs[6].offset, locs[7].offset + 2]
    return _flip(data, *bad), [locs[1].offset, locs[6].offset, locs[7].offset]


def test_stops_at_the_first_mismatch() -> None:
    """By default verification stops at the first block that does not match, naming its offset."""
    data, offsets = _mismatch_case()

    result = verify_car(data)

    assert not result.ok
    assert [m.offset for m in result.mismatches] == offsets[:1]
    assert (result.blocks, result.verified) == (2, 1)
    assert result.error is None
    assert isinstance(result.first_failure, BlockHashMismatch)
    assert result.first_failure.cid == str(SMALL[1].cid)
    with pytest.raises(BlockHashMismatch) as info:
        result.raise_for_failure()
    assert info.value.offset == offsets[0]


def test_collects_every_mismatch_on_request() -> None:
    """all_mismatches=True reads on and reports every mismatch in file order."""
    data, offsets = _mismatch_case()

    result = verify_car(data, all_mismatches=True)

    assert [m.offset for m in result.mismatches] == offsets
    assert (result.blocks, result.verified) == (8, 5)


def test_a_mismatch_before_a_structural_error_comes_first() -> None:
    """With a bad block and a truncated tail, the mismatch is the first failure."""
    data, offsets = _mismatch_case()

    result = verify_car(data[:-3], all_mismatches=True)

    assert result.error is not None
    assert [m.offset for m in result.mismatches] == offsets[:2]
    assert result.first_failure is result.mismatches[0]


def test_structural_errors_are_returned_not_raised() -> None:
    """Malformed input gives a result with the error; counts cover the blocks before it."""
    data = _car(SMALL)

    truncated = verify_car(data[:-10])
    limited = verify_car(data, limits=CarLimits(max_section_size=60))
    empty = verify_car(b"")

    assert isinstance(truncated.error, CarFormatError)
    assert truncated.blocks == 5
    assert isinstance(limited.error, LimitExceeded)
    assert limited.blocks == 0
    assert empty.version is None
    assert empty.error is not None
    with pytest.raises(CarFormatError):
        truncated.raise_for_failure()


@given(corruptions())
def test_every_corruption_is_found_where_it_was_made(corruption: Corruption) -> None:
    """The first failure has the class and offset the corrupter promised."""
    result = verify_car(corruption.data)

    failure = result.first_failure
    assert failure is not None
    assert type(failure) is corruption.error
    assert failure.offset == corruption.offset


@given(car_bytes(), st.integers(min_value=1, max_value=4096))
def test_verifying_a_stream_equals_verifying_bytes(data: bytes, chunk: int) -> None:
    """Reading from a buffered stream gives the same result as from memory."""
    stream = io.BufferedReader(io.BytesIO(data), buffer_size=chunk)  # type: ignore[arg-type]

    assert verify_car(stream) == verify_car(data)


# -- large blocks hashed in a worker thread -----------------------------------------

BIG = [Block.from_data(bytes([i]) * (200_000 + i), codec="raw") for i in range(12)]


class Pipe(io.RawIOBase):
    """A non-seekable stream with short reads, to drive buffer reuse."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = data
        self._pos = 0
        self._step = step

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(b), self._step, len(self._data) - self._pos)
        b[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


@pytest.fixture(params=[True, False], ids=["threaded", "inline"])
def parallel(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    monkeypatch.setattr(verify_module, "_PARALLEL", request.param)
    return bool(request.param)


@pytest.mark.usefixtures("parallel")
@pytest.mark.parametrize("step", [65536, 1 << 20, 3_000_001])
def test_large_blocks_verify_the_same_threaded_or_not(step: int) -> None:
    """Large blocks mixed with small ones give the same counts and first mismatch either way."""
    items = [b for pair in zip(BIG, SMALL * 2, strict=False) for b in pair] + BIG[6:]
    data = _car(items)
    locs = list(iter_blocks(data))
    big_at = [loc.offset for loc in locs if loc.length > 100_000]
    bad = _flip(data, big_at[3] + 7, big_at[5], locs[3].offset)

    # Small limits keep the read buffer small, so buffers are reused while
    # hashes are still pending.
    limits = CarLimits(max_section_size=300_000)
    good = verify_car(Pipe(data, step), limits=limits)
    first = verify_car(Pipe(bad, step), limits=limits)
    every = verify_car(Pipe(bad, step), all_mismatches=True, limits=limits)

    assert good.fully_verified
    assert good.blocks == len(items)
    assert good.bytes == sum(len(b.data) for b in items)
    assert [m.offset for m in first.mismatches] == [locs[3].offset]
    assert first.blocks == 4
    assert sorted(m.offset for m in every.mismatches) == sorted(
        [big_at[3], big_at[5], locs[3].offset]
    )
    assert [m.offset for m in every.mismatches] == sorted(
        m.offset for m in every.mismatches
    )
    assert every.verified == len(items) - 3


@pytest.mark.usefixtures("parallel")
def test_large_block_mismatch_before_truncation() -> None:
    """A pending large-block mismatch wins over a later structural error."""
    data = _car(BIG[:4])
    locs = list(iter_blocks(data))
    bad = _flip(data, locs[1].offset + 5)[:-100]

    result = verify_car(Pipe(bad, 100_000), limits=CarLimits(max_section_size=300_000))

    assert [m.offset for m in result.mismatches] == [locs[1].offset]
    assert result.error is None
    assert result.blocks == 2


@pytest.mark.usefixtures("parallel")
def test_large_blocks_then_truncation() -> None:
    """With no mismatch, the truncation is reported and earlier blocks are counted."""
    data = _car(BIG[:4])

    result = verify_car(
        Pipe(data[:-100], 70_000), limits=CarLimits(max_section_size=300_000)
    )

    assert result.blocks == 3
    assert result.verified == 3
    assert isinstance(result.error, CarFormatError)


def test_a_real_file(tmp_path: os.PathLike[str]) -> None:
    """verify_car on an open file (and its embedded index) works as on bytes."""
    path = os.path.join(tmp_path, "big.car")
    with CarWriter.open(path, [BIG[0].cid], version=2) as w:
        for b in BIG:
            w.write(b.cid, b.data)

    with open(path, "rb") as f:
        result = verify_car(f)

    assert result.fully_verified
    assert result.index_checked
    assert isinstance(result, VerifyResult)


# -- batched hashing of in-memory CARs, and the whole CAR's SHA-256 ------------------


def _facts(result: VerifyResult) -> tuple[object, ...]:
    """A result with its errors as comparable values (exceptions compare by identity)."""
    errors = [*result.mismatches, result.error]
    return (
        attrs.evolve(result, mismatches=(), error=None),
        [None if e is None else (type(e), str(e), e.offset) for e in errors],
    )


@pytest.fixture(params=[True, False], ids=["batched", "one-by-one"])
def batched(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run with in-memory CARs hashed in batches, or each block inline."""
    if request.param and not verify_module.SHA256_RANGES_NATIVE:
        pytest.skip("sha256_ranges has no compiled form here")
    monkeypatch.setattr(verify_module, "SHA256_RANGES_NATIVE", request.param)
    return bool(request.param)


@pytest.mark.skipif(
    not verify_module.SHA256_RANGES_NATIVE, reason="sha256_ranges is not compiled here"
)
@given(corruptions(), st.booleans())
def test_batched_hashing_finds_what_inline_hashing_finds(
    corruption: Corruption, every: bool
) -> None:
    """In-memory CARs give the same result hashed in one batch as block by block."""
    data = corruption.data
    batched = verify_car(data, all_mismatches=every)
    saved = verify_module.SHA256_RANGES_NATIVE
    verify_module.SHA256_RANGES_NATIVE = False
    try:
        inline = verify_car(data, all_mismatches=every)
    finally:
        verify_module.SHA256_RANGES_NATIVE = saved

    assert _facts(batched) == _facts(inline)


@pytest.mark.usefixtures("batched")
def test_batched_mismatches_keep_file_order_around_other_hashes() -> None:
    """A sha2-256 mismatch after an unverifiable or sha2-512 block is still placed in order."""
    items = [SMALL[0], SHA512, SMALL[1], SHA3, SMALL[2], BLAKE, SMALL[3]]
    data = _car(items)
    locs = list(iter_blocks(data))
    bad = _flip(data, locs[2].offset + 3, locs[5].offset + 1, locs[6].offset)

    first = verify_car(bad)
    every = verify_car(bad, all_mismatches=True)

    assert [m.offset for m in first.mismatches] == [locs[2].offset]
    assert first.blocks == 3
    assert [m.offset for m in every.mismatches] == [
        locs[2].offset,
        locs[5].offset,
        locs[6].offset,
    ]
    assert every.unverifiable == 1
    assert every.verified == len(items) - 4


@pytest.mark.usefixtures("batched")
@given(corruptions())
def test_sha256_of_the_whole_car_is_always_given(corruption: Corruption) -> None:
    """sha256=True gives the digest of every byte, bytes or stream, however verification ends."""
    data = corruption.data
    expected = hashlib.sha256(data).hexdigest()
    plain = verify_car(data)

    for source in (data, memoryview(data), Pipe(data, 777), io.BytesIO(data)):
        result = verify_car(source, sha256=True)  # type: ignore[arg-type]
        assert result.sha256 == expected
        assert _facts(attrs.evolve(result, sha256=None)) == _facts(plain)
    assert plain.sha256 is None


@pytest.mark.usefixtures("batched")
@given(car_bytes(version=2), st.booleans())
def test_sha256_covers_a_carv2_index_that_is_not_checked(
    data: bytes, check_index: bool
) -> None:
    """The digest covers the whole file, also the bytes verification skips."""
    expected = hashlib.sha256(data).hexdigest()

    from_bytes = verify_car(data, check_index=check_index, sha256=True)
    from_stream = verify_car(io.BytesIO(data), check_index=check_index, sha256=True)

    assert from_bytes.sha256 == from_stream.sha256 == expected
    assert from_bytes.ok
    assert _facts(from_bytes) == _facts(from_stream)


def test_sha256_of_a_real_file_names_its_car_cid(tmp_path: os.PathLike[str]) -> None:
    """On an open file the digest is the one a CID with codec car names."""
    path = os.path.join(tmp_path, "big.car")
    with CarWriter.open(path, [BIG[0].cid], version=2) as w:
        for b in BIG[:3]:
            w.write(b.cid, b.data)
    with open(path, "rb") as f:
        data = f.read()
        f.seek(0)
        result = verify_car(f, check_index=False, sha256=True)

    assert result.sha256 is not None
    assert CID.from_data(data, codec="car").digest.hex() == result.sha256
    assert result.fully_verified


def test_a_non_byte_memoryview_is_verified_as_its_bytes() -> None:
    """A memoryview of another format is read as its underlying bytes."""
    data = _car([*SMALL, *BIG[:2]])
    pad = (-len(data)) % 4
    words = memoryview(data + b"\0" * pad).cast("I")

    result = verify_car(words, zero_length_section_as_eof=True, sha256=True)

    assert result.fully_verified
    assert result.blocks == len(SMALL) + 2
    assert result.sha256 == hashlib.sha256(data + b"\0" * pad).hexdigest()


@pytest.mark.parametrize("hash_thread", [True, False])
def test_hash_thread_is_the_callers_choice(
    hash_thread: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hash_thread decides whether a hashing thread starts; the result is the same."""
    started: list[str] = []
    real_start = threading.Thread.start

    def start(self: threading.Thread) -> None:
        started.append(self.name)
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    data = _car(BIG[:5])
    locs = list(iter_blocks(data))
    bad = _flip(data, locs[3].offset + 9)

    good = verify_car(Pipe(data, 65536), hash_thread=hash_thread)
    broken = verify_car(Pipe(bad, 65536), hash_thread=hash_thread)

    assert good.fully_verified
    assert good.blocks == 5
    assert [m.offset for m in broken.mismatches] == [locs[3].offset]
    assert broken.blocks == 4
    assert ("carmigrate-verify" in started) is hash_thread


@pytest.mark.usefixtures("batched")
@given(corruptions(), st.booleans())
def test_batches_settled_early_give_the_same_result(
    corruption: Corruption, every: bool
) -> None:
    """Settling every few blocks (as a large CAR does) changes nothing in the result."""
    data = corruption.data
    expected = verify_car(Pipe(data, 4096), all_mismatches=every, sha256=True)
    saved = verify_module._BATCH_BLOCKS
    verify_module._BATCH_BLOCKS = 2  # type: ignore[misc]
    try:
        result = verify_car(data, all_mismatches=every, sha256=True)
    finally:
        verify_module._BATCH_BLOCKS = saved  # type: ignore[misc]

    assert _facts(result) == _facts(expected)


@pytest.mark.usefixtures("batched")
def test_memory_for_many_small_blocks_stays_bounded() -> None:
    """Batches are settled as they fill, so memory does not grow with the block count."""
    import tracemalloc

    items = [Block.from_data(i.to_bytes(4, "big"), codec="raw") for i in range(40_000)]
    data = _car(items)
    tracemalloc.start()
    try:
        result = verify_car(data, sha256=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert result.fully_verified
    assert result.blocks == len(items)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert peak < 2 << 20, f"peak {peak} bytes for a {len(data)}-byte CAR"


class ReadOnly:
    """A stream with only ``read``, which returns None at its end (as some do)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def read(self, n: int = -1) -> bytes | None:
        if self._pos >= len(self._data):
            return None
        chunk = self._data[self._pos : self._pos + min(n, 1000)]
        self._pos += len(chunk)
        return chunk


def test_sha256_of_a_stream_with_only_read() -> None:
    """A stream without readinto, ending with None, is hashed whole."""
    data = _car([*SMALL, BIG[0]])

    result = verify_car(ReadOnly(data), sha256=True)  # type: ignore[arg-type]

    assert result.fully_verified
    assert result.sha256 == hashlib.sha256(data).hexdigest()
