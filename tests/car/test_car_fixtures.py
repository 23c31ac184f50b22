"""Every fixture from go-car and the IPLD specs reads, or fails, exactly as it should."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from carmigrate.car import (
    CarBlockReader,
    CarReader,
    iter_blocks,
    verify_car,
)
from carmigrate.errors import (
    BlockHashMismatch,
    CarFormatError,
    FormatError,
    LimitExceeded,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
GO = FIXTURES / "go-car"
V2 = GO / "v2" / "testdata"
INPUTS = GO / "cmd" / "car" / "testdata" / "inputs"
SPEC = FIXTURES / "ipld-spec"

VALID = {
    V2 / "sample-v1.car": (1, 1049),
    V2 / "sample-v1-noidentity.car": (1, 1043),
    V2 / "sample-wrapped-v2.car": (2, 1049),
    V2 / "sample-v2-indexless.car": (2, 1049),
    V2 / "sample-rw-bs-v2.car": (2, 3),
    V2 / "sample-unixfs-v2.car": (2, 3),
    INPUTS / "simple-unixfs.car": (1, 22),
    INPUTS / "simple-unixfs-missing-blocks.car": (1, 17),
    INPUTS / "wikipedia-cryptographic-hash-function.car": (1, 5),
    SPEC / "carv1-basic.car": (1, 8),
    SPEC / "hamt.car": (1, 36),
}

# (file, error class, offset the error must name)
BROKEN = [
    (V2 / "sample-corrupt-pragma.car", CarFormatError, 0),
    (V2 / "sample-rootless-v42.car", CarFormatError, 0),
    (V2 / "sample-v1-tailing-corrupt-section.car", CarFormatError, 479518),
    (V2 / "sample-v1-with-zero-len-section.car", CarFormatError, 479907),
    (V2 / "sample-v1-with-zero-len-section2.car", CarFormatError, 20819),
    (V2 / "sample-v2-corrupt-data-and-index.car", CarFormatError, 43),
    (INPUTS / "badheaderlength.car", LimitExceeded, 0),
    (INPUTS / "badsectionlength.car", LimitExceeded, 18),
]


def _ids(path: Path) -> str:
    return path.name


def _spec_blocks(name: str) -> list[tuple[str, int, int, int, int]]:
    doc = json.loads((SPEC / f"{name}.json").read_text())
    return [
        (b["cid"]["/"], b["blockOffset"], b["blockLength"], b["offset"], b["length"])
        for b in doc["blocks"]
    ]


@pytest.mark.parametrize("name", ["carv1-basic", "carv2-basic"])
def test_spec_fixture_offsets_match_the_json(name: str) -> None:
    """Block and section offsets and lengths are exactly those of the spec's JSON."""
    expected = _spec_blocks(name)
    data = (SPEC / f"{name}.car").read_bytes()

    blocks = [
        (str(b.cid), b.offset, b.length, b.section_offset, b.location.section_length)
        for b in iter_blocks(io.BytesIO(data))
    ]
    locations = [
        (str(x.cid), x.offset, x.length, x.section_offset, x.section_length)
        for x in CarBlockReader(data).locations()
    ]

    assert expected == blocks
    assert expected == locations


@pytest.mark.parametrize("name", ["carv1-basic", "carv2-basic"])
def test_spec_fixture_header_matches_the_json(name: str) -> None:
    """Version, roots and the CARv2 header fields are those of the spec's JSON."""
    header = json.loads((SPEC / f"{name}.json").read_text())["header"]
    reader = CarBlockReader((SPEC / f"{name}.car").read_bytes())

    assert header["version"] == reader.version
    assert [r["/"] for r in header["roots"]] == [str(r) for r in reader.roots]
    if reader.version == 2:
        v2 = reader.header.v2
        assert v2 is not None
        assert (header["dataOffset"], header["dataSize"], header["indexOffset"]) == (
            v2.data_offset,
            v2.data_size,
            v2.index_offset,
        )
        assert header["characteristics"] == [
            v2.characteristics.hi,
            v2.characteristics.lo,
        ]


