"""A summary of a CAR: version, roots, block counts and sizes, codecs, index."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import attrs

from carmigrate.car._limits import DEFAULT_LIMITS, CarLimits
from carmigrate.car._scan import locations, open_input, read_checked_index

if TYPE_CHECKING:
    from carmigrate.car._header import CarHeader
    from carmigrate.car._index import CarIndex
    from carmigrate.car._input import Source
    from carmigrate.cid import CID

__all__ = ["CarSummary", "inspect_car"]


@attrs.frozen
class CarSummary:
    """What [inspect_car][carmigrate.car.inspect_car] found in a CAR.

    Attributes:
        header: Version, roots and, for a CARv2, the CARv2 header.
        blocks: Number of sections.
        unique_cids: Number of distinct CIDs.
        data_bytes: Total length of block data.
        min_block_size: Smallest block (0 when there are no blocks).
        max_block_size: Largest block (0 when there are no blocks).
        codecs: Blocks per content codec name, most frequent first.
        hashes: Blocks per multihash function name, most frequent first.
        roots_present: Whether every root is among the blocks.
        index: The embedded CARv2 index (a
            [CarIndex][carmigrate.car.lowlevel.CarIndex]), checked against
            the data, or ``None`` when there is none (or it was not checked).
    """

    header: CarHeader
    blocks: int
    unique_cids: int
    data_bytes: int
    min_block_size: int
    max_block_size: int
    codecs: tuple[tuple[str, int], ...]
    hashes: tuple[tuple[str, int], ...]
    roots_present: bool
    index: CarIndex | None

    @property
    def version(self) -> int:
        """1 or 2."""
        return self.header.version

    @property
    def roots(self) -> tuple[CID, ...]:
        """The root CIDs."""
        return self.header.roots


def _histogram(counter: Counter[str]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


def inspect_car(
    source: Source,
    *,
    check_index: bool = True,
    limits: CarLimits = DEFAULT_LIMITS,
    zero_length_section_as_eof: bool = False,
) -> CarSummary:
    """Scan a CAR and summarise it, without hashing block data.

    Only lengths and CIDs are read; block data is skipped (with ``seek`` when
    the stream allows). Memory grows with the number of distinct CIDs. A
    CARv2 index is read after the data and checked against it (any stream
    works, as the index follows the data).

    Args:
        source: A binary stream or an in-memory buffer.
        check_index: Read and check an embedded CARv2 index.
        limits: Caps on header and section lengths.
        zero_length_section_as_eof: Treat a zero-length section as the end of
            the data (go-car's ``ZeroLengthSectionAsEOF``).

    Raises:
        CarFormatError: If the CAR or its index is malformed or wrong.
        LimitExceeded: If a header or section is over the limits.
    """
    inp, header = open_input(source, limits)
    codecs: Counter[str] = Counter()
    hashes: Counter[str] = Counter()
    seen: set[CID] = set()
    v2 = header.v2
    want_index = check_index and v2 is not None and v2.has_index
    sections: list[tuple[int, bytes, int]] = []
    blocks = total = 0
    smallest = largest = -1
    data_offset = header.data_offset
    for loc in locations(
        inp, limits, zero_length_section_as_eof=zero_length_section_as_eof
    ):
        cid = loc.cid
        blocks += 1
        total += loc.length
        smallest = loc.length if smallest < 0 else min(smallest, loc.length)
        largest = max(largest, loc.length)
        codecs[cid.codec_name] += 1
        hashes[cid.multihash.name] += 1
        seen.add(cid)
        if want_index:
            sections.append(
                (cid.hash_code, cid.digest, loc.section_offset - data_offset)
            )
    index = None
    if want_index:
        assert v2 is not None
        index = read_checked_index(inp, v2, sections)
    return CarSummary(
        header=header,
        blocks=blocks,
        unique_cids=len(seen),
        data_bytes=total,
        min_block_size=max(smallest, 0),
        max_block_size=max(largest, 0),
        codecs=_histogram(codecs),
        hashes=_histogram(hashes),
        roots_present=all(r in seen for r in header.roots),
        index=index,
    )
