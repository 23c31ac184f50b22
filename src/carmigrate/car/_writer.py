"""Writing CARs: CARv1 as a stream, CARv2 with its index and header at close."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal, final

from carmigrate.car._block import BlockLocation
from carmigrate.car._header import (
    PRAGMA,
    V2_HEADER_SIZE,
    CarHeader,
    CarV2Header,
    Characteristics,
    encode_v1_header,
)
from carmigrate.car._index import INDEX_SORTED, MULTIHASH_INDEX_SORTED, CarIndex
from carmigrate.car._limits import DEFAULT_LIMITS, CarLimits
from carmigrate.car._scan import CarBlockReader
from carmigrate.cid import Buffer, CIDLike, HashCheck, as_cid
from carmigrate.cid.lowlevel import encode_varint
from carmigrate.errors import BlockHashMismatch, LimitExceeded

if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import TracebackType

    from carmigrate.car._input import Source

__all__ = ["CarWriter", "index_car"]


@final
class CarWriter:
    """Writes a CARv1 or CARv2, one block at a time.

    The output depends only on the roots, the blocks in order and the options:
    the same input always gives the same bytes. Blocks are written as given
    (duplicates too). The layout of a CARv2 is go-car's ``WrapV1``: pragma,
    header, CARv1 payload with no padding, then the index; writing the blocks
    of a CAR go-car wrapped reproduces go-car's file byte for byte.

    - **CARv1** streams: the header is written on creation and each section
      on [write][carmigrate.car.CarWriter.write], to any writable binary
      stream.
    - **CARv2** needs a seekable sink: the pragma and a zeroed header are
      written first, the payload streams, and on
      [close][carmigrate.car.CarWriter.close] the index is appended and the
      header is written in place. Until then the file is not a valid CARv2
      (its header is all zeros), so an interrupted write is never mistaken for a
      complete one.

    State: the sink, the bytes written so far and, for a CARv2 with an index,
    the location of every block (a few hundred bytes each). The writer does not
    close a sink it was given; see [open][carmigrate.car.CarWriter.open].
    Using it as a context manager closes it on a clean exit; if the block
    raises, the writer is closed without finishing the CARv2 header.

    Args:
        sink: A writable binary stream (seekable for version 2). Offsets are
            counted from its position at creation.
        roots: The root CIDs for the header. May be empty.
        version: 1 or 2.
        index_codec: For version 2, the index to append:
            [MULTIHASH_INDEX_SORTED][carmigrate.car.MULTIHASH_INDEX_SORTED]
            (go-car's default), [INDEX_SORTED][carmigrate.car.INDEX_SORTED],
            or ``None`` for no index.
        store_identity_cids: Index identity-hash CIDs too, and set the
            fully-indexed characteristic (go-car's ``StoreIdentityCIDs``).
        limits: Blocks that would not read back under these limits are
            refused.
        verify: Re-hash each block before writing it and refuse one that
            does not match its CID.

    Raises:
        ValueError: For a bad version or codec, or a version 2 sink that
            cannot seek.
        LimitExceeded: If the header is over the header limit.
    """

    def __init__(
        self,
        sink: BinaryIO,
        roots: Iterable[CIDLike] = (),
        *,
        version: Literal[1, 2] = 1,
        index_codec: int | None = MULTIHASH_INDEX_SORTED,
        store_identity_cids: bool = False,
        limits: CarLimits = DEFAULT_LIMITS,
        verify: bool = False,
    ) -> None:
        if version not in (1, 2):
            msg = f"CAR version must be 1 or 2, got {version!r}"
            raise ValueError(msg)
        if index_codec not in (None, INDEX_SORTED, MULTIHASH_INDEX_SORTED):
            msg = f"index_codec must be INDEX_SORTED, MULTIHASH_INDEX_SORTED or None, got {index_codec!r}"
            raise ValueError(msg)
        if version == 2 and not _seekable(sink):
            msg = "writing a CARv2 needs a seekable sink (the header is written last); write a CARv1 instead"
            raise ValueError(msg)
        self._sink = sink
        self._owned = False
        self._version = version
        self._index_codec = index_codec
        self._identity = store_identity_cids
        self._limits = limits
        self._verify = verify
        self._closed = False
        self._blocks = 0
        self._locations: list[BlockLocation] | None = (
            [] if version == 2 and index_codec is not None else None
        )
        roots_t = tuple(as_cid(r) for r in roots)
        header = encode_v1_header(roots_t)
        if len(header) - len(encode_varint(len(header))) > limits.max_header_size:
            raise LimitExceeded(
                "header", limit=limits.max_header_size, actual=len(header), offset=0
            )
        self._header = CarHeader(version, roots_t)
        self._start = sink.tell() if version == 2 else 0
        prefix = PRAGMA + bytes(V2_HEADER_SIZE) if version == 2 else b""
        self._data_offset = len(prefix)
        sink.write(prefix + header)
        self._pos = len(prefix) + len(header)

    @classmethod
    def open(
        cls,
        path: str | Path,
        roots: Iterable[CIDLike] = (),
        *,
        version: Literal[1, 2] = 1,
        index_codec: int | None = MULTIHASH_INDEX_SORTED,
        store_identity_cids: bool = False,
        limits: CarLimits = DEFAULT_LIMITS,
        verify: bool = False,
    ) -> CarWriter:
        """Create (or truncate) the file at ``path`` and write a CAR to it.

        The writer closes the file on [close][carmigrate.car.CarWriter.close].

        Raises:
            OSError: If the file cannot be created.
        """
        f = Path(path).open("w+b")  # noqa: SIM115
        try:
            writer = cls(
                f,
                roots,
                version=version,
                index_codec=index_codec,
                store_identity_cids=store_identity_cids,
                limits=limits,
                verify=verify,
            )
        except BaseException:
            f.close()
            raise
        writer._owned = True
        return writer

    @property
    def closed(self) -> bool:
        """Whether [close][carmigrate.car.CarWriter.close] was called."""
        return self._closed

    @property
    def blocks_written(self) -> int:
        """Number of blocks written so far."""
        return self._blocks

    @property
    def position(self) -> int:
        """Bytes written so far (the offset of the next section)."""
        return self._pos

    def write(self, cid: CIDLike, data: Buffer) -> BlockLocation:
        """Append one block.

        Args:
            cid: The block's CID.
            data: The block's bytes.

        Returns:
            Where the block was written (absolute offsets, as readers report).

        Raises:
            ValueError: If the writer is closed.
            LimitExceeded: If the section would be over the section limit.
            BlockHashMismatch: If verifying and ``data`` does not match ``cid``.
        """
        if self._closed:
            msg = "write to a closed CarWriter"
            raise ValueError(msg)
        c = as_cid(cid)
        raw = bytes(c)
        length = len(raw) + len(data)
        if length > self._limits.max_section_size:
            raise LimitExceeded(
                "section",
                limit=self._limits.max_section_size,
                actual=length,
                offset=self._pos,
            )
        prefix = encode_varint(length)
        data_offset = self._pos + len(prefix) + len(raw)
        if self._verify and c.check(data) is HashCheck.MISMATCH:
            raise BlockHashMismatch(str(c), offset=data_offset)
        if len(data) < 4096:
            self._sink.write(b"".join((prefix, raw, data)))
        else:
            self._sink.write(prefix + raw)
            self._sink.write(data)
        loc = BlockLocation(c, data_offset, len(data), self._pos)
        if self._locations is not None:
            self._locations.append(loc)
        self._pos = data_offset + len(data)
        self._blocks += 1
        return loc

    def close(self) -> CarHeader:
        """Finish the CAR; idempotent.

        For a CARv2, appends the index and writes the header in place, then
        leaves the sink positioned at the end. Closes the sink only if the
        writer opened it.

        Returns:
            The header as written (for a CARv2, with its final offsets).

        Raises:
            OSError: If writing or seeking fails; the CARv2 header is then
                left zeroed.
        """
        if self._closed:
            return self._header
        self._closed = True
        try:
            if self._version == 2:
                self._header = self._finish_v2()
            self._sink.flush()
        finally:
            if self._owned:
                self._sink.close()
        return self._header

    def _finish_v2(self) -> CarHeader:
        data_size = self._pos - self._data_offset
        index_offset = 0
        if self._locations is not None:
            assert self._index_codec is not None
            index = CarIndex.build(
                self._locations,
                codec=self._index_codec,
                data_offset=self._data_offset,
                include_identity=self._identity,
            )
            index_offset = self._pos
            encoded = index.encode()
            self._sink.write(encoded)
            self._pos += len(encoded)
        characteristics = Characteristics().with_fully_indexed(
            self._identity and self._locations is not None
        )
        v2 = CarV2Header(self._data_offset, data_size, index_offset, characteristics)
        self._sink.seek(self._start + len(PRAGMA))
        self._sink.write(v2.encode())
        self._sink.seek(self._start + self._pos)
        return CarHeader(2, self._header.roots, v2)

    def abort(self) -> None:
        """Close without finishing: a CARv2 keeps its zeroed header. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._owned:
            self._sink.close()

    def __enter__(self) -> CarWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _seekable(sink: BinaryIO) -> bool:
    try:
        return bool(sink.seekable())
    except (AttributeError, ValueError):
        return False


def index_car(
    source: Source,
    sink: BinaryIO,
    *,
    index_codec: int = MULTIHASH_INDEX_SORTED,
    store_identity_cids: bool = False,
    verify: bool = True,
    limits: CarLimits = DEFAULT_LIMITS,
    zero_length_section_as_eof: bool = False,
) -> CarHeader:
    """Write a CARv2 with an index, holding the same roots and blocks as ``source``.

    The blocks are read from ``source`` (CARv1 or CARv2, any stream) and
    written anew; for a canonical CARv1 the payload is byte-identical to the
    input, as with go-car's ``WrapV1``. The index of a CARv2 input is ignored
    and rebuilt from the data.

    Args:
        source: The CAR to read.
        sink: A seekable, writable binary stream.
        index_codec: [MULTIHASH_INDEX_SORTED][carmigrate.car.MULTIHASH_INDEX_SORTED]
            or [INDEX_SORTED][carmigrate.car.INDEX_SORTED].
        store_identity_cids: Index identity-hash CIDs too (fully indexed).
        verify: Re-hash every block and stop at the first mismatch.
        limits: Caps on header and section lengths.
        zero_length_section_as_eof: Treat a zero-length section in
            ``source`` as the end of its data.

    Returns:
        The header written.

    Raises:
        CarFormatError: If ``source`` is malformed; ``sink`` then holds an
            unfinished CARv2 with a zeroed header.
        BlockHashMismatch: If verifying and a block does not match its CID.
        ValueError: If ``sink`` cannot seek.
    """
    reader = CarBlockReader(
        source,
        limits=limits,
        zero_length_section_as_eof=zero_length_section_as_eof,
        verify=verify,
    )
    writer = CarWriter(
        sink,
        reader.roots,
        version=2,
        index_codec=index_codec,
        store_identity_cids=store_identity_cids,
        limits=limits,
    )
    with writer:
        for block in reader:
            writer.write(block.cid, block.data)
    return writer.close()
