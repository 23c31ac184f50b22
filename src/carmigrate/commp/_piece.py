"""PieceInfo and PieceCIDs v1 (``baga…``) and v2 (FRC-0069, ``bafkzcib…``).

Spec §5 and §6. Layouts::

    v1: 0x01 | uvarint(0xf101) fil-commitment-unsealed
             | uvarint(0x1012) sha2-256-trunc254-padded | 0x20 | root
    v2: 0x01 | 0x55 raw
             | uvarint(0x1011) fr32-sha256-trunc254-padbintree | uvarint(len)
             | uvarint(padding) | height (1 byte) | root

A v1 CID carries no size; a v2 CID carries the tree height and the padding,
so the payload size too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, SupportsIndex

import attrs

from carmigrate import _html
from carmigrate.cid import CID, Multihash, as_cid, codec_name, hash_name
from carmigrate.cid.lowlevel import decode_varint, encode_varint
from carmigrate.commp._sizes import (
    MAX_HEIGHT,
    MIN_HEIGHT,
    QUAD,
    PaddedPieceSize,
    PayloadSize,
    UnpaddedPieceSize,
    as_int,
)
from carmigrate.errors import FormatError, PieceError

if TYPE_CHECKING:
    from carmigrate.cid import CIDLike

__all__ = ["PieceInfo", "to_piece_cid_v1", "to_piece_cid_v2"]

FIL_COMMITMENT_UNSEALED: Final = 0xF101
SHA2_256_TRUNC254_PADDED: Final = 0x1012
RAW: Final = 0x55
FR32_SHA256_TRUNC254_PADBINTREE: Final = 0x1011


def _check_root(root: bytes) -> bytes:
    if len(root) != 32:
        msg = f"a piece root is 32 bytes, got {len(root)}"
        raise PieceError(msg)
    if root[31] & 0xC0:
        msg = (
            f"piece root {root.hex()} is not a sha2-256-trunc254 digest: "
            "the top two bits of its last byte are set"
        )
        raise PieceError(msg)
    return root


def _to_root(value: object) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        msg = f"a piece root must be bytes, got {type(value).__name__}"
        raise PieceError(msg)
    return _check_root(bytes(value))


def _to_payload(value: SupportsIndex | None) -> PayloadSize | None:
    return None if value is None else PayloadSize(value)


def _v1(root: bytes) -> CID:
    return CID.create(
        1, FIL_COMMITMENT_UNSEALED, Multihash(SHA2_256_TRUNC254_PADDED, root)
    )


def _v2(root: bytes, height: int, padding: int) -> CID:
    digest = encode_varint(padding) + bytes((height,)) + root
    return CID.create(1, RAW, Multihash(FR32_SHA256_TRUNC254_PADBINTREE, digest))


@attrs.frozen
class _Parsed:
    version: int
    root: bytes
    height: int | None = None
    padding: int | None = None


def _parse(value: CIDLike) -> _Parsed:
    """Decode a v1 or v2 PieceCID, checking everything (spec §5, §6)."""
    try:
        cid = as_cid(value)
    except FormatError as exc:
        msg = f"{value!r} is not a CID: {exc}"
        raise PieceError(msg) from exc
    if cid.version != 1:
        msg = f"{cid} is a CIDv0; a PieceCID is a CIDv1"
        raise PieceError(msg)
    codec, code, digest = cid.codec, cid.hash_code, cid.digest
    if codec == FIL_COMMITMENT_UNSEALED:
        if code != SHA2_256_TRUNC254_PADDED:
            msg = (
                f"{cid} is not a v1 PieceCID: codec fil-commitment-unsealed needs "
                f"multihash sha2-256-trunc254-padded (0x1012), found "
                f"{hash_name(code)} (0x{code:x})"
            )
            raise PieceError(msg)
        if len(digest) != 32:
            msg = f"{cid} is not a v1 PieceCID: its digest has {len(digest)} bytes, not 32"
            raise PieceError(msg)
        return _Parsed(1, _check_root(digest))
    if codec == RAW:
        if code != FR32_SHA256_TRUNC254_PADBINTREE:
            msg = (
                f"{cid} is not a v2 PieceCID: a raw CID needs multihash "
                f"fr32-sha256-trunc254-padbintree (0x1011), found "
                f"{hash_name(code)} (0x{code:x})"
            )
            raise PieceError(msg)
        try:
            padding, pos = decode_varint(digest, 0)
        except FormatError as exc:
            msg = f"{cid} is not a v2 PieceCID: bad padding varint: {exc}"
            raise PieceError(msg) from exc
        if len(digest) != pos + 33:
            msg = (
                f"{cid} is not a v2 PieceCID: its digest has {len(digest)} bytes; "
                f"uvarint(padding) + height + root need {pos + 33}"
            )
            raise PieceError(msg)
        height = digest[pos]
        if not MIN_HEIGHT <= height <= MAX_HEIGHT:
            msg = (
                f"{cid} is not a v2 PieceCID carmigrate accepts: tree height "
                f"{height} is outside [{MIN_HEIGHT}, {MAX_HEIGHT}]"
            )
            raise PieceError(msg)
        room = QUAD << (height - MIN_HEIGHT)
        if padding > room:
            msg = (
                f"{cid} is not a valid v2 PieceCID: padding {padding} is larger "
                f"than the {room}-byte unpadded size of a height-{height} tree"
            )
            raise PieceError(msg)
        return _Parsed(2, _check_root(digest[pos + 1 :]), height, padding)
    msg = (
        f"{cid} is not a PieceCID: codec {codec_name(codec)} (0x{codec:x}); expected "
        "fil-commitment-unsealed (0xf101, v1) or raw (0x55, v2)"
    )
    raise PieceError(msg)


@attrs.frozen
class PieceInfo:
    """A piece: its commitment (commP), padded size and, if known, payload size.

    The value Filecoin pairs with a PieceCID (``PieceInfo{Size, PieceCID}``)
    plus the payload size that the v2 CID needs. Frozen and hashable.

    Construct it as ``PieceInfo(root, padded_size, payload_size=None)``;
    the sizes are converted to their types.

    Attributes:
        root: The 32-byte commitment; the top two bits of its last byte are
            clear.
        padded_size: The padded piece size (a power of two >= 128).
        payload_size: The payload size when known (from hashing or from a v2
            CID); ``None`` when the piece came from a v1 CID and a size.

    Raises:
        PieceError: On construction, if the root is not 32 bytes or not a
            trunc254 digest, the padded size is invalid, or the payload does
            not fit.
    """

    root: bytes = attrs.field(converter=_to_root)
    padded_size: PaddedPieceSize = attrs.field(converter=PaddedPieceSize)
    payload_size: PayloadSize | None = attrs.field(default=None, converter=_to_payload)

    @payload_size.validator
    def _check_payload(self, _: object, value: PayloadSize | None) -> None:
        if value is not None and value > self.unpadded_size:
            msg = (
                f"a payload of {value} bytes does not fit in a piece of padded "
                f"size {self.padded_size} ({self.unpadded_size} unpadded bytes)"
            )
            raise PieceError(msg)

    @property
    def height(self) -> int:
        """The tree height ``log2(padded_size / 32)``."""
        return self.padded_size.height

    @property
    def unpadded_size(self) -> UnpaddedPieceSize:
        """The unpadded piece size ``padded_size·127/128``."""
        return self.padded_size.unpadded()

    @property
    def padding(self) -> int | None:
        """Zero bytes appended to the payload (``unpadded_size - payload_size``).

        ``None`` when the payload size is unknown.
        """
        if self.payload_size is None:
            return None
        return int(self.unpadded_size) - int(self.payload_size)

    @property
    def cid_v1(self) -> CID:
        """The v1 PieceCID (``baga6ea4seaq…``): the root only, no size."""
        return _v1(self.root)

    @property
    def cid_v2(self) -> CID:
        """The v2 PieceCID (FRC-0069, ``bafkzcib…``): padding, height, root.

        Raises:
            PieceError: If the payload size (and so the padding) is unknown.
                Use [to_piece_cid_v2][carmigrate.commp.to_piece_cid_v2] with
                an explicit ``padding=0`` if that is what you mean.
        """
        padding = self.padding
        if padding is None:
            msg = (
                "the v2 PieceCID needs the padding, and this piece's payload size "
                "is unknown (it came from a v1 PieceCID and a size); pass "
                "padding=0 to to_piece_cid_v2() if the piece is full"
            )
            raise PieceError(msg)
        return _v2(self.root, self.height, padding)

    def _repr_html_(self) -> str:
        """Jupyter's view: the PieceCIDs (never the raw root), sizes and height."""
        h = _html
        v2: object
        if self.payload_size is None:
            v2 = "unknown (the payload size, so the padding, is not known)"
        else:
            v2 = h.code(self.cid_v2)
        pairs: list[tuple[str, object]] = [
            ("PieceCID v1", h.code(self.cid_v1)),
            ("PieceCID v2", v2),
            ("padded size", h.nbytes(self.padded_size)),
            ("unpadded size", h.nbytes(self.unpadded_size)),
            (
                "payload",
                "unknown" if self.payload_size is None else h.nbytes(self.payload_size),
            ),
            ("padding", "unknown" if self.padding is None else h.nbytes(self.padding)),
            ("tree height", self.height),
        ]
        return h.block(h.Markup(f"<b>Piece</b> {h.code(self.cid_v1)}"), h.facts(pairs))

    @classmethod
    def from_cid(
        cls, cid: CIDLike, padded_size: SupportsIndex | None = None
    ) -> PieceInfo:
        """Describe the piece a PieceCID names.

        Args:
            cid: A v1 or v2 PieceCID (string, bytes, CID or multiformats CID).
            padded_size: Required for a v1 CID, which carries no size; for a
                v2 CID optional and checked against the CID's height.

        Returns:
            For v2, root, padded size and payload size; for v1, root and
            ``padded_size`` with ``payload_size=None``.

        Raises:
            PieceError: If ``cid`` is not a well-formed PieceCID (wrong codec
                or multihash, truncated digest, height out of range, padding
                larger than the tree), a v1 CID comes without a size, or the
                size disagrees with a v2 CID.
        """
        parsed = _parse(cid)
        if parsed.version == 1:
            if padded_size is None:
                msg = f"{_v1(parsed.root)} is a v1 PieceCID, which carries no size; pass padded_size"
                raise PieceError(msg)
            return cls(parsed.root, PaddedPieceSize(padded_size))
        assert parsed.height is not None
        assert parsed.padding is not None
        size = PaddedPieceSize.from_height(parsed.height)
        if padded_size is not None and PaddedPieceSize(padded_size) != size:
            msg = (
                f"{_v2(parsed.root, parsed.height, parsed.padding)} has padded size "
                f"{size}, not {int(padded_size)}"
            )
            raise PieceError(msg)
        payload = (QUAD << (parsed.height - MIN_HEIGHT)) - parsed.padding
        return cls(parsed.root, size, payload)


