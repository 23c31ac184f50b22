"""The stream readers of tag files, and the name rules."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from bag_helpers import EXTERNAL_IDENTIFIER, NFD_NAME, PAYLOAD

from carmigrate.bagit import (
    MAX_LINE,
    BagDeclaration,
    FetchEntry,
    ManifestEntry,
    PayloadOxum,
    check_external_identifier,
    decode_path,
    encode_path,
    iter_fetch,
    iter_manifest,
    read_bag_info,
    read_declaration,
)
from carmigrate.errors import BagError


class Trickle(io.RawIOBase):
    """A stream that returns at most ``step`` bytes per read (short reads)."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data = data
        self.pos = 0
        self.step = step

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        n = self.step if size < 0 else min(size, self.step)
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out


def test_read_declaration_of_a_loc_bag(loc_bag: Path) -> None:
    """The LoC package writes BagIt-Version 0.97 and UTF-8."""
    with (loc_bag / "bagit.txt").open("rb") as f:
        declaration = read_declaration(f)

    assert declaration == BagDeclaration(version="0.97", encoding="UTF-8")


def test_read_declaration_refuses_a_bad_one() -> None:
    """Every problem of the declaration is in the message."""
    with pytest.raises(BagError, match="line 1 is 'BagIt-Version: x'") as info:
        read_declaration(
            io.BytesIO(b"BagIt-Version: x\nTag-File-Character-Encoding: latin-1\n")
        )

    assert "carmigrate reads UTF-8 tag files only" in str(info.value)
    assert info.value.path == "bagit.txt"


def test_read_bag_info_of_a_loc_bag(loc_bag: Path) -> None:
    """Fields come in file order; labels match without regard to case."""
    with (loc_bag / "bag-info.txt").open("rb") as f:
        info = read_bag_info(f)

    assert info.get("external-identifier") == EXTERNAL_IDENTIFIER
    oxum = info.get("Payload-Oxum")
    assert oxum is not None
    assert PayloadOxum.parse(oxum).streams == len(PAYLOAD)
    assert [label for label, _ in info.fields] == sorted(
        label for label, _ in info.fields
    )


def test_read_bag_info_continuations_and_repeats() -> None:
    """A continued value keeps its line break but not the indentation; labels repeat."""
    text = (
        b"Source-Organization: Wellcome Collection\r\n"
        b"External-Description: a long\n"
        b"\t  description\r"
        b"Source-Organization: Another\n"
        b"\n"
        b"Empty:\n"
    )

    info = read_bag_info(Trickle(text, 3))

    assert info.values("source-organization") == ("Wellcome Collection", "Another")
    assert info.get("External-Description") == "a long\ndescription"
    assert info.get("Empty") == ""
    assert info.get("Missing") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"no colon here\n", "is not 'Label: value'"),
        (b"  starts with a continuation\n", "continues no field"),
        (b" Label : value\nx", "continues no field"),
        (b"Label : value\n", "starts or ends with whitespace"),
        (b"Label: caf\xe9\n", "line 1 is not UTF-8"),
        (b"\xef\xbb\xbfLabel: value\n", "byte-order mark"),
    ],
)
def test_read_bag_info_refuses(text: bytes, expected: str) -> None:
    """Syntax errors raise BagError naming the line."""
    with pytest.raises(BagError, match=expected):
        read_bag_info(io.BytesIO(text))


def test_iter_manifest_of_a_loc_bag(loc_bag: Path) -> None:
    """A LoC payload manifest lists every payload file, NFD names as stored."""
    with (loc_bag / "manifest-sha512.txt").open("rb") as f:
        entries = list(iter_manifest(f, "SHA-512"))

    assert sorted(e.path for e in entries) == sorted(f"data/{p}" for p in PAYLOAD)
    assert f"data/unicode/{NFD_NAME}" in {e.path for e in entries}
    assert all(len(e.digest) == 128 for e in entries)