def test_spec_block_data_matches_the_json_content() -> None:
    """Raw blocks carry the bytes the JSON shows (base64 in DAG-JSON's bytes form)."""
    import base64

    doc = json.loads((SPEC / "carv1-basic.json").read_text())
    raw = {
        b["cid"]["/"]: base64.b64decode(b["content"]["/"]["bytes"] + "==")
        for b in doc["blocks"]
        if isinstance(b["content"].get("/"), dict)
    }
    got = {
        str(b.cid): b.data for b in iter_blocks((SPEC / "carv1-basic.car").read_bytes())
    }

    assert raw == {cid: got[cid] for cid in raw}


def test_carv2_basic_index_without_codec_is_reported_not_trusted() -> None:
    """The spec's carv2-basic index lacks its multicodec prefix: an error unless ignored."""
    data = (SPEC / "carv2-basic.car").read_bytes()

    with pytest.raises(CarFormatError) as info:
        CarReader(data)
    reader = CarReader(data, embedded_index="ignore")
    result = verify_car(data)

    assert info.value.offset == 499
    assert "unknown CARv2 index codec 0x1" in str(info.value)
    assert len(reader) == 5
    assert reader.index is None
    assert result.blocks == 5
    assert result.verified == 5
    assert result.error is not None
    assert result.error.offset == 499
    assert verify_car(data, check_index=False).fully_verified


@pytest.mark.parametrize("path", list(VALID), ids=_ids)
def test_valid_fixtures_read_and_verify(path: Path) -> None:
    """Each valid fixture streams, scans, opens for random access and verifies."""
    version, count = VALID[path]
    data = path.read_bytes()

    with path.open("rb") as f:
        blocks = list(iter_blocks(f))
    locations = list(CarBlockReader(io.BytesIO(data)).locations())
    result = verify_car(io.BytesIO(data))

    assert count == len(blocks)
    assert [b.location for b in blocks] == locations
    assert result.fully_verified
    assert (result.version, result.blocks, result.verified) == (version, count, count)
    assert result.bytes == sum(b.length for b in blocks)
    with CarReader.open(path) as reader:
        assert reader.version == version
        assert list(reader.locations) == locations
        for b in blocks:
            assert reader[b.cid].data == data[b.offset : b.offset + b.length]


@pytest.mark.parametrize(
    ("path", "error", "offset"), BROKEN, ids=[_ids(p) for p, _, _ in BROKEN]
)
def test_broken_fixtures_raise_with_offset(
    path: Path, error: type[CarFormatError], offset: int
) -> None:
    """Each broken fixture gives the expected error class at the expected offset, everywhere."""
    data = path.read_bytes()

    with pytest.raises(error) as streamed:
        list(iter_blocks(io.BytesIO(data)))
    with pytest.raises(error) as scanned:
        list(CarBlockReader(data).locations())
    with pytest.raises(error) as opened:
        CarReader(io.BytesIO(data))
    result = verify_car(data)

    assert streamed.value.offset == offset
    assert scanned.value.offset == offset
    assert opened.value.offset == offset
    assert type(result.error) is error
    assert result.error.offset == offset
    assert not result.ok


def test_v42_and_corrupt_pragma_messages_say_what_was_expected() -> None:
    """Messages name the version found and the bytes declared versus present."""
    with pytest.raises(CarFormatError, match="unsupported CAR version 42"):
        CarBlockReader((V2 / "sample-rootless-v42.car").read_bytes())
    with pytest.raises(
        CarFormatError, match="declares 18 bytes but the data ends after 15"
    ):
        CarBlockReader((V2 / "sample-corrupt-pragma.car").read_bytes())


@pytest.mark.parametrize(
    ("name", "count", "zero_at"),
    [
        ("sample-v1-with-zero-len-section.car", 1049, 479907),
        ("sample-v1-with-zero-len-section2.car", 20, 20819),
    ],
)
def test_zero_length_section_as_eof_ends_the_data(
    name: str, count: int, zero_at: int
) -> None:
    """With the option, the zero-length section ends the data (go-car's ZeroLengthSectionAsEOF)."""
    data = (V2 / name).read_bytes()

    blocks = list(iter_blocks(data, zero_length_section_as_eof=True))
    locations = list(
        CarBlockReader(io.BytesIO(data), zero_length_section_as_eof=True).locations()
    )
    result = verify_car(data, zero_length_section_as_eof=True)
    reader = CarReader(data, zero_length_section_as_eof=True)

    assert count == len(blocks) == len(locations) == result.blocks
    assert blocks[-1].location.end == zero_at
    assert result.fully_verified
    assert len(reader.locations) == count


