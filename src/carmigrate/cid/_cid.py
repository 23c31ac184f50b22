"""The CID value: a bytes-backed, frozen, hashable content identifier."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, SupportsBytes, TypeAlias, final

from carmigrate.cid._codes import CODECS, HASHES, codec_name
from carmigrate.cid._multibase import (
    b58decode,
    b58encode,
    multibase_decode,
    multibase_encode,
)
from carmigrate.cid._multihash import HashCheck, Multihash, UnsupportedHash, hash_digest
from carmigrate.cid._varint import decode_varint, encode_varint
from carmigrate.errors import FormatError

if TYPE_CHECKING:
    from carmigrate.cid._types import Buffer

__all__ = ["CID", "MAX_CID_STRING", "CIDLike", "as_cid"]

_SHA256: Final = 0x12
_DAG_PB: Final = 0x70

MAX_CID_STRING: Final = 4096
"""Longest CID string parsed; base58 and base36 decoding is quadratic in length."""

CIDLike: TypeAlias = "CID | str | bytes | bytearray | memoryview | SupportsBytes"
"""Anything a CID is accepted as: a CID, its string or binary form, or an
object with ``__bytes__`` giving the binary form (such as ``multiformats.CID``)."""


def _resolve(name_or_code: str | int, table: dict[str, int], what: str) -> int:
    if isinstance(name_or_code, int):
        return name_or_code
    try:
        return table[name_or_code]
    except KeyError:
        msg = f"unknown {what} {name_or_code!r}; known: {', '.join(sorted(table))}"
        raise ValueError(msg) from None


@final
class CID:
    """A content identifier (CIDv0 or CIDv1).

    The value is its binary encoding: two CIDs are equal exactly when their
    binary forms are, and ordering is by binary form. Instances are frozen
    and cheap to hash, so they work as dict keys and in sets.

    Build one with [decode][carmigrate.cid.CID.decode] (string or bytes),
    [read][carmigrate.cid.CID.read] (from inside a larger buffer),
    [create][carmigrate.cid.CID.create] (from parts) or
    [from_data][carmigrate.cid.CID.from_data] (by hashing data).
    """

    __slots__ = ("_buf", "_dstart")

    _buf: bytes
    _dstart: int

    def __init__(self, value: CIDLike) -> None:
        other = as_cid(value)
        _set_buf(self, other._buf)
        _set_dstart(self, other._dstart)

    def __setattr__(self, name: str, value: object) -> None:
        msg = "CID is immutable"
        raise AttributeError(msg)

    # -- construction -------------------------------------------------------

    @classmethod
    def create(cls, version: int, codec: str | int, multihash: Multihash) -> CID:
        """Build a CID from its parts.

        Args:
            version: 0 or 1. Version 0 requires codec dag-pb and a 32-byte
                sha2-256 multihash.
            codec: Content codec, by multicodec name or code.
            multihash: The multihash of the content.

        Raises:
            ValueError: For an unknown codec name or an impossible v0.
        """
        code = _resolve(codec, CODECS, "codec")
        mh = bytes(multihash)
        if version == 0:
            if (
                code != _DAG_PB
                or multihash.code != _SHA256
                or len(multihash.digest) != 32
            ):
                msg = "CIDv0 requires codec dag-pb and a 32-byte sha2-256 multihash"
                raise ValueError(msg)
            return _make(mh, 2)
        if version != 1:
            msg = f"CID version must be 0 or 1, got {version}"
            raise ValueError(msg)
        prefix = b"\x01" + encode_varint(code)
        return _make(prefix + mh, len(mh) - len(multihash.digest) + len(prefix))

    @classmethod
    def from_data(
        cls,
        data: Buffer,
        *,
        codec: str | int = "raw",
        hash: str | int = "sha2-256",
        version: int = 1,
    ) -> CID:
        """Hash ``data`` and return its CID (CIDv1 raw/sha2-256 by default).

        Raises:
            UnsupportedHash: If the hash function cannot be computed.
        """
        hcode = _resolve(hash, HASHES, "hash function")
        return cls.create(version, codec, Multihash(hcode, hash_digest(hcode, data)))

    @classmethod
    def decode(cls, value: str | Buffer) -> CID:
        """Parse a CID from its string or binary form, exactly.

        Strings may be CIDv0 (base58btc, ``Qm…``) or a multibase-prefixed
        CIDv1 (base32, base58btc, base36, base16, base64 are understood).

        Raises:
            FormatError: If the value is not a well-formed CID or has
                trailing bytes.
        """
        if isinstance(value, str):
            return cls.from_string(value)
        return cls.from_bytes(value)

    @classmethod
    def from_string(cls, text: str) -> CID:
        """Parse a CID string (see [decode][carmigrate.cid.CID.decode]).

        Raises:
            FormatError: If the string is not a CID.
        """
        if len(text) > MAX_CID_STRING:
            msg = (
                f"CID string of {len(text)} characters is longer than {MAX_CID_STRING}"
            )
            raise FormatError(msg)
        if len(text) == 46 and text.startswith("Qm"):
            return cls.from_bytes(b58decode(text))
        _, data = multibase_decode(text)
        if data[:1] == b"\x12":
            msg = (
                f"{text!r}: a CIDv0 must be written in base58btc "
                "without a multibase prefix"
            )
            raise FormatError(msg)
        return cls.from_bytes(data)

    @classmethod
    def from_bytes(cls, data: Buffer) -> CID:
        """Parse a binary CID that spans all of ``data``.

        Raises:
            FormatError: If the bytes are not a CID or have trailing data.
        """
        cid, end = _read(data, 0)
        if end != len(data):
            msg = f"{len(data) - end} trailing bytes after a {end}-byte CID"
            raise FormatError(msg)
        return cid

    @classmethod
    def read(cls, buf: Buffer, offset: int = 0) -> tuple[CID, int]:
        """Parse the binary CID that starts at ``offset`` inside ``buf``.

        This is the hot path used when scanning CAR sections; it copies only
        the CID's own bytes.

        Returns:
            ``(cid, end)`` where ``end`` is the offset just past the CID.

        Raises:
            FormatError: If no well-formed CID starts at ``offset``; the
                message names the offset.
        """
        return _read(buf, offset)

    # -- accessors ----------------------------------------------------------

    @property
    def version(self) -> int:
        """0 or 1."""
        return 0 if self._buf[0] == _SHA256 else 1

    @property
    def codec(self) -> int:
        """The content codec code (``0x70`` for every CIDv0)."""
        buf = self._buf
        if buf[0] == _SHA256:
            return _DAG_PB
        c = buf[1]
        return c if c < 0x80 else decode_varint(buf, 1)[0]

    @property
    def codec_name(self) -> str:
        """The content codec's multicodec name, or its hex code if unknown."""
        return codec_name(self.codec)

    @property
    def hash_code(self) -> int:
        """The multihash function code."""
        buf = self._buf
        if buf[0] == _SHA256:
            return _SHA256
        if buf[1] < 0x80 and buf[2] < 0x80:
            return buf[2]
        return decode_varint(buf, decode_varint(buf, 1)[1])[0]

    @property
    def digest(self) -> bytes:
        """The multihash digest bytes."""
        return self._buf[self._dstart :]

    @property
    def multihash(self) -> Multihash:
        """The multihash as a value."""
        return Multihash(self.hash_code, self._buf[self._dstart :])

    @property
    def multihash_bytes(self) -> bytes:
        """The binary multihash (code, length, digest)."""
        buf = self._buf
        return buf if buf[0] == _SHA256 else buf[decode_varint(buf, 1)[1] :]

    def __bytes__(self) -> bytes:
        return self._buf

    def to_v1(self) -> CID:
        """This CID as CIDv1 (itself if already v1)."""
        if self._buf[0] != _SHA256:
            return self
        return _make(b"\x01\x70" + self._buf, 4)

    def encode(self, base: str | None = None) -> str:
        """The string form.

        Args:
            base: A multibase name. ``None`` gives the canonical form:
                base58btc without prefix for CIDv0, base32 for CIDv1.

        Raises:
            ValueError: If a CIDv0 is asked for in a base other than
                base58btc (convert with [to_v1][carmigrate.cid.CID.to_v1]).
        """
        if self._buf[0] == _SHA256:
            if base not in (None, "base58btc"):
                msg = "a CIDv0 can only be written in base58btc; call to_v1() first"
                raise ValueError(msg)
            return b58encode(self._buf)
        return multibase_encode(self._buf, base or "base32")

    def __str__(self) -> str:
        return self.encode()

    def __repr__(self) -> str:
        return f"CID({self.encode()!r})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is CID:
            return self._buf == other._buf
        return NotImplemented

    def __lt__(self, other: CID) -> bool:
        return self._buf < other._buf

    def __le__(self, other: CID) -> bool:
        return self._buf <= other._buf

    def __gt__(self, other: CID) -> bool:
        return self._buf > other._buf

    def __ge__(self, other: CID) -> bool:
        return self._buf >= other._buf

    def __hash__(self) -> int:
        return hash(self._buf)

    def __reduce__(self) -> tuple[object, tuple[bytes]]:
        return (CID.from_bytes, (self._buf,))

    # -- verification ---------------------------------------------------------

    def check(self, data: Buffer) -> HashCheck:
        """Compare ``data`` with this CID's digest.

        Returns:
            ``HashCheck.VERIFIED``, ``HashCheck.MISMATCH``, or
            ``HashCheck.UNVERIFIABLE`` when the hash function is not
            supported (never reported as verified).
        """
        return self.multihash.check(data)

    def verify(self, data: Buffer) -> bool:
        """Whether ``data`` hashes to this CID's digest.

        Returns:
            ``True`` on a match, ``False`` on a mismatch.

        Raises:
            UnsupportedHash: If the hash function is not supported; the data
                is then neither verified nor refuted. Use
                [check][carmigrate.cid.CID.check] to get ``UNVERIFIABLE``
                instead of an exception.
        """
        result = self.check(data)
        if result is HashCheck.UNVERIFIABLE:
            raise UnsupportedHash(self.hash_code)
        return result is HashCheck.VERIFIED

    # -- interop ----------------------------------------------------------------

    def to_multiformats(self) -> object:
        """This CID as a ``multiformats.CID`` (needs the ``multiformats`` package)."""
        from multiformats import CID as MultiformatsCID

        return MultiformatsCID.decode(self._buf)


