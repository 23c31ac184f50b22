"""The three sizes of a piece, as distinct validated ``int`` types (spec §0-§1).

- payload size ``n``: the bytes of the input (a CAR file);
- unpadded piece size ``U = 127·Q``: the payload plus trailing zeros;
- padded piece size ``P = 128·Q = 32·2**h``: after fr32 expansion.

``Q``, the number of 127-byte quads, is a power of two. The names follow
Filecoin's Go types (``UnpaddedPieceSize``, ``PaddedPieceSize``).
"""

from __future__ import annotations

import operator
from typing import Final, SupportsIndex

from carmigrate.errors import PieceError

__all__ = [
    "MAX_HEIGHT",
    "MIN_HEIGHT",
    "PaddedPieceSize",
    "PayloadSize",
    "UnpaddedPieceSize",
]

MIN_HEIGHT: Final = 2
"""Height of the smallest piece: one quad, four leaves, 128 padded bytes."""

MAX_HEIGHT: Final = 58
"""Height of the largest piece carmigrate handles: 2**63 padded bytes.

Filecoin's ``PaddedPieceSize`` is a ``uint64``; 2**63 is its largest power
of two. Real pieces stop at 64 GiB (height 31); the v2 PieceCID could encode
heights up to 255, which carmigrate rejects as out of range.
"""

QUAD: Final = 127
"""Payload bytes per quad."""

PADDED_QUAD: Final = 128
"""fr32-padded bytes per quad (four 32-byte leaves)."""


def as_int(value: SupportsIndex, what: str) -> int:
    """``operator.index(value)``, refusing bools, with a PieceError naming ``what``."""
    if isinstance(value, bool):
        msg = f"{what} must be an integer, got a bool"
        raise PieceError(msg)
    try:
        return operator.index(value)
    except TypeError:
        msg = f"{what} must be an integer, got {type(value).__name__}"
        raise PieceError(msg) from None


def _height_of_quads(quads: int) -> int:
    """Height of the smallest tree holding ``quads`` quads (``quads >= 1``)."""
    return (quads - 1).bit_length() + MIN_HEIGHT


