"""CARv2 indexes: IndexSorted (0x0400) and MultihashIndexSorted (0x0401).

Byte layout, as go-car writes it (``v2/index/indexsorted.go``,
``v2/index/mhindexsorted.go``) and the CARv2 spec describes ("Index format"):
an unsigned-varint multicodec code, then

- IndexSorted: ``int32le`` bucket count, then per bucket ``uint32le`` width
  (digest length + 8), ``uint64le`` byte length, and the entries: digest then
  ``uint64le`` section offset, sorted by digest; buckets sorted by width.
- MultihashIndexSorted: ``int32le`` count of hash functions, then per function
  (sorted by code) ``uint64le`` multihash code followed by an IndexSorted body.

Offsets are those of sections, relative to the start of the CARv1 payload.
Identity-hash CIDs are left out unless the index is *fully indexed*.
"""

from __future__ import annotations

import bisect
import struct
from typing import TYPE_CHECKING, Final, NamedTuple

import attrs

from carmigrate.cid import CIDLike, as_cid, codec_name, hash_name
from carmigrate.cid.lowlevel import decode_varint, encode_varint
from carmigrate.errors import CarFormatError, FormatError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from carmigrate.car._block import BlockLocation

__all__ = [
    "INDEX_SORTED",
    "MULTIHASH_INDEX_SORTED",
    "CarIndex",
    "IndexEntry",
    "check_index",
    "decode_index",
    "index_read_bound",
]

INDEX_SORTED: Final = 0x0400
"""Multicodec code of the CARv2 IndexSorted index (digests only)."""

MULTIHASH_INDEX_SORTED: Final = 0x0401
"""Multicodec code of the CARv2 MultihashIndexSorted index (digests grouped by
hash function); go-car's default."""

_IDENTITY: Final = 0x00
_MAX_WIDTH: Final = 32 << 20
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_NAMES: Final = {
    INDEX_SORTED: "IndexSorted",
    MULTIHASH_INDEX_SORTED: "MultihashIndexSorted",
}


class IndexEntry(NamedTuple):
    """One index entry: a multihash digest and the offset of its section.

    A plain named tuple, since an index of a large CAR holds millions.

    Attributes:
        hash_code: The multihash function code; ``None`` in an IndexSorted,
            which stores digests only.
        digest: The multihash digest.
        offset: Offset of the section, relative to the CARv1 payload (the
            CARv2 ``data_offset``, or 0 for a CARv1).
    """

    hash_code: int | None
    digest: bytes
    offset: int


def _sort_key(e: IndexEntry) -> tuple[int, int, bytes]:
    return (-1 if e.hash_code is None else e.hash_code, len(e.digest), e.digest)


def _validate_entries(
    inst: CarIndex, _: object, entries: tuple[IndexEntry, ...]
) -> None:
    if inst.codec not in _NAMES:
        msg = f"unknown CARv2 index codec 0x{inst.codec:x}; expected 0x400 or 0x401"
        raise ValueError(msg)
    digest_only = inst.codec == INDEX_SORTED
    prev: tuple[int, int, bytes] | None = None
    for e in entries:
        if (e.hash_code is None) != digest_only:
            msg = "IndexSorted entries have hash_code None; MultihashIndexSorted entries have a code"
            raise ValueError(msg)
        if not 0 <= e.offset < 1 << 64:
            msg = f"index offset {e.offset} is outside [0, 2**64)"
            raise ValueError(msg)
        key = _sort_key(e)
        if prev is not None and key < prev:
            msg = "index entries must be sorted by (hash code, digest length, digest)"
            raise ValueError(msg)
        prev = key


def _entry_tuple(entries: Iterable[IndexEntry]) -> tuple[IndexEntry, ...]:
    return tuple(entries)