def to_piece_cid_v1(cid: CIDLike) -> CID:
    """The v1 PieceCID of a v1 or v2 PieceCID (spec §6: keep the root only).

    Raises:
        PieceError: If ``cid`` is not a well-formed PieceCID.
    """
    return _v1(_parse(cid).root)


def to_piece_cid_v2(
    cid: CIDLike,
    padded_size: SupportsIndex | None = None,
    *,
    padding: SupportsIndex | None = None,
) -> CID:
    """The v2 PieceCID of a v1 or v2 PieceCID.

    A v2 CID is returned unchanged (after validation; ``padded_size`` and
    ``padding``, if given, must agree with it). A v1 CID has neither size nor
    padding, so both must be given. The padding is the number of zero bytes
    the payload was padded with; if it is unknown, ``padding=0`` describes
    the piece as full, which is right for aggregates but gives a different v2
    CID than hashing the payload would whenever the payload did not fill the
    piece (spec §6: compare pieces by root and height, never by v2 string).

    Args:
        cid: A v1 or v2 PieceCID.
        padded_size: The padded piece size (required for v1).
        padding: The payload padding in bytes (required for v1; 0 for a full
            piece or an aggregate).

    Raises:
        PieceError: If ``cid`` is malformed, a v1 CID comes without
            ``padded_size`` or ``padding``, the padding exceeds the unpadded
            size, or the arguments disagree with a v2 CID.
    """
    parsed = _parse(cid)
    if parsed.version == 2:
        assert parsed.height is not None
        assert parsed.padding is not None
        info = PieceInfo.from_cid(cid, padded_size)
        if padding is not None and int(padding) != parsed.padding:
            msg = f"{info.cid_v2} has padding {parsed.padding}, not {int(padding)}"
            raise PieceError(msg)
        return info.cid_v2
    if padded_size is None:
        msg = (
            f"{_v1(parsed.root)} is a v1 PieceCID, which carries no size; "
            "pass padded_size (and padding) to build a v2 PieceCID"
        )
        raise PieceError(msg)
    if padding is None:
        msg = (
            f"{_v1(parsed.root)} is a v1 PieceCID, which does not record the "
            "payload's padding, so its v2 PieceCID is unknown; pass padding= the "
            "number of zero bytes appended to the payload, or padding=0 "
            "explicitly for a full piece or an aggregate"
        )
        raise PieceError(msg)
    size = PaddedPieceSize(padded_size)
    pad = as_int(padding, "padding")
    room = int(size.unpadded())
    if not 0 <= pad <= room:
        msg = f"padding {pad} is outside [0, {room}], the unpadded size of the piece"
        raise PieceError(msg)
    return PieceInfo(parsed.root, size, room - pad).cid_v2
