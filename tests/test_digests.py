"""The digest registry: names, spellings, validation and one-pass hashing."""

from __future__ import annotations

import hashlib
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carmigrate import digests
from carmigrate.digests import (
    DigestAlgorithm,
    MultiHasher,
    algorithm,
    algorithm_names,
    canonical_name,
    clean_digests,
    normalize_digests,
    strongest,
)


def test_required_algorithms_are_registered() -> None:
    assert {"md5", "sha1", "sha256", "sha512", "adler32"} <= set(algorithm_names())
    assert list(algorithm_names()) == sorted(algorithm_names())


@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("SHA-256", "sha256"),
        ("sha_256", "sha256"),
        ("SHA256", "sha256"),
        ("ADLER32", "adler32"),
        ("Adler-32", "adler32"),
        ("MD5", "md5"),
        ("SHA1", "sha1"),
        ("sha-512", "sha512"),
    ],
)
def test_spellings_from_other_systems(spelling: str, name: str) -> None:
    assert canonical_name(spelling) == name


def test_unknown_name_lists_the_registered_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown digest algorithm 'crc64'.*sha256"):
        canonical_name("crc64")


def test_adler32_matches_zlib_and_rfc1950_vector() -> None:
    # RFC 1950's example string: Adler-32 of "Wikipedia" is 0x11E60398
    assert algorithm("adler32").digest(b"Wikipedia") == "11e60398"
    assert algorithm("adler32").digest(b"") == "00000001"


@given(st.lists(st.binary(max_size=300), max_size=8))
def test_multihasher_equals_one_shot_hashes(chunks: list[bytes]) -> None:
    m = MultiHasher(["SHA-256", "md5", "sha1", "sha512", "adler32", "sha256"])
    assert m.names == ("adler32", "md5", "sha1", "sha256", "sha512")
    for c in chunks:
        m.update(memoryview(c))
    data = b"".join(chunks)
    assert m.hexdigests() == {
        "adler32": f"{zlib.adler32(data):08x}",
        "md5": hashlib.md5(data).hexdigest(),
        "sha1": hashlib.sha1(data).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(),
        "sha512": hashlib.sha512(data).hexdigest(),
    }


def test_blake3_when_installed() -> None:
    blake3 = pytest.importorskip("blake3")
    assert "blake3" in algorithm_names()
    data = b"carmigrate" * 1000
    assert algorithm("BLAKE3").digest(data) == blake3.blake3(data).hexdigest()


def test_normalize_is_strict() -> None:
    assert normalize_digests({"SHA-256": "A" * 64, "md5": "b" * 32}) == {
        "md5": "b" * 32,
        "sha256": "a" * 64,
    }
    with pytest.raises(ValueError, match="is not 32 hex digits"):
        normalize_digests({"md5": "abc"})
    with pytest.raises(ValueError, match="unknown digest"):
        normalize_digests({"whirlpool": "00"})
    with pytest.raises(ValueError, match="given twice"):
        normalize_digests({"sha256": "a" * 64, "SHA-256": "a" * 64})
    with pytest.raises(ValueError, match="is not 8 hex digits"):
        normalize_digests({"adler32": "xyzxyzxy"})


def test_clean_drops_what_is_not_a_digest() -> None:
    multipart_etag = "d41d8cd98f00b204e9800998ecf8427e-3"
    assert clean_digests(
        {
            "md5": multipart_etag,
            "SHA256": "F" * 64,
            "crc64": "00",
            "sha1": None,
            "adler32": "0000000g",
        }
    ) == {"sha256": "f" * 64}
    assert clean_digests(None) == {}


def test_strongest() -> None:
    assert strongest(["md5", "sha512", "sha256"]) == "sha512"
    assert strongest(["MD5", "adler32"]) == "md5"
    assert strongest(["crc64"]) is None
    assert strongest([]) is None


def test_register_refuses_clashes_and_bad_names() -> None:
    with pytest.raises(ValueError, match="registered already"):
        digests.register(
            DigestAlgorithm(
                name="sha256",
                hex_length=64,
                strength=1,
                cryptographic=True,
                factory=hashlib.sha256,
            )
        )
    with pytest.raises(ValueError, match="letters and digits"):
        digests.register(
            DigestAlgorithm(
                name="sha-3",
                hex_length=64,
                strength=1,
                cryptographic=True,
                factory=hashlib.sha3_256,
            )
        )