@attrs.frozen
class CarIndex:
    """A CARv2 index value: which sections hold which multihash digests.

    Entries are kept in their encoded order, which is sorted (by hash code for
    MultihashIndexSorted, then digest length, then digest), so
    [encode][carmigrate.car.lowlevel.CarIndex.encode] of a
    [decode][carmigrate.car.lowlevel.CarIndex.decode]d index gives back the same
    bytes, and [build][carmigrate.car.lowlevel.CarIndex.build] gives the bytes go-car
    writes for the same CAR.

    An index read from a file says nothing trustworthy on its own; see
    [CarReader][carmigrate.car.CarReader], which checks it against the data.

    Attributes:
        codec: [INDEX_SORTED][carmigrate.car.INDEX_SORTED] or
            [MULTIHASH_INDEX_SORTED][carmigrate.car.MULTIHASH_INDEX_SORTED].
        entries: The entries in sorted order.

    Raises:
        ValueError: For an unknown codec, entries out of order, or hash codes
            that do not fit the codec.
    """

    codec: int
    entries: tuple[IndexEntry, ...] = attrs.field(
        converter=_entry_tuple, validator=_validate_entries
    )

    @property
    def codec_name(self) -> str:
        """``"IndexSorted"`` or ``"MultihashIndexSorted"``."""
        return _NAMES[self.codec]

    def __len__(self) -> int:
        return len(self.entries)

    @classmethod
    def build(
        cls,
        locations: Iterable[BlockLocation],
        *,
        codec: int = MULTIHASH_INDEX_SORTED,
        data_offset: int = 0,
        include_identity: bool = False,
    ) -> CarIndex:
        """Index the sections at ``locations`` as go-car does.

        Args:
            locations: Where the blocks sit (absolute offsets, as the readers
                report them). Every section gets an entry, duplicates included.
            codec: The index codec.
            data_offset: Where the CARv1 payload starts (the CARv2
                ``data_offset``; 0 for a CARv1). Index offsets are relative to it.
            include_identity: Also index identity-hash CIDs (go-car's
                ``StoreIdentityCIDs``; set the fully-indexed characteristic
                when writing such an index).

        Raises:
            ValueError: For an unknown codec or a location before ``data_offset``.
        """
        digest_only = codec == INDEX_SORTED
        entries = []
        for loc in locations:
            cid = loc.cid
            code = cid.hash_code
            if code == _IDENTITY and not include_identity:
                continue
            rel = loc.section_offset - data_offset
            if rel < 0:
                msg = f"section at offset {loc.section_offset} is before the data offset {data_offset}"
                raise ValueError(msg)
            entries.append(IndexEntry(None if digest_only else code, cid.digest, rel))
        entries.sort(key=lambda e: (*_sort_key(e), e.offset))
        return cls(codec, entries)

    def encode(self) -> bytes:
        """The serialised index: codec varint and body, as go-car writes it."""
        out = bytearray(encode_varint(self.codec))
        if self.codec == INDEX_SORTED:
            _encode_widths(self.entries, out)
            return bytes(out)
        groups: list[list[IndexEntry]] = []
        for e in self.entries:
            if groups and groups[-1][0].hash_code == e.hash_code:
                groups[-1].append(e)
            else:
                groups.append([e])
        out += _I32.pack(len(groups))
        for group in groups:
            code = group[0].hash_code
            assert code is not None
            out += _U64.pack(code)
            _encode_widths(group, out)
        return bytes(out)

    @classmethod
    def decode(
        cls, data: bytes | bytearray | memoryview, *, offset: int = 0
    ) -> CarIndex:
        """Parse a serialised index (codec varint and body).

        Bytes after the index are ignored. Nothing in the index is trusted:
        every length is checked against the bytes present before anything is
        allocated, and entries must be sorted.

        Args:
            data: The index bytes.
            offset: Where ``data`` sits in the file (for error offsets).

        Raises:
            CarFormatError: For an unknown codec, a truncated index, a bad
                width or length, or entries out of order; naming the offset.
        """
        return decode_index(data, offset=offset)[0]

    def find(self, cid: CIDLike) -> tuple[int, ...]:
        """Offsets (relative to the CARv1 payload) of sections indexed under ``cid``'s multihash.

        IndexSorted matches on the digest alone; MultihashIndexSorted on the
        hash code and digest. The CID's codec is never compared.
        """
        c = as_cid(cid)
        code = None if self.codec == INDEX_SORTED else c.hash_code
        key = (-1 if code is None else code, len(c.digest), c.digest)
        entries = self.entries
        i = bisect.bisect_left(entries, key, key=_sort_key)
        out = []
        while i < len(entries) and _sort_key(entries[i]) == key:
            out.append(entries[i].offset)
            i += 1
        return tuple(out)


