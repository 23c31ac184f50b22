"""Streaming CAR parsing: headers, section framing and the block iterator.

CARv1 layout (CARv1 spec): ``varint(len) header`` then sections
``varint(len) CID data`` until the end of the stream. CARv2 (CARv2 spec): the
11-byte pragma, a 40-byte header, then a CARv1 payload at ``data_offset`` of
``data_size`` bytes, then optionally an index. Behaviour follows go-car v2
(``block_reader.go``, ``internal/carv1/util/util.go``): lengths over the
limits are refused before allocation; a zero-length section is an error
unless ``zero_length_section_as_eof`` is set, in which case it ends the data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, final

from carmigrate.car._block import BlockLocation, CarBlock
from carmigrate.car._header import PRAGMA, V2_HEADER_SIZE, CarHeader, CarV2Header
from carmigrate.car._index import CarIndex, check_index, decode_index, index_read_bound
from carmigrate.car._input import Input, Source
from carmigrate.car._limits import DEFAULT_LIMITS, CarLimits
from carmigrate.cid import CID, HashCheck, decode_dag_cbor
from carmigrate.errors import (
    BlockHashMismatch,
    CarFormatError,
    FormatError,
    LimitExceeded,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "CarBlockReader",
    "check_end",
    "describe_bad_cid",
    "frames",
    "iter_blocks",
    "locations",
    "open_input",
    "read_checked_index",
    "read_header",
    "section_length",
    "truncated",
    "zero_length",
]

_PEEK: Final = 4096
_PRAGMA_MESSAGE: Final = (
    "a version 2 header must be exactly the 11-byte CARv2 pragma 0a a1 67 'version' 02"
)


class _VarintError(Exception):
    pass


def parse_uvarint(
    buf: bytes | bytearray | memoryview, pos: int, fill: int
) -> tuple[int, int]:
    """Decode an unsigned varint from ``buf[pos:fill]`` (multiformats rules).

    Raises:
        _VarintError: With the reason, if the varint is cut short, longer than
            9 bytes, or not minimally encoded.
    """
    value = 0
    shift = 0
    i = pos
    while True:
        if i >= fill:
            msg = "is cut short by the end of the data"
            raise _VarintError(msg)
        if i - pos >= 9:
            msg = "is longer than 9 bytes"
            raise _VarintError(msg)
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            if b == 0 and i - pos > 1:
                msg = "is not minimally encoded"
                raise _VarintError(msg)
            return value, i
        shift += 7


def _end_message(inp: Input) -> str:
    return "the CARv2 data payload ends" if inp.limited else "the data ends"


def _read_length(inp: Input, what: str) -> tuple[int, int] | None:
    """Read a length prefix; ``None`` at a clean end of input."""
    start = inp.tell()
    avail = inp.need(10)
    if avail == 0:
        return None
    try:
        value, end = parse_uvarint(inp.buf, inp.pos, inp.pos + avail)
    except _VarintError as exc:
        msg = f"the length prefix of the {what} {exc}"
        raise CarFormatError(msg, offset=start) from None
    inp.pos = end
    return value, start


def _read_v1_header(
    inp: Input, limits: CarLimits, what: str
) -> tuple[object, bytes, int]:
    start = inp.tell()
    got = _read_length(inp, what)
    if got is None:
        msg = f"expected the {what}, found the end of the data"
        raise CarFormatError(msg, offset=start)
    length, _ = got
    body_start = inp.tell()
    if length == 0:
        msg = f"the {what} has length 0; expected a DAG-CBOR map"
        raise CarFormatError(msg, offset=start)
    if length > limits.max_header_size:
        raise LimitExceeded(
            "header", limit=limits.max_header_size, actual=length, offset=start
        )
    body = inp.take(length)
    if body is None:
        have = inp.fill - inp.pos
        msg = f"the {what} declares {length} bytes but {_end_message(inp)} after {have}"
        raise CarFormatError(msg, offset=start)
    raw = bytes(body)
    try:
        value = decode_dag_cbor(raw, offset=body_start)
    except FormatError as exc:
        msg = f"the {what} is not valid DAG-CBOR: {exc}"
        raise CarFormatError(msg, offset=body_start) from None
    return value, raw, start


def _header_fields(value: object, start: int, what: str) -> tuple[int, tuple[CID, ...]]:
    if not isinstance(value, dict):
        msg = f"the {what} must be a DAG-CBOR map, found {type(value).__name__}"
        raise CarFormatError(msg, offset=start)
    extra = sorted(set(value) - {"roots", "version"})
    version = value.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        msg = f"the {what} has no integer 'version' field"
        raise CarFormatError(msg, offset=start)
    if version == 2:
        if extra or "roots" in value:
            raise CarFormatError(_PRAGMA_MESSAGE, offset=start)
        return 2, ()
    if version != 1:
        msg = (
            f"unsupported CAR version {version}; expected 1, or 2 with the CARv2 pragma"
        )
        raise CarFormatError(msg, offset=start)
    if extra:
        msg = f"the {what} has unexpected fields {extra}; expected only 'roots' and 'version'"
        raise CarFormatError(msg, offset=start)
    roots = value.get("roots")
    if not isinstance(roots, list) or not all(isinstance(r, CID) for r in roots):
        msg = f"the {what} must have a 'roots' list of CIDs"
        raise CarFormatError(msg, offset=start)
    return 1, tuple(roots)


def read_header(inp: Input, limits: CarLimits) -> CarHeader:
    """Read the CARv1 header, or the CARv2 pragma, header and inner CARv1 header.

    Leaves ``inp`` at the first section; for a CARv2 it also limits ``inp`` to
    the data payload.

    Raises:
        CarFormatError: On any malformed or truncated header.
        LimitExceeded: If a header length is over ``limits.max_header_size``.
    """
    value, raw, start = _read_v1_header(inp, limits, "CAR header")
    version, roots = _header_fields(value, start, "CAR header")
    if version == 1:
        return CarHeader(1, roots)
    if raw != PRAGMA[1:] or inp.tell() - start != len(PRAGMA):
        raise CarFormatError(_PRAGMA_MESSAGE, offset=start)
    hstart = inp.tell()
    hb = inp.take(V2_HEADER_SIZE)
    if hb is None:
        msg = f"expected the {V2_HEADER_SIZE}-byte CARv2 header, found {inp.fill - inp.pos} bytes"
        raise CarFormatError(msg, offset=hstart)
    v2 = CarV2Header.decode(hb, offset=hstart)
    gap = v2.data_offset - inp.tell()
    if inp.skip(gap) < gap:
        msg = f"the CARv2 data offset {v2.data_offset} is past the end of the data"
        raise CarFormatError(msg, offset=hstart + 16)
    inp.set_limit(v2.data_end)
    inner = "inner CARv1 header"
    value, _, istart = _read_v1_header(inp, limits, inner)
    version, roots = _header_fields(value, istart, inner)
    if version != 1:
        msg = f"the {inner} of a CARv2 must have version 1, found {version}"
        raise CarFormatError(msg, offset=istart)
    return CarHeader(2, roots, v2)


def read_checked_index(
    inp: Input, v2: CarV2Header, sections: list[tuple[int, bytes, int]]
) -> CarIndex:
    """Read the index that follows the data of a CARv2 and check it against ``sections``.

    Reads forward from where the scan of the data stopped (skipping padding),
    so the stream need not be seekable. At most the bytes a truthful index
    of ``sections`` can take are read.

    Args:
        inp: The input, positioned anywhere before the index.
        v2: The CARv2 header (with an index).
        sections: ``(hash_code, digest, offset)`` of every section, offsets
            relative to the CARv1 payload.

    Raises:
        CarFormatError: If the index is missing, malformed or wrong.
    """
    bound = index_read_bound(sections)
    inp.lift_limit()
    gap = v2.index_offset - inp.tell()
    if gap < 0 or inp.skip(gap) < gap or inp.need(1) < 1:
        msg = f"the CARv2 index offset {v2.index_offset} is at or past the end of the data"
        raise CarFormatError(msg, offset=len(PRAGMA) + 32)
    avail = inp.need(bound + 1)
    capped = avail > bound
    data = inp.mv[inp.pos : inp.pos + min(avail, bound)]
    index, positions = decode_index(data, offset=v2.index_offset, capped=capped)
    check_index(
        index,
        positions,
        sections,
        fully_indexed=v2.characteristics.fully_indexed,
        index_offset=v2.index_offset,
        data_offset=v2.data_offset,
    )
    return index


def open_input(source: Source, limits: CarLimits) -> tuple[Input, CarHeader]:
    """Wrap ``source`` and read the header."""
    inp = Input(source, max_section_size=limits.max_section_size)
    return inp, read_header(inp, limits)


def describe_bad_cid(body: bytes) -> str:
    """Say why ``body`` (a section without its length prefix) does not start with a CID."""
    if not body:
        return "the section is empty; expected a CID"
    b0 = body[0]
    if b0 == 0x12:
        return "a CIDv0 must be 0x12 0x20 and a 32-byte digest, within the section"
    if b0 != 1:
        return f"expected a CID (version byte 0x01, or 0x12 for CIDv0), found byte 0x{b0:02x}"
    pos = 1
    for part in ("codec", "hash function", "digest length"):
        try:
            value, pos = parse_uvarint(body, pos, len(body))
        except _VarintError as exc:
            return f"the CID's {part} varint {exc} of the section"
    if pos + value > len(body):
        return f"the CID declares a {value}-byte digest but the section has {len(body) - pos} bytes left"
    return "the section does not start with a well-formed CID"  # pragma: no cover


def zero_length(offset: int) -> CarFormatError:
    msg = (
        "zero-length section; a section must hold at least a CID "
        "(pass zero_length_section_as_eof=True to treat it as the end of the data)"
    )
    return CarFormatError(msg, offset=offset)


def truncated(inp: Input, start: int, length: int, have: int) -> CarFormatError:
    msg = (
        f"section declares {length} bytes but {_end_message(inp)} after {max(have, 0)}"
    )
    return CarFormatError(msg, offset=start)


def check_end(inp: Input) -> None:
    # A CARv2 payload must end exactly at data_offset + data_size.
    limit = inp.limit
    if limit is not None and inp.tell() < limit:
        msg = f"the CARv2 data payload should run to offset {limit} but the data ends first"
        raise CarFormatError(msg, offset=inp.tell())


def section_length(inp: Input, pos: int) -> tuple[int, int]:
    """Decode the section length prefix at index ``pos`` of ``inp.buf``.

    Returns:
        ``(length, index just past the prefix)``.

    Raises:
        CarFormatError: If the prefix is cut short, too long or not minimal.
    """
    try:
        return parse_uvarint(inp.buf, pos, inp.fill)
    except _VarintError as exc:
        reason = str(exc)
        if inp.limited and "cut short" in reason:
            reason = "runs past the end of the CARv2 data payload"
        msg = f"the section length prefix {reason}"
        raise CarFormatError(msg, offset=inp.base + pos) from None


def frames(
    inp: Input, limits: CarLimits, *, zero_length_section_as_eof: bool
) -> Iterator[tuple[int, int, int]]:
    """Yield each section as ``(start, body, end)`` indexes into ``inp.buf``.

    ``body`` is where the CID starts and ``end`` is just past the block data.
    The whole section is in ``inp.buf`` when it is yielded; the indexes (and
    ``inp.buf``, ``inp.base``) stay valid until the generator is resumed.

    Raises:
        CarFormatError: For a malformed or truncated length prefix, a
            zero-length section (unless it ends the data), a section that
            runs past the end of the data.
        LimitExceeded: For a section over ``limits.max_section_size``.
    """
    max_section = limits.max_section_size
    buf = inp.buf
    pos = inp.pos
    fill = inp.fill
    while True:
        if fill - pos < 10:
            inp.pos = pos
            avail = inp.need(10)
            buf = inp.buf
            pos = inp.pos
            fill = inp.fill
            if avail == 0:
                check_end(inp)
                return
        b = buf[pos]
        if b < 0x80:
            if b == 0:
                if zero_length_section_as_eof:
                    inp.pos = pos
                    return
                raise zero_length(inp.base + pos)
            ln = b
            body = pos + 1
        else:
            b1 = buf[pos + 1] if pos + 1 < fill else 0x80
            if 0 < b1 < 0x80:
                ln = (b & 0x7F) | (b1 << 7)
                body = pos + 2
            else:
                ln, body = section_length(inp, pos)
        if ln > max_section:
            raise LimitExceeded(
                "section", limit=max_section, actual=ln, offset=inp.base + pos
            )
        end = body + ln
        if end > fill:
            inp.pos = pos
            inp.need(end - pos)
            shift = inp.pos - pos
            buf = inp.buf
            pos = inp.pos
            fill = inp.fill
            body += shift
            end += shift
            if end > fill:
                raise truncated(inp, inp.base + pos, ln, fill - body)
        yield pos, body, end
        pos = end


def _cid_at(inp: Input, body: int, end: int) -> tuple[CID, int]:
    try:
        cid, dstart = CID.read(inp.buf, body)
    except FormatError:
        dstart = end + 1
        cid = None
    if dstart > end or cid is None:
        why = describe_bad_cid(bytes(inp.buf[body:end]))
        raise CarFormatError(why, offset=inp.base + body)
    return cid, dstart


def iter_car_blocks(
    inp: Input, limits: CarLimits, *, zero_length_section_as_eof: bool, verify: bool
) -> Iterator[CarBlock]:
    """Yield every block after the header, with copies of the data."""
    read = CID.read
    for start, body, end in frames(
        inp, limits, zero_length_section_as_eof=zero_length_section_as_eof
    ):
        buf = inp.buf
        try:
            cid, dstart = read(buf, body)
        except FormatError:
            dstart = end + 1
        if dstart > end:
            cid, dstart = _cid_at(inp, body, end)
        base = inp.base
        if verify and cid.check(inp.mv[dstart:end]) is HashCheck.MISMATCH:
            raise BlockHashMismatch(str(cid), offset=base + dstart)
        yield CarBlock(cid, bytes(buf[dstart:end]), base + dstart, base + start)


def locations(
    inp: Input, limits: CarLimits, *, zero_length_section_as_eof: bool
) -> Iterator[BlockLocation]:
    """Yield where every block sits, skipping (seeking past) block data.

    Only the length prefix and the CID of each section are read into memory;
    the data is skipped with ``seek`` when the stream is seekable, or read and
    discarded otherwise.

    Raises:
        CarFormatError: As [frames][carmigrate.car._scan.frames].
        LimitExceeded: For a section over ``limits.max_section_size``.
    """
    max_section = limits.max_section_size
    read = CID.read
    while True:
        # Fast path: a one- or two-byte length and the whole section buffered.
        buf, pos, fill = inp.buf, inp.pos, inp.fill
        if fill - pos >= 2:
            b = buf[pos]
            if b < 0x80:
                ln, body = b, pos + 1
            elif 0 < buf[pos + 1] < 0x80:
                ln, body = (b & 0x7F) | (buf[pos + 1] << 7), pos + 2
            else:
                ln = body = 0
            end = body + ln
            if 0 < ln <= max_section and end <= fill:
                try:
                    cid, dstart = read(buf, body)
                except FormatError:
                    dstart = end + 1
                if dstart <= end:
                    inp.pos = end
                    base = inp.base
                    yield BlockLocation(cid, base + dstart, end - dstart, base + pos)
                    continue
        got = _read_length(inp, "section")
        if got is None:
            check_end(inp)
            return
        ln, start = got
        if ln == 0:
            if zero_length_section_as_eof:
                return
            raise zero_length(start)
        if ln > max_section:
            raise LimitExceeded("section", limit=max_section, actual=ln, offset=start)
        body_abs = inp.tell()
        peek = min(ln, _PEEK)
        avail = inp.need(peek)
        if avail < peek:
            raise truncated(inp, start, ln, avail)
        pos = inp.pos
        try:
            cid, dstart = CID.read(inp.buf, pos)
        except FormatError:
            dstart = pos + ln + 1
        if dstart > pos + ln:
            # The CID may be longer than what was peeked (a large identity CID).
            if inp.need(ln) < ln:
                raise truncated(inp, start, ln, inp.fill - inp.pos) from None
            pos = inp.pos
            cid, dstart = _cid_at(inp, pos, pos + ln)
        cid_len = dstart - pos
        inp.pos = dstart
        rest = ln - cid_len
        if inp.skip(rest) < rest:
            raise truncated(inp, start, ln, inp.tell() - body_abs)
        yield BlockLocation(cid, body_abs + cid_len, rest, start)


@final
class CarBlockReader:
    """Reads the blocks of a CARv1 or CARv2 from any binary stream, in order.

    The header is read when the reader is created, so
    [version][carmigrate.car.CarBlockReader.version] and
    [roots][carmigrate.car.CarBlockReader.roots] are known before the first
    block. Iterating yields [CarBlock][carmigrate.car.CarBlock] values with
    absolute offsets. The stream is read forward only, in large chunks with
    ``readinto`` (short reads are fine), so it need not be seekable. A CARv2
    is detected from its pragma; only its data payload is read, never its
    index.

    Block data is hashed only with ``verify=True``; otherwise use
    [verify_car][carmigrate.car.verify_car] or
    [CarBlock.check][carmigrate.car.CarBlock.check].

    State: the reader owns a read buffer (bounded by ``limits``) and its
    position in the stream. Iteration is forward-only and resumes where it
    stopped; a finished reader yields nothing more. Use either ``iter()`` or
    [locations][carmigrate.car.CarBlockReader.locations] on one reader, not
    both. The reader does not close the stream.

    Args:
        source: A binary stream (anything with ``read``, ideally
            ``readinto``) or an in-memory buffer.
        limits: Caps on header and section lengths.
        zero_length_section_as_eof: Treat a zero-length section as the end of
            the data, ignoring what follows (go-car's
            ``ZeroLengthSectionAsEOF``). By default it is an error, as in
            go-car.
        verify: Re-hash each block as it is read and raise
            [BlockHashMismatch][carmigrate.errors.BlockHashMismatch] for one
            that does not match its CID (as go-car's ``BlockReader`` does
            unless ``TrustedCAR``). Blocks with an unsupported hash function
            pass unchecked.

    Raises:
        CarFormatError: If the header is malformed, truncated, of an
            unsupported version, or a CARv2 header is inconsistent.
        LimitExceeded: If the header is over ``limits.max_header_size``.
    """

    def __init__(
        self,
        source: Source,
        *,
        limits: CarLimits = DEFAULT_LIMITS,
        zero_length_section_as_eof: bool = False,
        verify: bool = False,
    ) -> None:
        self._limits = limits
        self._verify = verify
        self._zero_eof = zero_length_section_as_eof
        self._inp, self._header = open_input(source, limits)
        self._blocks: Iterator[CarBlock] | None = None
        self._locations: Iterator[BlockLocation] | None = None

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
        """The root CIDs (of the inner CARv1 for a CARv2). May be empty."""
        return self._header.roots

    def __iter__(self) -> Iterator[CarBlock]:
        """Iterate over the blocks.

        Raises:
            CarFormatError: At the first malformed section, naming its offset.
            LimitExceeded: For a section over the limit.
            BlockHashMismatch: With ``verify=True``, for a block that does
                not match its CID.
            ValueError: If [locations][carmigrate.car.CarBlockReader.locations]
                was used on this reader.
        """
        if self._locations is not None:
            msg = "this CarBlockReader is already iterating over locations"
            raise ValueError(msg)
        if self._blocks is None:
            self._blocks = iter_car_blocks(
                self._inp,
                self._limits,
                zero_length_section_as_eof=self._zero_eof,
                verify=self._verify,
            )
        return self._blocks

    def locations(self) -> Iterator[BlockLocation]:
        """Iterate over where each block sits, without keeping block data.

        Block data is skipped: with ``seek`` when the stream supports it,
        otherwise read and discarded.

        Raises:
            CarFormatError: At the first malformed section, naming its offset.
            LimitExceeded: For a section over the limit.
            ValueError: If the reader is already iterating over blocks.
        """
        if self._blocks is not None:
            msg = "this CarBlockReader is already iterating over blocks"
            raise ValueError(msg)
        if self._locations is None:
            self._locations = locations(
                self._inp, self._limits, zero_length_section_as_eof=self._zero_eof
            )
        return self._locations


def iter_blocks(
    source: Source,
    *,
    limits: CarLimits = DEFAULT_LIMITS,
    zero_length_section_as_eof: bool = False,
    verify: bool = False,
) -> Iterator[CarBlock]:
    """Iterate over the blocks of a CARv1 or CARv2 read from ``source``.

    Shorthand for ``iter(CarBlockReader(source, ...))``; use
    [CarBlockReader][carmigrate.car.CarBlockReader] to see the header too.
    The header is read on the first ``next()``.

    Args:
        source: A binary stream or an in-memory buffer.
        limits: Caps on header and section lengths.
        zero_length_section_as_eof: Treat a zero-length section as the end of
            the data (go-car's ``ZeroLengthSectionAsEOF``); an error otherwise.
        verify: Re-hash each block and raise
            [BlockHashMismatch][carmigrate.errors.BlockHashMismatch] at the
            first that does not match its CID.

    Yields:
        Each block with its CID, a copy of its data and its absolute offsets.

    Raises:
        CarFormatError: At the first malformed header or section, naming its offset.
        LimitExceeded: For a header or section over the limits.
        BlockHashMismatch: With ``verify=True``, at the first block that does
            not match its CID.
    """
    yield from CarBlockReader(
        source,
        limits=limits,
        zero_length_section_as_eof=zero_length_section_as_eof,
        verify=verify,
    )
