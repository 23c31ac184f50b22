"""Random access to the blocks of a CAR file by CID."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal, final

from carmigrate.car._block import BlockLocation, CarBlock
from carmigrate.car._index import INDEX_SORTED, MULTIHASH_INDEX_SORTED, CarIndex
from carmigrate.car._limits import DEFAULT_LIMITS, CarLimits
from carmigrate.car._scan import locations, open_input, read_checked_index
from carmigrate.car._verify import read_region
from carmigrate.cid import CID, CIDLike, HashCheck, as_cid
from carmigrate.errors import BlockHashMismatch, CarFormatError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import TracebackType

    from carmigrate.car._header import CarHeader
    from carmigrate.car._input import Source

__all__ = ["CarReader"]


@final
class CarReader:
    """Random access to the blocks of a CARv1 or CARv2 by CID.

    On creation the reader scans the whole CAR once (reading each section's
    length and CID, seeking past block data) and keeps, in memory, where
    every block is: about 300 bytes per block. Look-ups then cost one seek
    and one read.

    An index embedded in a CARv2 is never used blindly. With
    ``embedded_index="check"`` (the default) it is read and checked against
    the scan: every entry must point at a section with that multihash, and
    every block (identity CIDs only when the file is fully indexed) must
    have an entry. A wrong, truncated or unreadable index raises
    [CarFormatError][carmigrate.errors.CarFormatError] naming its offset.
    With ``"ignore"`` the index bytes are not read at all. Either way the
    reader answers from its own scan.

    State: the source, the header, the locations of all blocks and, when
    checked, the embedded index. Reads are serialised by a lock, so one
    reader may be shared between threads. The reader closes the file only if
    it opened it ([open][carmigrate.car.CarReader.open]).

    Args:
        source: A seekable binary file, or the CAR in memory. Offsets are
            counted from the file position at creation.
        limits: Caps on header and section lengths.
        zero_length_section_as_eof: Treat a zero-length section as the end of
            the data (go-car's ``ZeroLengthSectionAsEOF``); an error otherwise.
        embedded_index: ``"check"`` or ``"ignore"`` an embedded CARv2 index.
        verify: Re-hash each block returned by
            [get][carmigrate.car.CarReader.get] and ``[]`` and raise
            [BlockHashMismatch][carmigrate.errors.BlockHashMismatch] if it
            does not match its CID. Blocks with an unsupported hash function
            are returned unchecked.

    Raises:
        CarFormatError: If the CAR is malformed, or its index is wrong.
        LimitExceeded: If a header or section is over the limits.
        ValueError: If ``source`` is a stream that cannot seek, or
            ``embedded_index`` is not one of the accepted values.
    """

    def __init__(
        self,
        source: Source,
        *,
        limits: CarLimits = DEFAULT_LIMITS,
        zero_length_section_as_eof: bool = False,
        embedded_index: Literal["check", "ignore"] = "check",
        verify: bool = True,
    ) -> None:
        if embedded_index not in ("check", "ignore"):
            msg = f"embedded_index must be 'check' or 'ignore', got {embedded_index!r}"
            raise ValueError(msg)
        self._owned: BinaryIO | None = None
        self._lock = threading.Lock()
        self._verify = verify
        if isinstance(source, bytes | bytearray | memoryview):
            self._mem: memoryview | None = memoryview(source).cast("B")
            self._file: BinaryIO | None = None
            self._start = 0
        else:
            if not source.seekable():
                msg = "CarReader needs a seekable file; use CarBlockReader or iter_blocks for streams"
                raise ValueError(msg)
            self._mem = None
            self._file = source
            self._start = source.tell()
        inp, self._header = open_input(source, limits)
        locs = list(
            locations(
                inp, limits, zero_length_section_as_eof=zero_length_section_as_eof
            )
        )
        self._locations = tuple(locs)
        by_cid: dict[CID, BlockLocation] = {}
        for loc in locs:
            by_cid.setdefault(loc.cid, loc)
        self._by_cid = by_cid
        self._index: CarIndex | None = None
        v2 = self._header.v2
        if v2 is not None and v2.has_index and embedded_index == "check":
            base = v2.data_offset
            sections = [
                (loc.cid.hash_code, loc.cid.digest, loc.section_offset - base)
                for loc in locs
            ]
            self._index = read_checked_index(inp, v2, sections)

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        limits: CarLimits = DEFAULT_LIMITS,
        zero_length_section_as_eof: bool = False,
        embedded_index: Literal["check", "ignore"] = "check",
        verify: bool = True,
    ) -> CarReader:
        """Open the CAR file at ``path``; the reader closes it on [close][carmigrate.car.CarReader.close].

        Raises:
            OSError: If the file cannot be opened.
            CarFormatError: As the constructor.
        """
        # Unbuffered: the scan reads in large chunks itself, and look-ups
        # must see the file as it is, not a stale buffer.
        f = Path(path).open("rb", buffering=0)  # noqa: SIM115
        try:
            reader = cls(
                f,
                limits=limits,
                zero_length_section_as_eof=zero_length_section_as_eof,
                embedded_index=embedded_index,
                verify=verify,
            )
        except BaseException:
            f.close()
            raise
        reader._owned = f
        return reader

    # -- what the file says ---------------------------------------------------

    @property
    def header(self) -> CarHeader:
        """The header: version, roots and, for a CARv2, the CARv2 header."""
        return self._header

    @property
    def version(self) -> int:
        """1 or 2."""
        return self._header.version

    @property
    def roots(self) -> tuple[CID, ...]:
        """The root CIDs. May be empty."""
        return self._header.roots

    @property
    def index(self) -> CarIndex | None:
        """The embedded CARv2 index, checked against the data; ``None`` if absent or ignored.

        A [CarIndex][carmigrate.car.lowlevel.CarIndex]: ``codec_name``,
        ``len()`` and its sorted ``entries``.
        """
        return self._index

    @property
    def locations(self) -> tuple[BlockLocation, ...]:
        """Where every section is, in file order, duplicates included."""
        return self._locations

    # -- look-ups ----------------------------------------------------------------

    def __len__(self) -> int:
        """Number of distinct CIDs."""
        return len(self._by_cid)

    def __iter__(self) -> Iterator[CID]:
        """The distinct CIDs, in the order of their first section."""
        return iter(self._by_cid)

    def __contains__(self, cid: object) -> bool:
        try:
            return as_cid(cid) in self._by_cid  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False

    def has(self, cid: CIDLike) -> bool:
        """Whether a section with exactly this CID is in the CAR.

        Raises:
            FormatError: If ``cid`` is not a well-formed CID.
        """
        return as_cid(cid) in self._by_cid

    def locate(self, cid: CIDLike) -> BlockLocation:
        """Where the first section with this CID is.

        Raises:
            KeyError: If no section has this CID.
        """
        return self._by_cid[as_cid(cid)]

    def __getitem__(self, cid: CIDLike) -> CarBlock:
        """The block with this CID (its first occurrence).

        Raises:
            KeyError: If no section has this CID.
            BlockHashMismatch: If verifying and the data does not match.
            CarFormatError: If the file is now shorter than when scanned.
        """
        return self._load(self._by_cid[as_cid(cid)])

    def get(self, cid: CIDLike, default: CarBlock | None = None) -> CarBlock | None:
        """The block with this CID, or ``default`` if it is not in the CAR.

        Raises:
            BlockHashMismatch: If verifying and the data does not match.
            CarFormatError: If the file is now shorter than when scanned.
        """
        loc = self._by_cid.get(as_cid(cid))
        return default if loc is None else self._load(loc)

    def iter_blocks(self) -> Iterator[CarBlock]:
        """Every section's block, in file order, duplicates included.

        Raises:
            BlockHashMismatch: If verifying and a block does not match.
        """
        for loc in self._locations:
            yield self._load(loc)

    def build_index(
        self, *, codec: int = MULTIHASH_INDEX_SORTED, include_identity: bool = False
    ) -> CarIndex:
        """An index of this CAR's sections, built from the scan, as go-car builds it.

        Args:
            codec: [MULTIHASH_INDEX_SORTED][carmigrate.car.MULTIHASH_INDEX_SORTED]
                or [INDEX_SORTED][carmigrate.car.INDEX_SORTED].
            include_identity: Also index identity-hash CIDs.

        Raises:
            ValueError: For an unknown codec.
        """
        if codec not in (INDEX_SORTED, MULTIHASH_INDEX_SORTED):
            msg = f"unknown CARv2 index codec 0x{codec:x}"
            raise ValueError(msg)
        return CarIndex.build(
            self._locations,
            codec=codec,
            data_offset=self._header.data_offset,
            include_identity=include_identity,
        )

    # -- reading -----------------------------------------------------------------

    def _read_at(self, offset: int, n: int) -> bytes | memoryview:
        if self._mem is not None:
            return self._mem[offset : offset + n]
        assert self._file is not None
        with self._lock:
            return read_region(self._file, self._start + offset, n)

    def _load(self, loc: BlockLocation) -> CarBlock:
        data = bytes(self._read_at(loc.offset, loc.length))
        if len(data) != loc.length:
            msg = f"expected {loc.length} bytes of block data, the file now ends after {len(data)}"
            raise CarFormatError(msg, offset=loc.offset)
        if self._verify and loc.cid.check(data) is HashCheck.MISMATCH:
            raise BlockHashMismatch(str(loc.cid), offset=loc.offset)
        return CarBlock(loc.cid, data, loc.offset, loc.section_offset)

    # -- lifetime ------------------------------------------------------------------

    def close(self) -> None:
        """Close the file if this reader opened it. Idempotent."""
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    def __enter__(self) -> CarReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