_set_buf = CID.__dict__["_buf"].__set__
_set_dstart = CID.__dict__["_dstart"].__set__
_new = object.__new__


def _make(buf: bytes, dstart: int) -> CID:
    cid = _new(CID)
    _set_buf(cid, buf)
    _set_dstart(cid, dstart)
    return cid


def _read(buf: Buffer, offset: int) -> tuple[CID, int]:
    n = len(buf)
    if offset >= n:
        msg = f"expected a CID at offset {offset}, found end of data"
        raise FormatError(msg)
    b0 = buf[offset]
    if b0 == _SHA256:
        # CIDv0: a bare sha2-256 multihash of 32 bytes.
        end = offset + 34
        if end > n or buf[offset + 1] != 0x20:
            msg = f"CIDv0 at offset {offset} must be 0x12 0x20 followed by 32 bytes"
            raise FormatError(msg)
        return _make(bytes(buf[offset:end]), 2), end
    if b0 != 1:
        msg = (
            f"expected CID version 1 or a CIDv0 multihash at offset {offset}, "
            f"found byte 0x{b0:02x}"
        )
        raise FormatError(msg)
    pos = offset + 1
    if pos + 3 <= n and buf[pos] < 0x80 and buf[pos + 1] < 0x80 and buf[pos + 2] < 0x80:
        dstart = pos + 3
        end = dstart + buf[pos + 2]
    else:
        _, pos = decode_varint(buf, pos)
        _, pos = decode_varint(buf, pos)
        length, dstart = decode_varint(buf, pos)
        end = dstart + length
    if end > n:
        msg = (
            f"CID at offset {offset} declares a {end - dstart}-byte digest "
            f"but only {n - dstart} bytes follow"
        )
        raise FormatError(msg)
    raw = (
        buf
        if (offset == 0 and end == n and buf.__class__ is bytes)
        else bytes(buf[offset:end])
    )
    return _make(raw, dstart - offset), end


def as_cid(value: CIDLike) -> CID:
    """Coerce a CID, a CID string, binary CID or ``multiformats.CID`` to a CID.

    Raises:
        FormatError: If the value does not parse as a CID.
        TypeError: If the value is of no accepted type.
    """
    if value.__class__ is CID:
        return value
    if isinstance(value, str):
        return CID.from_string(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return CID.from_bytes(value)
    if hasattr(value, "__bytes__"):
        return CID.from_bytes(bytes(value))
    msg = f"expected a CID, CID string or binary CID, got {type(value).__name__}"
    raise TypeError(msg)