def _encode_widths(entries: Sequence[IndexEntry], out: bytearray) -> None:
    buckets: list[list[IndexEntry]] = []
    for e in entries:
        if buckets and len(buckets[-1][0].digest) == len(e.digest):
            buckets[-1].append(e)
        else:
            buckets.append([e])
    out += _I32.pack(len(buckets))
    pack = _U64.pack
    for bucket in buckets:
        width = len(bucket[0].digest) + 8
        out += _U32.pack(width)
        out += _U64.pack(width * len(bucket))
        for e in bucket:
            out += e.digest
            out += pack(e.offset)


class _Cursor:
    __slots__ = ("base", "capped", "data", "pos")

    def __init__(
        self, data: bytes | bytearray | memoryview, base: int, capped: bool
    ) -> None:
        self.data = memoryview(data).cast("B") if isinstance(data, memoryview) else data
        self.base = base
        self.pos = 0
        self.capped = capped

    def fail(self, what: str, at: int | None = None) -> CarFormatError:
        return CarFormatError(what, offset=self.base + (self.pos if at is None else at))

    def need(self, n: int, what: str) -> None:
        left = len(self.data) - self.pos
        if n > left:
            note = " (more than the blocks in the data can need)" if self.capped else ""
            msg = f"the index ends inside {what}: {n} bytes needed, {left} left{note}"
            raise self.fail(msg)

    def unpack(self, st: struct.Struct, what: str) -> int:
        self.need(st.size, what)
        (value,) = st.unpack_from(self.data, self.pos)
        self.pos += st.size
        return int(value)


def _decode_widths(
    cur: _Cursor, code: int | None, out: list[IndexEntry], positions: list[int]
) -> None:
    start = cur.pos
    count = cur.unpack(_I32, "the bucket count")
    if count < 0:
        raise cur.fail(f"the index bucket count {count} is negative", start)
    prev_width = -1
    data = cur.data
    for _ in range(count):
        wstart = cur.pos
        width = cur.unpack(_U32, "a bucket width")
        length = cur.unpack(_U64, "a bucket length")
        if width < 8 or width > _MAX_WIDTH:
            msg = f"index bucket width {width} is outside [8, {_MAX_WIDTH}]"
            raise cur.fail(msg, wstart)
        if width <= prev_width:
            msg = f"index buckets must be sorted by width; {width} follows {prev_width}"
            raise cur.fail(msg, wstart)
        prev_width = width
        if length % width:
            msg = f"index bucket length {length} is not a multiple of its width {width}"
            raise cur.fail(msg, wstart + 4)
        cur.need(length, f"a bucket of {length // width} entries")
        dlen = width - 8
        pos = cur.pos
        end = pos + length
        prev = b""
        unpack = _U64.unpack_from
        while pos < end:
            digest = bytes(data[pos : pos + dlen])
            if digest < prev:
                raise cur.fail(
                    "index entries in a bucket must be sorted by digest", pos
                )
            prev = digest
            out.append(IndexEntry(code, digest, unpack(data, pos + dlen)[0]))
            positions.append(cur.base + pos)
            pos += width
        cur.pos = end