def test_zero_length_section_data_before_it_matches_sample_v1() -> None:
    """The blocks before the padding are exactly those of sample-v1.car."""
    padded = list(
        iter_blocks(
            (V2 / "sample-v1-with-zero-len-section.car").read_bytes(),
            zero_length_section_as_eof=True,
        )
    )
    plain = list(iter_blocks((V2 / "sample-v1.car").read_bytes()))

    assert plain == padded


def _go_string(literal: str) -> bytes:
    """Decode a Go interpreted string literal body (without the quotes) to bytes."""
    out = bytearray()
    simple = {
        "a": 7,
        "b": 8,
        "f": 12,
        "n": 10,
        "r": 13,
        "t": 9,
        "v": 11,
        "\\": 92,
        '"': 34,
        "'": 39,
    }
    i = 0
    while i < len(literal):
        ch = literal[i]
        if ch != "\\":
            out += ch.encode("utf-8")
            i += 1
            continue
        kind = literal[i + 1]
        if kind in simple:
            out.append(simple[kind])
            i += 2
        elif kind == "x":
            out.append(int(literal[i + 2 : i + 4], 16))
            i += 4
        elif kind in "01234567":
            out.append(int(literal[i + 1 : i + 4], 8))
            i += 4
        elif kind in "uU":
            width = 4 if kind == "u" else 8
            out += chr(int(literal[i + 2 : i + 2 + width], 16)).encode("utf-8")
            i += 2 + width
        else:  # pragma: no cover - not in Go
            raise ValueError(f"bad escape \\{kind}")
    return bytes(out)


def _go_fuzz_inputs() -> list[Path]:
    return sorted(p for p in GO.rglob("fuzz/*/*") if p.is_file())


def _read_go_fuzz(path: Path) -> bytes:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "go test fuzz v1"
    line = lines[1]
    assert line.startswith('[]byte("')
    assert line.endswith('")')
    return _go_string(line[len('[]byte("') : -2])


def test_go_string_decoder() -> None:
    """The Go literal decoder handles the escapes Go's fuzz corpus uses."""
    glottal = "\u0294"
    assert _go_string(r"\x00\n\t\\\"\f\v\b\a\r\101\u00e9" + glottal) == (
        b'\x00\n\t\\"\x0c\x0b\x08\x07\rA' + "é".encode() + glottal.encode()
    )


def test_go_fuzz_corpus_is_present() -> None:
    """The six crashers from go-car's fuzz corpus are in the fixtures."""
    assert len(_go_fuzz_inputs()) == 6


@pytest.mark.parametrize(
    "path", _go_fuzz_inputs(), ids=lambda p: f"{p.parent.name}-{p.name[:8]}"
)
def test_go_fuzz_crashers_are_rejected(path: Path) -> None:
    """Inputs that crashed go-car's fuzzers are rejected with a CarFormatError and an offset."""
    data = _read_go_fuzz(path)

    with pytest.raises(CarFormatError) as info:
        CarReader(data)
    result = verify_car(data)

    assert 0 <= info.value.offset <= len(data)
    assert not result.ok
    error: FormatError | None = None
    blocks = []
    try:
        blocks = list(iter_blocks(io.BytesIO(data)))
    except FormatError as exc:
        error = exc
    if error is not None:
        assert isinstance(error, CarFormatError)
    else:  # well-formed sections: the problem is in the hashes or the index
        assert blocks
        assert result.first_failure is not None


def test_go_fuzz_reader_crasher_has_good_sections_and_a_bad_index() -> None:
    """One FuzzReader crasher is a CARv2 with a corrupted block and a corrupted index."""
    data = _read_go_fuzz(
        GO
        / "v2/testdata/fuzz/FuzzReader/fe93cec1356ad2fe2217292374cd93b65a482fec3a43e6021fe87f5607bd8857"
    )
    reader = CarBlockReader(data)
    blocks = list(reader)

    assert reader.version == 2
    assert [b.offset for b in blocks] == [147, 196, 286]
    with pytest.raises(BlockHashMismatch) as mismatch:
        list(iter_blocks(data, verify=True))
    assert mismatch.value.offset == 147
    result = verify_car(data, all_mismatches=True)
    assert [m.offset for m in result.mismatches] == [147]
    assert result.verified == 2
    assert result.error is not None
    assert "bucket count" in result.error.reason
    with pytest.raises(CarFormatError, match="bucket count"):
        CarReader(data)
