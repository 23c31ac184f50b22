"""CID, multihash, multibase and varint behaviour, checked against multiformats."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multiformats import CID as MCID

from carmigrate.cid import (
    CID,
    HashCheck,
    Multihash,
    UnsupportedHash,
    as_cid,
    multibase_decode,
    multibase_encode,
)
from carmigrate.cid.lowlevel import decode_varint, encode_varint
from carmigrate.errors import FormatError

# A CIDv0 and its v1 form, from the IPFS docs' well-known "hello world" examples.
V0 = "QmXoypizjW3WknFiJnKLwHCnL72vedxjQkDDP1mXWo6uco"
V1_OF_V0 = "bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq"

# Codes the multiformats package knows, so it can act as the oracle.
known_codecs = st.sampled_from([0x55, 0x70, 0x71, 0x0129, 0xF101])
known_hashes = st.sampled_from([0x00, 0x12, 0x13, 0xB220, 0x1012])
# Codes with multi-byte varints that nothing registers.
any_codecs = known_codecs | st.integers(min_value=0, max_value=(1 << 63) - 1)
any_hashes = known_hashes | st.integers(min_value=0, max_value=(1 << 63) - 1)


@st.composite
def cid_values(draw: st.DrawFn, *, known: bool = True) -> CID:
    codec = draw(known_codecs if known else any_codecs)
    code = draw(known_hashes if known else any_hashes)
    # the oracle refuses digests longer than the hash function's own size
    longest = _DIGEST_SIZES.get(code, 70) if known else 70
    digest = draw(st.binary(min_size=0, max_size=longest))
    return CID.create(1, codec, Multihash(code, digest))


# identity: any length; sha2-256, sha2-512, blake2b-256, sha2-256-trunc254-padded
_DIGEST_SIZES = {0x00: 70, 0x12: 32, 0x13: 64, 0xB220: 32, 0x1012: 32}


def test_v0_string_round_trip_and_v1_conversion() -> None:
    """A CIDv0 parses, prints unchanged and converts to the known CIDv1."""
    cid = CID.decode(V0)

    assert cid.version == 0
    assert cid.codec == 0x70
    assert str(cid) == V0
    assert str(cid.to_v1()) == V1_OF_V0
    assert CID.decode(V1_OF_V0).to_v1() == CID.decode(V1_OF_V0)


@pytest.mark.parametrize(
    "base",
    [
        "base32",
        "base32upper",
        "base58btc",
        "base36",
        "base36upper",
        "base16",
        "base64",
        "base64url",
    ],
)
def test_every_base_round_trips(base: str) -> None:
    """A CIDv1 written in any supported base parses back to the same CID."""
    cid = CID.from_data(b"carmigrate", codec="dag-cbor")

    assert CID.decode(cid.encode(base)) == cid


@given(cid_values())
def test_binary_and_string_forms_agree_with_multiformats(cid: CID) -> None:
    """Our binary and base32 forms equal those of the multiformats package."""
    m = MCID.decode(bytes(cid))

    assert bytes(m) == bytes(cid)
    assert m.encode("base32") == str(cid)
    assert CID.decode(str(cid)) == cid
    assert as_cid(m) == cid
    assert bytes(cid.to_multiformats()) == bytes(cid)  # type: ignore[call-overload]


@given(cid_values(known=False), st.binary(max_size=8))
def test_read_inside_a_buffer_reports_the_end(cid: CID, tail: bytes) -> None:
    """CID.read parses a CID embedded in a larger buffer and says where it ends."""
    buf = b"\xff\xff" + bytes(cid) + tail

    parsed, end = CID.read(buf, 2)

    assert parsed == cid
    assert end == 2 + len(bytes(cid))


@given(cid_values())
def test_accessors(cid: CID) -> None:
    """codec, hash_code, digest and multihash read back what was encoded."""
    m = MCID.decode(bytes(cid))

    assert cid.codec == m.codec.code
    assert cid.hash_code == m.hashfun.code
    assert cid.digest == m.raw_digest
    assert Multihash.from_bytes(cid.multihash_bytes) == cid.multihash


@given(cid_values(known=False))
def test_accessors_with_long_varints(cid: CID) -> None:
    """Codes needing multi-byte varints survive the binary and string forms."""
    again = CID.decode(str(cid))

    assert again == cid
    assert (again.codec, again.hash_code, again.digest) == (
        cid.codec,
        cid.hash_code,
        cid.digest,
    )


@given(st.binary(max_size=40))
def test_truncated_or_garbage_binary_raises_format_error(data: bytes) -> None:
    """Arbitrary bytes either parse as a CID or raise FormatError, nothing else."""
    try:
        cid = CID.from_bytes(data)
    except FormatError:
        return
    assert bytes(cid) == data


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "end of data"),
        (b"\x02\x55\x12\x20", "version"),
        (b"\x01\x55\x12\x20abc", "declares a 32-byte digest"),
        (b"\x12\x20abc", "CIDv0"),
        (b"\x01\x55\x12\x01a!", "trailing"),
        (b"\x01\x80\x00\x12\x00", "not minimally encoded"),
    ],
)
def test_malformed_binary_messages(data: bytes, fragment: str) -> None:
    """Malformed CIDs raise FormatError saying what was wrong."""
    with pytest.raises(FormatError, match=fragment):
        CID.from_bytes(data)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "x123",
        "bafy!!",
        "Qm" + "0" * 44,
        "zQmXoypizjW3WknFiJnKLwHCnL72vedxjQkDDP1mXWo6uco",
    ],
)
def test_malformed_strings(text: str) -> None:
    """Malformed or non-canonical CID strings raise FormatError."""
    with pytest.raises(FormatError):
        CID.decode(text)


def test_equality_hashing_ordering() -> None:
    """CIDs are values: equal by bytes, usable in sets, sorted by bytes, frozen."""
    a = CID.from_data(b"a")
    b = CID.from_data(b"b")

    assert a == CID.decode(str(a))
    assert len({a, CID.decode(str(a)), b}) == 2
    assert sorted([b, a]) == sorted([a, b])
    assert (a < b) == (bytes(a) < bytes(b))
    assert a != bytes(a)
    with pytest.raises(AttributeError):
        a._buf = b""  # type: ignore[misc]


@pytest.mark.parametrize(
    ("name", "fn"),
    [
        ("sha2-256", lambda d: hashlib.sha256(d).digest()),
        ("sha2-512", lambda d: hashlib.sha512(d).digest()),
        ("blake2b-256", lambda d: hashlib.blake2b(d, digest_size=32).digest()),
        ("identity", bytes),
    ],
)
def test_verify_supported_hashes(name: str, fn: object) -> None:
    """from_data uses the named hash; verify accepts the data, rejects other data."""
    cid = CID.from_data(b"payload", hash=name)

    assert cid.digest == fn(b"payload")  # type: ignore[operator]
    assert cid.verify(b"payload")
    assert not cid.verify(b"payloaD")
    assert cid.check(b"payload") is HashCheck.VERIFIED
    assert cid.check(b"other") is HashCheck.MISMATCH


def test_unsupported_hash_is_never_verified() -> None:
    """An unsupported hash function raises on verify and is UNVERIFIABLE on check."""
    cid = CID.create(1, "raw", Multihash(0x1012, b"\0" * 32))

    assert cid.check(b"anything") is HashCheck.UNVERIFIABLE
    with pytest.raises(UnsupportedHash, match="not supported"):
        cid.verify(b"anything")


def test_create_rejects_impossible_v0_and_versions() -> None:
    """CIDv0 must be dag-pb/sha2-256/32 bytes; only versions 0 and 1 exist."""
    mh = Multihash(0x12, b"\0" * 32)
    with pytest.raises(ValueError, match="CIDv0"):
        CID.create(0, "raw", mh)
    with pytest.raises(ValueError, match="version"):
        CID.create(2, "raw", mh)
    with pytest.raises(ValueError, match="unknown codec"):
        CID.create(1, "no-such-codec", mh)


def test_as_cid_rejects_other_types() -> None:
    """as_cid names the type it cannot use."""
    with pytest.raises(TypeError, match="int"):
        as_cid(42)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=(1 << 63) - 1))
def test_varint_round_trip(n: int) -> None:
    """Every 63-bit value round-trips and the encoding is minimal."""
    enc = encode_varint(n)

    assert decode_varint(enc) == (n, len(enc))
    assert enc[-1] != 0 or n == 0


def test_varint_limits() -> None:
    """Varints past 9 bytes, cut short or non-minimal are rejected."""
    with pytest.raises(FormatError, match="longer than 9"):
        decode_varint(b"\xff" * 10)
    with pytest.raises(FormatError, match="cut short"):
        decode_varint(b"\xff\xff")
    with pytest.raises(FormatError, match="minimal"):
        decode_varint(b"\x81\x00")
    with pytest.raises(ValueError, match="outside"):
        encode_varint(-1)


@given(
    st.binary(max_size=64),
    st.sampled_from(["base32", "base58btc", "base36", "base16", "base64"]),
)
def test_multibase_round_trip(data: bytes, base: str) -> None:
    """multibase_encode and multibase_decode are inverses, leading zeros kept."""
    assert multibase_decode(multibase_encode(data, base)) == (base, data)


def test_multibase_errors() -> None:
    """Unknown prefixes, bad characters and mixed case are FormatErrors."""
    for text in ["?abc", "z0OIl", "bAbC", "kABC"]:
        with pytest.raises(FormatError):
            multibase_decode(text)
    with pytest.raises(ValueError, match="unsupported multibase"):
        multibase_encode(b"x", "base2")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda s: s[:10] + " " + s[10:],  # whitespace
        lambda s: s + "=",  # padding
        lambda s: s[:5] + "!" + s[5:],  # outside the alphabet
        lambda s: s + " ",
    ],
)
@pytest.mark.parametrize(
    "base", ["base32", "base16", "base64", "base64url", "base58btc", "base36"]
)
def test_non_canonical_strings_are_refused(base: str, mutate: object) -> None:
    """Each CID has one spelling per base: junk, padding and spaces are refused."""
    text = CID.from_data(b"canonical").encode(base)

    with pytest.raises(FormatError):
        CID.decode(mutate(text))  # type: ignore[operator]


def test_base32_with_stray_trailing_bits_is_refused() -> None:
    """A base32 string whose unused trailing bits are set is not canonical."""
    text = CID.from_data(b"x").encode()
    last = "abcdefghijklmnopqrstuvwxyz234567"
    bumped = text[:-1] + last[(last.index(text[-1]) + 1) % 32]

    with pytest.raises(FormatError):
        CID.decode(bumped)


def test_overlong_cid_strings_are_refused_quickly() -> None:
    """Strings past MAX_CID_STRING are refused before any quadratic decoding."""
    from carmigrate.cid import MAX_CID_STRING

    with pytest.raises(FormatError, match="longer than"):
        CID.decode("z" + "2" * (MAX_CID_STRING + 1))


def _stdlib_base32(body: str) -> bytes | None:
    """The reference: the standard library's decoder, then a re-encode check."""
    import base64
    import binascii

    try:
        data = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
    except (binascii.Error, ValueError):
        return None
    if base64.b32encode(data).decode().rstrip("=").lower() != body:
        return None
    return data


@given(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz234567", max_size=80)
    | st.text(alphabet="abcz27AZ0189=_ -\n", max_size=12)
)
def test_base32_accepts_exactly_the_canonical_texts(body: str) -> None:
    """The fast base32 decoder accepts what decode-then-re-encode accepts, no more."""
    from carmigrate.cid import multibase_decode

    expected = _stdlib_base32(body)
    if expected is None:
        with pytest.raises(FormatError):
            multibase_decode("b" + body)
    else:
        assert multibase_decode("b" + body) == ("base32", expected)
