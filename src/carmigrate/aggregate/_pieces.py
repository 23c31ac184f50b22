"""A bare piece value and PieceCID strings for what the queue stores."""

from __future__ import annotations

import attrs

from carmigrate.cid import CID, Multihash, encode_varint

__all__ = ["PieceRef", "piece_cid_v1", "piece_cid_v2"]


@attrs.frozen
class PieceRef:
    """A piece known only by its commitment and padded size.

    Attributes:
        root: The 32-byte commitment.
        padded_size: The padded size (a power of two >= 128).
    """

    root: bytes
    padded_size: int


def piece_cid_v1(root: bytes) -> str:
    """PieceCID v1 (``baga…``) of a commitment."""
    return str(CID.create(1, 0xF101, Multihash(0x1012, root)))


def piece_cid_v2(root: bytes, padded_size: int, padding: int) -> str:
    """PieceCID v2 (FRC-0069, ``bafkzcib…``) of a commitment, size and padding."""
    height = (padded_size // 32).bit_length() - 1
    digest = encode_varint(padding) + bytes((height,)) + root
    return str(CID.create(1, "raw", Multihash(0x1011, digest)))
