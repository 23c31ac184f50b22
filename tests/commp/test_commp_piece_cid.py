"""PieceInfo and PieceCID v1/v2 encoding, decoding and conversion (spec §5-§6)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carmigrate.cid import CID, Multihash
from carmigrate.cid.lowlevel import encode_varint
from carmigrate.commp import (
    MAX_HEIGHT,
    MIN_HEIGHT,
    PaddedPieceSize,
    PieceInfo,
    to_piece_cid_v1,
    to_piece_cid_v2,
)
from carmigrate.errors import PieceError

# FRC-0069's example: 0x00*127, 0x01*127, 0x02*127, 0x03*127
FRC_V1 = "baga6ea4seaqes3nobte6ezpp4wqan2age2s5yxcatzotcvobhgcmv5wi2xh5mbi"
FRC_V2 = "bafkzcibcaaces3nobte6ezpp4wqan2age2s5yxcatzotcvobhgcmv5wi2xh5mbi"
ZERO_128_V1 = "baga6ea4seaqdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veigmy"

roots = st.binary(min_size=32, max_size=32).map(
    lambda b: b[:31] + bytes([b[31] & 0x3F])
)


@st.composite
def pieces(draw: st.DrawFn) -> PieceInfo:
    h = draw(st.integers(MIN_HEIGHT, MAX_HEIGHT))
    room = 127 << (h - 2)
    low = 0 if h == MIN_HEIGHT else room // 2 + 1
    n = draw(st.one_of(st.integers(low, room), st.sampled_from([low, room])))
    return PieceInfo(draw(roots), PaddedPieceSize.from_height(h), n)


def _v2(padding: int, height: int, root: bytes) -> CID:
    digest = encode_varint(padding) + bytes([height]) + root
    return CID.create(1, "raw", Multihash(0x1011, digest))


def test_frc0069_example() -> None:
    from carmigrate.commp import commp

    data = b"".join(bytes([i]) * 127 for i in range(4))
    info = commp(data)
    assert str(info.cid_v1) == FRC_V1
    assert str(info.cid_v2) == FRC_V2
    assert info.cid_v1.encode().startswith("baga6ea4seaq")
    assert info.cid_v2.encode().startswith("bafkzcib")


@given(pieces())
def test_v2_round_trip(info: PieceInfo) -> None:
    again = PieceInfo.from_cid(info.cid_v2)
    assert again == info
    assert PieceInfo.from_cid(str(info.cid_v2)) == info
    assert PieceInfo.from_cid(bytes(info.cid_v2)) == info
    assert str(info.cid_v2).startswith("bafkzcib")


@given(pieces())
def test_v1_v2_conversions(info: PieceInfo) -> None:
    v1 = to_piece_cid_v1(info.cid_v2)
    assert v1 == info.cid_v1
    assert to_piece_cid_v1(v1) == v1
    assert to_piece_cid_v2(v1, info.padded_size, padding=info.padding) == info.cid_v2
    assert to_piece_cid_v2(info.cid_v2) == info.cid_v2
    from_v1 = PieceInfo.from_cid(v1, info.padded_size)
    assert from_v1.root == info.root
    assert from_v1.padded_size == info.padded_size
    assert from_v1.payload_size is None
    assert from_v1.padding is None


def test_accepts_every_cid_like() -> None:
    import multiformats

    for value in (FRC_V2, CID.decode(FRC_V2), bytes(CID.decode(FRC_V2))):
        info = PieceInfo.from_cid(value)
        assert info.payload_size == 508
        assert str(to_piece_cid_v1(value)) == FRC_V1
    # multiformats 0.3.1 knows the v1 codes but not the v2 multihash (0x1011)
    mf = multiformats.CID.decode(FRC_V1)
    assert PieceInfo.from_cid(mf, 512).root == PieceInfo.from_cid(FRC_V2).root
    assert str(to_piece_cid_v1(mf)) == FRC_V1
    assert str(to_piece_cid_v2(mf, 512, padding=0)) == FRC_V2


def test_v1_needs_size_and_padding() -> None:
    with pytest.raises(PieceError, match="carries no size"):
        PieceInfo.from_cid(FRC_V1)
    with pytest.raises(PieceError, match="carries no size"):
        to_piece_cid_v2(FRC_V1)
    with pytest.raises(PieceError, match="padding=0"):
        to_piece_cid_v2(FRC_V1, 512)
    info = PieceInfo.from_cid(FRC_V1, 512)
    with pytest.raises(PieceError, match="padding=0"):
        _ = info.cid_v2
    assert str(to_piece_cid_v2(FRC_V1, 512, padding=0)) == FRC_V2


def test_v2_arguments_must_agree() -> None:
    with pytest.raises(PieceError, match="padded size 512, not 1024"):
        PieceInfo.from_cid(FRC_V2, 1024)
    assert PieceInfo.from_cid(FRC_V2, 512).padded_size == 512
    with pytest.raises(PieceError, match="has padding 0, not 5"):
        to_piece_cid_v2(FRC_V2, padding=5)
    with pytest.raises(PieceError, match="outside"):
        to_piece_cid_v2(FRC_V1, 512, padding=509)
    with pytest.raises(PieceError, match="outside"):
        to_piece_cid_v2(FRC_V1, 512, padding=-1)
    with pytest.raises(PieceError, match="padded piece size"):
        to_piece_cid_v2(FRC_V1, 500, padding=0)


def test_v1_plus_size_differs_from_hashed_v2() -> None:
    """Spec §6: padding 0 is a different v2 CID from the payload's own."""
    info = PieceInfo.from_cid(
        "bafkzcibcp4bdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veigmy"
    )
    assert info.payload_size == 0
    assert info.padding == 127
    assert str(info.cid_v1) == ZERO_128_V1
    full = to_piece_cid_v2(info.cid_v1, 128, padding=0)
    assert full != info.cid_v2
    assert PieceInfo.from_cid(full).root == info.root