def decode_index(
    data: bytes | bytearray | memoryview, *, offset: int = 0, capped: bool = False
) -> tuple[CarIndex, list[int]]:
    """Parse an index; also return the absolute offset of every entry.

    Args:
        data: The index bytes.
        offset: Where ``data`` sits in the file.
        capped: ``data`` was cut at a bound derived from the data (used in
            messages about truncation).

    Raises:
        CarFormatError: As [CarIndex.decode][carmigrate.car.lowlevel.CarIndex.decode].
    """
    cur = _Cursor(data, offset, capped)
    try:
        codec, cur.pos = decode_varint(cur.data, 0)
    except FormatError:
        msg = "expected the index codec varint"
        raise cur.fail(msg, 0) from None
    if codec not in _NAMES:
        name = codec_name(codec)
        known = "" if name.startswith("0x") else f" ({name})"
        msg = (
            f"unknown CARv2 index codec 0x{codec:x}{known}; "
            "expected IndexSorted (0x400) or MultihashIndexSorted (0x401)"
        )
        raise cur.fail(msg, 0)
    entries: list[IndexEntry] = []
    positions: list[int] = []
    if codec == INDEX_SORTED:
        _decode_widths(cur, None, entries, positions)
    else:
        start = cur.pos
        count = cur.unpack(_I32, "the hash function count")
        if count < 0:
            raise cur.fail(f"the index hash function count {count} is negative", start)
        prev_code = -1
        for _ in range(count):
            cstart = cur.pos
            code = cur.unpack(_U64, "a multihash code")
            if code <= prev_code:
                msg = f"index groups must be sorted by multihash code; 0x{code:x} follows 0x{prev_code:x}"
                raise cur.fail(msg, cstart)
            prev_code = code
            _decode_widths(cur, code, entries, positions)
    return CarIndex(codec, entries), positions


def index_read_bound(sections: Sequence[tuple[int, bytes, int]]) -> int:
    """The most bytes a truthful index of ``sections`` can take (to cap reads)."""
    groups = {(code, len(d)) for code, d, _ in sections}
    return 64 + sum(len(d) + 8 for _, d, _ in sections) + 24 * len(groups)


def check_index(
    index: CarIndex,
    positions: Sequence[int],
    sections: Sequence[tuple[int, bytes, int]],
    *,
    fully_indexed: bool,
    index_offset: int,
    data_offset: int,
) -> None:
    """Check an index read from a file against the sections found by a scan.

    Every entry must point at a section with that multihash (truthful), and
    every section must have an entry for its multihash (complete); identity
    CIDs need one only when the file says it is fully indexed.

    Args:
        index: The decoded index.
        positions: Absolute offset of each entry.
        sections: ``(hash_code, digest, offset)`` of every section, offsets
            relative to the CARv1 payload.
        fully_indexed: The fully-indexed characteristic.
        index_offset: Absolute offset of the index.
        data_offset: Absolute offset of the CARv1 payload.

    Raises:
        CarFormatError: At the first wrong entry (naming its offset) or, for
            a missing entry, at the index offset.
    """
    digest_only = index.codec == INDEX_SORTED
    if digest_only:
        truth: set[tuple[object, ...]] = {(d, off) for _, d, off in sections}
    else:
        truth = set(sections)
    for entry, at in zip(index.entries, positions, strict=True):
        key = (entry.digest, entry.offset) if digest_only else tuple(entry)
        if key not in truth:
            what = (
                "digest" if digest_only else f"{hash_name(entry.hash_code or 0)} digest"
            )
            msg = (
                f"index entry ({what} {entry.digest.hex()}) points at offset "
                f"{data_offset + entry.offset}, where no section with that multihash starts"
            )
            raise CarFormatError(msg, offset=at)
    present: set[object] = (
        {e.digest for e in index.entries}
        if digest_only
        else {(e.hash_code, e.digest) for e in index.entries}
    )
    for code, digest, off in sections:
        if code == _IDENTITY and not fully_indexed:
            continue
        if (digest if digest_only else (code, digest)) not in present:
            msg = (
                f"the {index.codec_name} index has no entry for the block whose section "
                f"starts at offset {data_offset + off} ({hash_name(code)} {digest.hex()})"
            )
            raise CarFormatError(msg, offset=index_offset)