class PaddedPieceSize(int):
    """A padded piece size ``P = 128·2**k``: a power of two of at least 128.

    This is the size deals, aggregates, index entries and ``PieceInfo`` use.
    Construct it from the size in bytes: ``PaddedPieceSize(2048)``.

    Raises:
        PieceError: Unless the value is an integer power of two between 128
            and ``32·2**MAX_HEIGHT``.
    """

    __slots__ = ()

    def __new__(cls, value: SupportsIndex) -> PaddedPieceSize:
        v = as_int(value, "padded piece size")
        if v < PADDED_QUAD or v & (v - 1) or v > 32 << MAX_HEIGHT:
            msg = (
                f"padded piece size {v} is not a power of two between "
                f"{PADDED_QUAD} and 2**{MAX_HEIGHT + 5}"
            )
            raise PieceError(msg)
        return super().__new__(cls, v)

    @classmethod
    def from_height(cls, height: int) -> PaddedPieceSize:
        """The padded size ``32·2**height`` of a tree of the given height.

        Raises:
            PieceError: Unless ``MIN_HEIGHT <= height <= MAX_HEIGHT``.
        """
        h = as_int(height, "tree height")
        if not MIN_HEIGHT <= h <= MAX_HEIGHT:
            msg = f"tree height {h} is outside [{MIN_HEIGHT}, {MAX_HEIGHT}]"
            raise PieceError(msg)
        return cls(32 << h)

    @property
    def height(self) -> int:
        """The tree height ``h = log2(P / 32)`` (levels above the leaves)."""
        return int(self).bit_length() - 6

    @property
    def quads(self) -> int:
        """The number of 127-byte quads ``Q = P / 128``."""
        return int(self) // PADDED_QUAD

    def unpadded(self) -> UnpaddedPieceSize:
        """The unpadded size ``U = P·127/128`` (exact)."""
        return UnpaddedPieceSize(int(self) - int(self) // PADDED_QUAD)

    def __repr__(self) -> str:
        return f"PaddedPieceSize({int(self)})"

    def __str__(self) -> str:
        return int.__repr__(self)


class UnpaddedPieceSize(int):
    """An unpadded piece size ``U = 127·2**k``: the payload room of a piece.

    Construct it from the size in bytes: ``UnpaddedPieceSize(2032)``.

    Raises:
        PieceError: Unless the value is 127 times a power of two, at most
            ``127·2**(MAX_HEIGHT - 2)``.
    """

    __slots__ = ()

    def __new__(cls, value: SupportsIndex) -> UnpaddedPieceSize:
        v = as_int(value, "unpadded piece size")
        q, rem = divmod(v, QUAD)
        if v < QUAD or rem or q & (q - 1) or q > 1 << (MAX_HEIGHT - MIN_HEIGHT):
            msg = (
                f"unpadded piece size {v} is not 127 times a power of two "
                f"(at most 127·2**{MAX_HEIGHT - MIN_HEIGHT})"
            )
            raise PieceError(msg)
        return super().__new__(cls, v)

    @property
    def height(self) -> int:
        """The tree height of the padded piece."""
        return _height_of_quads(int(self) // QUAD)

    @property
    def quads(self) -> int:
        """The number of 127-byte quads ``Q = U / 127``."""
        return int(self) // QUAD

    def padded(self) -> PaddedPieceSize:
        """The padded size ``P = U·128/127`` (exact)."""
        return PaddedPieceSize(int(self) + int(self) // QUAD)

    def __repr__(self) -> str:
        return f"UnpaddedPieceSize({int(self)})"

    def __str__(self) -> str:
        return int.__repr__(self)


class PayloadSize(int):
    """A payload size ``n``: any number of bytes that fits in a piece.

    Every size from 0 up is accepted, as FRC-0069 defines: payloads below
    127 bytes are zero-padded to one quad (see the explanation page for the
    v1 collision that follows and ``min_payload`` to refuse them). Construct
    it from the size in bytes: ``PayloadSize(1_000_000)``.

    Raises:
        PieceError: If the value is negative or larger than
            ``127·2**(MAX_HEIGHT - 2)``.
    """

    __slots__ = ()

    def __new__(cls, value: SupportsIndex) -> PayloadSize:
        v = as_int(value, "payload size")
        if v < 0:
            msg = f"payload size {v} is negative"
            raise PieceError(msg)
        if v > QUAD << (MAX_HEIGHT - MIN_HEIGHT):
            msg = (
                f"payload size {v} exceeds the largest piece carmigrate handles "
                f"({QUAD << (MAX_HEIGHT - MIN_HEIGHT)} bytes, height {MAX_HEIGHT})"
            )
            raise PieceError(msg)
        return super().__new__(cls, v)

    @property
    def height(self) -> int:
        """The height of the smallest piece that holds the payload (spec §1)."""
        return _height_of_quads(max(1, -(-int(self) // QUAD)))

    def unpadded_piece_size(self) -> UnpaddedPieceSize:
        """The smallest unpadded piece size ``U >= n`` (``127`` for ``n <= 127``)."""
        return UnpaddedPieceSize(QUAD << (self.height - MIN_HEIGHT))

    def padded_piece_size(self) -> PaddedPieceSize:
        """The padded size of the smallest piece that holds the payload."""
        return PaddedPieceSize.from_height(self.height)

    def padding(self) -> int:
        """Zero bytes appended before fr32 expansion: ``U - n`` (spec §1)."""
        return int(self.unpadded_piece_size()) - int(self)

    def __repr__(self) -> str:
        return f"PayloadSize({int(self)})"

    def __str__(self) -> str:
        return int.__repr__(self)
