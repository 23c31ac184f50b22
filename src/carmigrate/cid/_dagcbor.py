"""DAG-CBOR: canonical on encode, strict on decode.

The one place carmigrate turns IPLD data into bytes and back (CAR headers,
records, plan ids), so the codec can be swapped without touching callers.

Data model mapping: ``None``, ``bool``, ``int`` (64-bit range), ``float``
(finite, always written as 64-bit), ``str``, ``bytes``, ``list``, ``dict``
with ``str`` keys, and [CID][carmigrate.cid.CID] (tag 42).

Decoding rejects everything the DAG-CBOR spec forbids: indefinite lengths,
non-minimal integer and length encodings, tags other than 42, map keys that
are not strings or are out of canonical order or repeated, simple values other
than false/true/null, floats not 64-bit, NaN and infinities, and trailing
bytes. Nesting is limited to guard the decoder's stack.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final, TypeAlias

from carmigrate.cid._cid import CID
from carmigrate.errors import FormatError

if TYPE_CHECKING:
    from carmigrate.cid._types import Buffer

__all__ = ["IPLDValue", "decode_dag_cbor", "encode_dag_cbor"]

IPLDValue: TypeAlias = (
    "bool | int | float | str | bytes | CID | list[IPLDValue] | dict[str, IPLDValue]"
    " | None"
)
"""A value of the IPLD data model as carmigrate represents it."""

MAX_DEPTH: Final = 256
_U64: Final = 1 << 64


def _head(major: int, n: int) -> bytes:
    mt = major << 5
    if n < 24:
        return bytes((mt | n,))
    if n < 0x100:
        return bytes((mt | 24, n))
    if n < 0x10000:
        return bytes((mt | 25,)) + n.to_bytes(2, "big")
    if n < 0x100000000:
        return bytes((mt | 26,)) + n.to_bytes(4, "big")
    return bytes((mt | 27,)) + n.to_bytes(8, "big")


def _key_order(item: tuple[bytes, object]) -> tuple[int, bytes]:
    return (len(item[0]), item[0])


def _encode(value: object, out: bytearray, depth: int) -> None:
    if depth > MAX_DEPTH:
        msg = f"value nests deeper than {MAX_DEPTH} levels"
        raise ValueError(msg)
    if value is None:
        out.append(0xF6)
    elif value is True:
        out.append(0xF5)
    elif value is False:
        out.append(0xF4)
    elif isinstance(value, int):
        if value >= 0:
            if value >= _U64:
                msg = f"integer {value} does not fit in 64 bits"
                raise ValueError(msg)
            out += _head(0, value)
        else:
            if -value - 1 >= _U64:
                msg = f"integer {value} does not fit in 64 bits"
                raise ValueError(msg)
            out += _head(1, -value - 1)
    elif isinstance(value, float):
        if not math.isfinite(value):
            msg = "DAG-CBOR cannot encode NaN or infinity"
            raise ValueError(msg)
        out.append(0xFB)
        out += struct.pack(">d", value)
    elif isinstance(value, bytes | bytearray | memoryview):
        b = bytes(value)
        out += _head(2, len(b))
        out += b
    elif isinstance(value, str):
        b = value.encode("utf-8")
        out += _head(3, len(b))
        out += b
    elif isinstance(value, CID):
        raw = b"\x00" + bytes(value)
        out += b"\xd8\x2a"
        out += _head(2, len(raw))
        out += raw
    elif isinstance(value, Mapping):
        items = []
        for k, v in value.items():
            if not isinstance(k, str):
                msg = f"DAG-CBOR map keys must be strings, got {type(k).__name__}"
                raise TypeError(msg)
            items.append((k.encode("utf-8"), v))
        items.sort(key=_key_order)
        out += _head(5, len(items))
        for kb, v in items:
            out += _head(3, len(kb))
            out += kb
            _encode(v, out, depth + 1)
    elif isinstance(value, Sequence):
        out += _head(4, len(value))
        for v in value:
            _encode(v, out, depth + 1)
    else:
        msg = f"cannot encode {type(value).__name__} as DAG-CBOR"
        raise TypeError(msg)


def encode_dag_cbor(value: object) -> bytes:
    """Encode an IPLD value as canonical DAG-CBOR.

    Map keys are sorted length-first then bytewise, integers and lengths use
    their shortest form, floats are always 64-bit.

    Raises:
        TypeError: For a value outside the IPLD data model.
        ValueError: For integers beyond 64 bits, NaN or infinity, or
            nesting deeper than 256.
    """
    out = bytearray()
    _encode(value, out, 0)
    return bytes(out)


class _Decoder:
    __slots__ = ("base", "buf", "n", "pos")

    def __init__(self, buf: Buffer, base: int) -> None:
        self.buf = buf
        self.n = len(buf)
        self.pos = 0
        self.base = base

    def fail(self, what: str, at: int | None = None) -> FormatError:
        where = self.base + (self.pos if at is None else at)
        return FormatError(f"invalid DAG-CBOR at byte offset {where}: {what}")

    def take(self, k: int) -> bytes:
        end = self.pos + k
        if end > self.n:
            raise self.fail(f"expected {k} more bytes, found {self.n - self.pos}")
        b = bytes(self.buf[self.pos : end])
        self.pos = end
        return b

    def head(self) -> tuple[int, int, int]:
        start = self.pos
        if start >= self.n:
            raise self.fail("unexpected end of data")
        ib = self.buf[start]
        self.pos += 1
        major, info = ib >> 5, ib & 0x1F
        if info < 24:
            return major, info, info
        if info > 27:
            if info == 31:
                raise self.fail("indefinite-length items are not allowed", start)
            raise self.fail(f"reserved additional information {info}", start)
        if major == 7:
            return major, info, 0
        size = 1 << (info - 24)
        val = int.from_bytes(self.take(size), "big")
        minimum = 24 if size == 1 else 1 << (4 * size)
        if val < minimum:
            raise self.fail("integer or length not minimally encoded", start)
        return major, info, val

    def value(self, depth: int) -> object:
        if depth > MAX_DEPTH:
            raise self.fail(f"nesting deeper than {MAX_DEPTH} levels")
        start = self.pos
        major, info, val = self.head()
        if major == 0:
            return val
        if major == 1:
            return -1 - val
        if major == 2:
            return self.take(val)
        if major == 3:
            raw = self.take(val)
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                raise self.fail("string is not valid UTF-8", start) from None
        if major == 4:
            if val > self.n - self.pos:
                raise self.fail(
                    f"list of {val} items cannot fit in the remaining bytes", start
                )
            return [self.value(depth + 1) for _ in range(val)]
        if major == 5:
            if val > self.n - self.pos:
                raise self.fail(
                    f"map of {val} entries cannot fit in the remaining bytes", start
                )
            out: dict[str, object] = {}
            prev: bytes | None = None
            for _ in range(val):
                kstart = self.pos
                kmajor, _, klen = self.head()
                if kmajor != 3:
                    raise self.fail("map keys must be strings", kstart)
                kb = self.take(klen)
                if prev is not None and (len(prev), prev) >= (len(kb), kb):
                    what = "repeated" if prev == kb else "out of canonical order"
                    raise self.fail(f"map key {kb!r} is {what}", kstart)
                prev = kb
                try:
                    key = kb.decode("utf-8")
                except UnicodeDecodeError:
                    raise self.fail("map key is not valid UTF-8", kstart) from None
                out[key] = self.value(depth + 1)
            return out
        if major == 6:
            if val != 42:
                raise self.fail(f"tag {val} is not allowed (only tag 42, CID)", start)
            bstart = self.pos
            bmajor, _, blen = self.head()
            if bmajor != 2:
                raise self.fail("tag 42 must wrap a byte string", bstart)
            raw = self.take(blen)
            if raw[:1] != b"\x00":
                raise self.fail(
                    "a CID in tag 42 must start with the 0x00 multibase prefix", bstart
                )
            try:
                return CID.from_bytes(raw[1:])
            except FormatError as exc:
                raise self.fail(f"bad CID in tag 42: {exc}", bstart) from None
        # major 7
        if info == 20:
            return False
        if info == 21:
            return True
        if info == 22:
            return None
        if info == 27:
            f = struct.unpack(">d", self.take(8))[0]
            if not math.isfinite(f):
                raise self.fail("NaN and infinities are not allowed", start)
            return f
        if info in (25, 26):
            raise self.fail("floats must be encoded as 64-bit", start)
        raise self.fail(f"simple value {info} is not allowed", start)


def decode_dag_cbor(data: Buffer, *, offset: int = 0) -> object:
    """Decode exactly one DAG-CBOR value spanning all of ``data``.

    Args:
        data: The encoded bytes.
        offset: Added to positions in error messages (where ``data`` sits in
            a larger file).

    Returns:
        The value (see the module docs for the type mapping).

    Raises:
        FormatError: On anything DAG-CBOR forbids, naming the byte offset.
    """
    dec = _Decoder(data, offset)
    value = dec.value(0)
    if dec.pos != dec.n:
        raise dec.fail(f"{dec.n - dec.pos} trailing bytes after the value")
    return value