ROOT = bytes(range(31)) + b"\x3f"


@pytest.mark.parametrize(
    ("cid", "message"),
    [
        (CID.create(1, "dag-pb", Multihash(0x1012, ROOT)), "codec dag-pb"),
        (CID.create(1, "dag-cbor", Multihash(0x1011, ROOT)), "codec dag-cbor"),
        (
            CID.create(1, "fil-commitment-sealed", Multihash(0x1012, ROOT)),
            "not a PieceCID",
        ),
        (CID.create(1, "fil-commitment-unsealed", Multihash(0x12, ROOT)), "sha2-256 "),
        (
            CID.create(1, "fil-commitment-unsealed", Multihash(0x1011, ROOT)),
            "needs multihash sha2-256-trunc254-padded",
        ),
        (CID.create(1, "raw", Multihash(0x12, ROOT)), "needs multihash fr32"),
        (CID.create(1, "raw", Multihash(0x1012, ROOT)), "needs multihash fr32"),
        (
            CID.create(1, "fil-commitment-unsealed", Multihash(0x1012, ROOT[:31])),
            "31 bytes, not 32",
        ),
        (
            CID.create(1, "fil-commitment-unsealed", Multihash(0x1012, ROOT + b"\0")),
            "33 bytes, not 32",
        ),
        (
            CID.create(
                1, "fil-commitment-unsealed", Multihash(0x1012, ROOT[:31] + b"\x40")
            ),
            "top two bits",
        ),
        (
            CID.create(1, "raw", Multihash(0x1011, b"\x00\x02" + ROOT[:31])),
            "need 34",
        ),
        (
            CID.create(1, "raw", Multihash(0x1011, b"\x00\x02" + ROOT + b"\0")),
            "need 34",
        ),
        (CID.create(1, "raw", Multihash(0x1011, b"")), "bad padding varint"),
        (CID.create(1, "raw", Multihash(0x1011, b"\x80")), "bad padding varint"),
        (_v2(0, 1, ROOT), "height 1 is outside"),
        (_v2(0, 0, ROOT), "height 0 is outside"),
        (_v2(0, MAX_HEIGHT + 1, ROOT), f"height {MAX_HEIGHT + 1} is outside"),
        (_v2(0, 255, ROOT), "height 255 is outside"),
        (_v2(128, 2, ROOT), "padding 128 is larger than the 127-byte"),
        (_v2(127 * 4 + 1, 4, ROOT), "padding 509 is larger than the 508-byte"),
        (_v2(0, 4, ROOT[:31] + b"\xff"), "top two bits"),
        (CID.decode("QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n"), "CIDv0"),
    ],
)
def test_malformed_piece_cids(cid: CID, message: str) -> None:
    for value in (cid, str(cid), bytes(cid)):
        with pytest.raises(PieceError, match=message):
            PieceInfo.from_cid(value, 512)
        with pytest.raises(PieceError, match=message):
            to_piece_cid_v1(value)


@pytest.mark.parametrize("text", ["", "not a cid", "bafkzcib", FRC_V2[:-4]])
def test_unparseable_cids(text: str) -> None:
    with pytest.raises(PieceError, match="is not a CID"):
        PieceInfo.from_cid(text)


def test_padding_equal_to_room_is_only_for_empty_payload() -> None:
    assert PieceInfo.from_cid(_v2(127, 2, ROOT)).payload_size == 0
    assert PieceInfo.from_cid(_v2(508, 4, ROOT)).payload_size == 0


def test_piece_info_validation() -> None:
    with pytest.raises(PieceError, match="32 bytes"):
        PieceInfo(b"\0" * 31, 128)
    with pytest.raises(PieceError, match="must be bytes"):
        PieceInfo(32, 128)  # type: ignore[arg-type]
    with pytest.raises(PieceError, match="top two bits"):
        PieceInfo(b"\0" * 31 + b"\x80", 128)
    with pytest.raises(PieceError, match="padded piece size"):
        PieceInfo(ROOT, 100)
    with pytest.raises(PieceError, match="does not fit"):
        PieceInfo(ROOT, 128, 128)
    with pytest.raises(PieceError, match="negative"):
        PieceInfo(ROOT, 128, -1)
    info = PieceInfo(bytearray(ROOT), 1024, 600)
    assert info.root == ROOT
    assert type(info.padded_size) is PaddedPieceSize
    assert info.unpadded_size == 1016
    assert info.padding == 416
    assert info.height == 5
    assert hash(info) == hash(PieceInfo(ROOT, 1024, 600))
    with pytest.raises(AttributeError):
        info.root = b""  # type: ignore[misc]