def test_iter_manifest_line_ends_and_encoding() -> None:
    """LF, CR and CRLF all end lines, even split across reads; paths are percent-decoded."""
    d1, d2, d3 = "a" * 64, "B" * 64, "c" * 64
    text = (
        f"{d1}  data/one.txt\r\n{d2}\tdata/with space%25 and %0Aline\r"
        f"{d3} data/%41 stays\n\n"
    ).encode()

    for step in (1, 2, 7, 1 << 20):
        entries = list(iter_manifest(Trickle(text, step), "sha256"))

        assert entries == [
            ManifestEntry(path="data/one.txt", digest=d1),
            ManifestEntry(path="data/with space% and \nline", digest="b" * 64),
            ManifestEntry(path="data/%41 stays", digest=d3),
        ]


def test_iter_manifest_stops_at_a_bad_line() -> None:
    """The entries before a bad line are yielded, then BagError names the line."""
    text = b"a" * 64 + b" data/ok\n" + b"zz data/bad\n"
    found: list[ManifestEntry] = []

    with pytest.raises(BagError, match="line 2 is not '<sha256 digest> <path>'"):
        found.extend(iter_manifest(io.BytesIO(text), "sha256"))

    assert [e.path for e in found] == ["data/ok"]


def test_iter_manifest_refuses_a_huge_line() -> None:
    """A line longer than MAX_LINE is refused without being held whole."""
    text = b"a" * 64 + b" data/" + b"x" * (MAX_LINE + 10)

    with pytest.raises(BagError, match="longer than"):
        list(iter_manifest(io.BytesIO(text), "sha256"))


def test_iter_fetch() -> None:
    """Each line is URL, length or '-', and a percent-decoded path."""
    text = (
        b"s3://b/space/x/v1/data/a.tif 1234 data/a.tif\n"
        b"https://example.org/b%20c -\tdata/b c%25.tif\r\n"
    )

    assert list(iter_fetch(io.BytesIO(text))) == [
        FetchEntry(url="s3://b/space/x/v1/data/a.tif", length=1234, path="data/a.tif"),
        FetchEntry(url="https://example.org/b%20c", length=None, path="data/b c%.tif"),
    ]
    with pytest.raises(BagError, match="is not 'URL LENGTH PATH'") as info:
        list(iter_fetch(io.BytesIO(b"s3://b/x data/a\n")))
    assert info.value.path == "fetch.txt"


@pytest.mark.parametrize(
    "path", ["data/plain.txt", "data/50% off", "data/a\nb\rc", "data/%0A literal"]
)
def test_encode_and_decode_paths(path: str) -> None:
    """encode_path and decode_path are inverse (RFC 8493 section 2.1.3)."""
    encoded = encode_path(path)

    assert "\n" not in encoded
    assert "\r" not in encoded
    assert decode_path(encoded) == path


def test_payload_oxum() -> None:
    """OctetCount.StreamCount, two decimal numbers."""
    assert PayloadOxum.parse(" 279164409832.1198 ") == PayloadOxum(
        octets=279164409832, streams=1198
    )
    assert str(PayloadOxum(octets=5, streams=2)) == "5.2"
    for bad in ("1198", "1.2.3", "a.b", "-1.2", ""):
        with pytest.raises(ValueError, match=r"OctetCount\.StreamCount"):
            PayloadOxum.parse(bad)


@pytest.mark.parametrize(
    "value", ["b12345678", "PP/GRF/A.41", "ARTCOO/B/14", "B images", "a_b-c.d", "v1a"]
)
def test_external_identifiers_accepted(value: str) -> None:
    """Identifiers as the Wellcome storage service holds them."""
    assert check_external_identifier(value) == value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "is empty"),
        (" ", "does not begin and end"),
        ("   ", "two spaces in a row"),
        ("/b1", "starts or ends with '/'"),
        ("b1/", "starts or ends with '/'"),
        ("a//b", "starts or ends with '/' or has '//'"),
        ("a  b", "two spaces in a row"),
        ("b1.", "does not begin and end with a letter or a digit"),
        ("a/./b", "does not begin and end"),
        ("a/../b", "does not begin and end"),
        ("a/ b", "does not begin and end"),
        ("b1/v2", "looks like a version folder"),
        ("v10/b1", "looks like a version folder"),
        ("b1?x=1", "characters other than"),
        ("caf\u00e9", "characters other than"),
        ("a\tb", "characters other than"),
    ],
)
def test_external_identifiers_refused(value: str, expected: str) -> None:
    """The rules of check_external_identifier, one case each."""
    with pytest.raises(ValueError, match=expected):
        check_external_identifier(value)
