"""CAR headers: the CARv1 DAG-CBOR header, the CARv2 pragma and fixed header.

See: https://ipld.io/specs/transport/car/carv1/#header and
https://ipld.io/specs/transport/car/carv2/#header
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Final

import attrs

from carmigrate.cid import CID, CIDLike, as_cid, encode_dag_cbor
from carmigrate.cid.lowlevel import encode_varint
from carmigrate.errors import CarFormatError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "PRAGMA",
    "V2_HEADER_SIZE",
    "CarHeader",
    "CarV2Header",
    "Characteristics",
    "encode_v1_header",
]

PRAGMA: Final = b"\x0a\xa1\x67version\x02"
"""The fixed 11 bytes that open every CARv2: a length prefix of 10 and the
DAG-CBOR map ``{"version": 2}``, which CARv1 readers see as a header of an
unsupported version (CARv2 spec, "Pragma")."""

V2_HEADER_SIZE: Final = 40
"""Size of the fixed CARv2 header that follows the pragma: 16 bytes of
characteristics and three little-endian uint64 (data offset, data size, index
offset)."""

_FULLY_INDEXED: Final = 1 << 7
_U64: Final = (1 << 64) - 1
_HEADER = struct.Struct("<QQQQQ")


def _u64(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _U64:
        msg = f"{attribute.name} must be an integer in [0, 2**64), got {value!r}"
        raise ValueError(msg)


@attrs.frozen
class Characteristics:
    """The 128-bit characteristics field of a CARv2 header.

    Stored as two little-endian uint64 words, ``hi`` first, as go-car does. The
    only bit defined so far is *fully-indexed* (the left-most bit of the field,
    bit 7 of ``hi``): the index also lists identity-hash CIDs. Unknown bits
    are kept as read.

    Attributes:
        hi: The first 8 bytes, as a little-endian integer.
        lo: The last 8 bytes, as a little-endian integer.
    """

    hi: int = attrs.field(default=0, validator=_u64)
    lo: int = attrs.field(default=0, validator=_u64)

    @property
    def fully_indexed(self) -> bool:
        """Whether the index lists every section, identity CIDs included."""
        return bool(self.hi & _FULLY_INDEXED)

    def with_fully_indexed(self, value: bool) -> Characteristics:
        """A copy with the fully-indexed bit set to ``value``."""
        hi = self.hi | _FULLY_INDEXED if value else self.hi & ~_FULLY_INDEXED
        return Characteristics(hi, self.lo)


@attrs.frozen
class CarV2Header:
    """The fixed 40-byte CARv2 header that follows the pragma.

    Offsets are from the start of the CARv2 file. This class only holds and
    encodes the values; [decode][carmigrate.car.CarV2Header.decode] checks
    them.

    Attributes:
        data_offset: Where the inner CARv1 payload starts (at least 51).
        data_size: Length of the inner CARv1 payload in bytes (at least 1).
        index_offset: Where the index starts, or 0 when there is none.
        characteristics: The characteristics bit field.
    """

    data_offset: int = attrs.field(validator=_u64)
    data_size: int = attrs.field(validator=_u64)
    index_offset: int = attrs.field(default=0, validator=_u64)
    characteristics: Characteristics = attrs.field(factory=Characteristics)

    @property
    def has_index(self) -> bool:
        """Whether an index follows the data (``index_offset`` is not 0)."""
        return self.index_offset != 0

    @property
    def data_end(self) -> int:
        """Offset just past the inner CARv1 payload."""
        return self.data_offset + self.data_size

    def encode(self) -> bytes:
        """The 40 bytes of this header."""
        c = self.characteristics
        return _HEADER.pack(
            c.hi, c.lo, self.data_offset, self.data_size, self.index_offset
        )

    @classmethod
    def decode(
        cls, data: bytes | bytearray | memoryview, *, offset: int = len(PRAGMA)
    ) -> CarV2Header:
        """Parse and check the 40-byte CARv2 header.

        Args:
            data: Exactly 40 bytes.
            offset: Where ``data`` sits in the file (for error offsets).

        Raises:
            CarFormatError: If ``data`` is not 40 bytes, the data offset is
                inside the pragma and header, the data size is 0, or the
                index offset points inside the data payload. The offset named
                is that of the bad field.
        """
        if len(data) != V2_HEADER_SIZE:
            msg = f"expected the {V2_HEADER_SIZE}-byte CARv2 header, found {len(data)} bytes"
            raise CarFormatError(msg, offset=offset)
        hi, lo, data_offset, data_size, index_offset = _HEADER.unpack(data)
        first = len(PRAGMA) + V2_HEADER_SIZE
        if data_offset < first:
            msg = f"CARv2 data offset {data_offset} points inside the pragma and header (minimum {first})"
            raise CarFormatError(msg, offset=offset + 16)
        if data_size == 0:
            msg = "CARv2 data size is 0; the payload must hold at least a CARv1 header"
            raise CarFormatError(msg, offset=offset + 24)
        if index_offset and index_offset < data_offset + data_size:
            msg = (
                f"CARv2 index offset {index_offset} points inside the data payload "
                f"[{data_offset}, {data_offset + data_size})"
            )
            raise CarFormatError(msg, offset=offset + 32)
        return cls(data_offset, data_size, index_offset, Characteristics(hi, lo))


def _cid_tuple(roots: Iterable[CID]) -> tuple[CID, ...]:
    return tuple(roots)


@attrs.frozen
class CarHeader:
    """What a CAR declares about itself before its first block.

    Attributes:
        version: 1 or 2.
        roots: The root CIDs from the CARv1 header (the inner one in a
            CARv2). May be empty.
        v2: The CARv2 header, for version 2; ``None`` for version 1.
    """

    version: int
    roots: tuple[CID, ...] = attrs.field(converter=_cid_tuple)
    v2: CarV2Header | None = None

    @property
    def data_offset(self) -> int:
        """Where the CARv1 payload starts: 0 for a CARv1, the header's data offset for a CARv2.

        Index offsets are relative to this position.
        """
        return 0 if self.v2 is None else self.v2.data_offset


def encode_v1_header(roots: Iterable[CIDLike]) -> bytes:
    """The CARv1 header section (length prefix and DAG-CBOR) for ``roots``."""
    body = encode_dag_cbor({"roots": [as_cid(r) for r in roots], "version": 1})
    return encode_varint(len(body)) + body
