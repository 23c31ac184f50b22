"""Fuzzing: on any input the only outcomes are blocks or a FormatError, within the limits."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from carmigrate.car import (
    CarBlockReader,
    CarLimits,
    CarReader,
    index_car,
    inspect_car,
    iter_blocks,
    verify_car,
)
from carmigrate.cid.lowlevel import encode_varint
from carmigrate.errors import CarFormatError, FormatError
from carmigrate.testing.strategies import car_bytes

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SEEDS = [
    FIXTURES / "ipld-spec" / "carv1-basic.car",
    FIXTURES / "ipld-spec" / "carv2-basic.car",
    FIXTURES / "go-car" / "v2" / "testdata" / "sample-unixfs-v2.car",
    FIXTURES / "go-car" / "v2" / "testdata" / "sample-rw-bs-v2.car",
    FIXTURES / "go-car" / "cmd" / "car" / "testdata" / "inputs" / "simple-unixfs.car",
    FIXTURES / "go-car" / "v2" / "testdata" / "sample-rootless-v42.car",
]
SEED_BYTES = [p.read_bytes() for p in SEEDS]
LIMITS = CarLimits(max_header_size=64 << 10, max_section_size=64 << 10)


def _run_all(data: bytes) -> None:
    """Run every reader over ``data``; anything but a FormatError escapes and fails the test."""
    attempts: list[Callable[[], object]] = [
        lambda: list(iter_blocks(io.BytesIO(data), limits=LIMITS, verify=True)),
        lambda: list(CarBlockReader(data, limits=LIMITS).locations()),
        lambda: CarReader(io.BytesIO(data), limits=LIMITS),
        lambda: inspect_car(
            io.BufferedReader(io.BytesIO(data), buffer_size=7), limits=LIMITS
        ),  # type: ignore[arg-type]
        lambda: index_car(data, io.BytesIO(), limits=LIMITS),
    ]
    errors: list[FormatError] = []
    for attempt in attempts:
        try:
            attempt()
        except FormatError as exc:
            errors.append(exc)
    assert all(isinstance(e, CarFormatError) for e in errors), errors
    assert all(e.offset >= 0 for e in errors if isinstance(e, CarFormatError))
    result = verify_car(data, limits=LIMITS, all_mismatches=True)
    if result.error is not None:
        assert result.error.offset >= 0


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEED_BYTES)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        kind = draw(
            st.sampled_from(["flip", "set", "insert", "delete", "truncate", "varint"])
        )
        at = draw(st.integers(min_value=0, max_value=max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif kind == "set" and data:
            data[at] = draw(st.integers(min_value=0, max_value=255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at : at + draw(st.integers(min_value=1, max_value=16))]
        elif kind == "truncate":
            del data[at:]
        else:
            data[at : at + 1] = encode_varint(
                draw(st.integers(min_value=0, max_value=(1 << 63) - 1))
            )
    return bytes(data)


# More examples than the profile's default: these are the fuzzers, and cheap.
FUZZ = settings(max_examples=400)


@FUZZ
@given(mutated())
def test_mutated_fixtures_give_blocks_or_format_errors(data: bytes) -> None:
    """Mutations of real CARs never raise anything but a FormatError."""
    _run_all(data)


@FUZZ
@given(st.binary(max_size=2048))
@example(b"")
@example(b"\x0a\xa1\x67version\x02" + b"\xff" * 40)
@example(b"\x0a\xa1\x67version\x02" + bytes(40))
def test_random_bytes_give_blocks_or_format_errors(data: bytes) -> None:
    """Arbitrary bytes never raise anything but a FormatError."""
    _run_all(data)


@FUZZ
@given(
    car_bytes(max_blocks=5),
    st.integers(min_value=0, max_value=10_000),
    st.binary(min_size=1, max_size=8),
)
def test_generated_cars_with_splices(data: bytes, at: int, junk: bytes) -> None:
    """Valid CARs with bytes overwritten anywhere give blocks or FormatErrors."""
    at %= len(data)
    _run_all(data[:at] + junk + data[at + len(junk) :])


def _peak(run: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        run()
    except FormatError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


# Memory allowed beyond the caps: the read buffers grow to a few times the
# section cap, plus parser state.
SLACK = 1 << 20
BOUND = LIMITS.max_header_size + 4 * LIMITS.max_section_size + SLACK


@given(mutated())
def test_memory_stays_within_the_limits(data: bytes) -> None:
    """Peak allocation while reading any input stays under the limits plus slack."""
    peak = max(
        _peak(lambda: list(iter_blocks(io.BytesIO(data), limits=LIMITS))),
        _peak(lambda: verify_car(io.BytesIO(data), limits=LIMITS)),
    )

    assert peak < BOUND


def test_hostile_lengths_allocate_nothing_big() -> None:
    """Lengths of 2**62 in a header or section are refused before any allocation."""
    header = b"\x11\xa2eroots\x80gversion\x01"
    hostile = [
        encode_varint(1 << 62) + b"\xa0",
        header + encode_varint(1 << 62) + b"\x01",
        header + encode_varint(LIMITS.max_section_size) + b"\x01\x55",
        b"\x0a\xa1\x67version\x02"
        + bytes(16)
        + (51).to_bytes(8, "little")
        + (1 << 62).to_bytes(8, "little")
        + bytes(8)
        + encode_varint(1 << 40),
    ]
    for data in hostile:
        peak = max(
            _peak(lambda d=data: list(iter_blocks(io.BytesIO(d), limits=LIMITS))),  # type: ignore[misc]
            _peak(lambda d=data: CarReader(io.BytesIO(d), limits=LIMITS)),  # type: ignore[misc]
        )
        assert peak < BOUND, (data[:20], peak)


def test_a_large_stream_reads_in_bounded_memory() -> None:
    """Reading a CAR much larger than the limits keeps memory flat."""
    from carmigrate.car import Block, CarWriter

    out = io.BytesIO()
    with CarWriter(out, []) as w:
        for i in range(400):
            b = Block.from_data(i.to_bytes(4, "little") * 10_000)
            w.write(b.cid, b.data)
    data = out.getvalue()
    assert len(data) > 10 * BOUND

    peak = _peak(lambda: verify_car(io.BytesIO(data), limits=LIMITS))

    assert peak < BOUND
