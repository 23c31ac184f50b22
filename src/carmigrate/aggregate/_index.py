"""The FRC-0058 data segment index: entries, checksums, sizes (commp-spec §7.2)."""

from __future__ import annotations

from hashlib import sha256
from typing import Final

import attrs

from carmigrate.errors import AggregateError

__all__ = ["ENTRY_SIZE", "SegmentIndexEntry", "index_start", "max_entries"]

ENTRY_SIZE: Final = 64
"""Bytes of one index entry in the padded domain."""


def max_entries(deal_size: int) -> int:
    """Number of index entries reserved in a deal of ``deal_size`` padded bytes.

    ``max(4, 2**ceil(log2(floor(deal_size / 2048 / 64))))`` as go-data-segment
    and data-segment compute it; for power-of-two sizes, ``max(4, D / 2**17)``.
    """
    n = deal_size // 2048 // 64
    return max(4, 1 << (n - 1).bit_length() if n > 1 else 1)


def index_start(deal_size: int) -> int:
    """Padded offset where the index area begins: ``D - 64·E``."""
    return deal_size - ENTRY_SIZE * max_entries(deal_size)


@attrs.frozen
class SegmentIndexEntry:
    """One entry of the FRC-0058 data segment index: a piece's root, padded offset and size.

    What [Aggregate.index_entries][carmigrate.aggregate.Aggregate.index_entries]
    and [Placement.entry][carmigrate.aggregate.Placement.entry] give; its 64
    bytes (``to_bytes``) are what the deal carries in its index area.
    (Not to be confused with a CARv2 index entry,
    [carmigrate.car.lowlevel.IndexEntry][].)

    Attributes:
        root: The piece commitment (32 bytes).
        offset: Padded offset of the piece in the deal.
        size: Padded size of the piece.
    """

    root: bytes
    offset: int
    size: int

    def to_bytes(self) -> bytes:
        """The 64-byte entry: root, ``u64le(offset)``, ``u64le(size)``, checksum."""
        body = (
            self.root
            + self.offset.to_bytes(8, "little")
            + self.size.to_bytes(8, "little")
        )
        return body + _checksum(body)

    @property
    def checksum(self) -> bytes:
        """The 16-byte checksum.

        sha2-256 of the entry with a zero checksum field, first 16 bytes, top
        two bits of the last byte cleared.
        """
        return self.to_bytes()[48:]

    @classmethod
    def from_bytes(cls, data: bytes) -> SegmentIndexEntry:
        """Parse and validate a 64-byte entry.

        Raises:
            AggregateError: If the length, checksum or alignment is wrong.
        """
        if len(data) != ENTRY_SIZE:
            msg = f"an index entry is {ENTRY_SIZE} bytes, got {len(data)}"
            raise AggregateError(msg)
        entry = cls(
            bytes(data[:32]),
            int.from_bytes(data[32:40], "little"),
            int.from_bytes(data[40:48], "little"),
        )
        if _checksum(bytes(data[:48])) != bytes(data[48:]):
            msg = "index entry checksum does not match"
            raise AggregateError(msg)
        if entry.offset % 128 or entry.size % 128:
            msg = (
                f"index entry offset {entry.offset} or size {entry.size} "
                "is not a multiple of 128"
            )
            raise AggregateError(msg)
        return entry


def _checksum(body: bytes) -> bytes:
    d = sha256(body + bytes(16)).digest()
    return d[:15] + bytes((d[15] & 0x3F,))
