"""Block values: a block, a block read from a CAR, and where a block sits."""

from __future__ import annotations

import attrs

from carmigrate.cid import CID, HashCheck

__all__ = ["Block", "BlockLocation", "CarBlock"]


@attrs.frozen(slots=True)
class Block:
    """A block: a CID and the bytes it names.

    Nothing is checked on construction; call
    [check][carmigrate.car.Block.check] to compare the bytes with the CID.

    Attributes:
        cid: The block's CID.
        data: The block's bytes.
    """

    cid: CID
    data: bytes

    @classmethod
    def from_data(
        cls, data: bytes, *, codec: str | int = "raw", hash: str | int = "sha2-256"
    ) -> Block:
        """Hash ``data`` and return it as a block (CIDv1, raw/sha2-256 by default).

        Raises:
            UnsupportedHash: If the hash function cannot be computed.
        """
        return cls(CID.from_data(data, codec=codec, hash=hash), bytes(data))

    def check(self) -> HashCheck:
        """Re-hash the data and compare with the CID's digest.

        Returns:
            ``VERIFIED``, ``MISMATCH``, or ``UNVERIFIABLE`` when the hash
            function is not supported (never counted as verified).
        """
        return self.cid.check(self.data)


@attrs.frozen(slots=True)
class BlockLocation:
    """Where a block's section sits in a CAR file.

    Offsets are absolute: from the start of the file (or of the stream, where
    reading began), for CARv1 and CARv2 alike. They match the ``blockOffset``
    / ``blockLength`` and ``offset`` fields of the IPLD CAR fixtures.

    Attributes:
        cid: The block's CID.
        offset: Offset of the block's data (after the length prefix and CID).
        length: Length of the block's data.
        section_offset: Offset of the section's length prefix.
    """

    cid: CID
    offset: int
    length: int
    section_offset: int

    @property
    def end(self) -> int:
        """Offset just past the block's data (and its section)."""
        return self.offset + self.length

    @property
    def section_length(self) -> int:
        """Length of the whole section: length prefix, CID and data."""
        return self.offset + self.length - self.section_offset


@attrs.frozen(slots=True)
class CarBlock:
    """A block as read from a CAR, with where it was found.

    Attributes:
        cid: The block's CID, as written in the section.
        data: The block's bytes (a copy; it stays valid after reading goes on).
        offset: Absolute offset of the block's data in the file.
        section_offset: Absolute offset of the section's length prefix.
    """

    cid: CID
    data: bytes
    offset: int
    section_offset: int

    @property
    def length(self) -> int:
        """Length of the block's data."""
        return len(self.data)

    @property
    def block(self) -> Block:
        """The block without its position."""
        return Block(self.cid, self.data)

    @property
    def location(self) -> BlockLocation:
        """Where the block sits."""
        return BlockLocation(self.cid, self.offset, len(self.data), self.section_offset)

    def check(self) -> HashCheck:
        """Re-hash the data and compare with the CID's digest.

        Returns:
            ``VERIFIED``, ``MISMATCH``, or ``UNVERIFIABLE`` when the hash
            function is not supported (never counted as verified).
        """
        return self.cid.check(self.data)
