"""Unsigned varints as multiformats defines them (unsigned-varint spec).

Seven bits per byte, least significant group first, high bit set on every
byte but the last. The spec caps varints at 9 bytes (63 bits) and requires
the minimal encoding; both rules are enforced on decode.
"""

from __future__ import annotations

from carmigrate.errors import FormatError

__all__ = ["MAX_VARINT_BYTES", "decode_varint", "encode_varint"]

MAX_VARINT_BYTES = 9
"""The longest varint the multiformats spec allows (63 bits of value)."""

_SMALL = [bytes([i]) for i in range(128)]


def encode_varint(value: int) -> bytes:
    """Encode a non-negative integer as an unsigned varint.

    Args:
        value: An integer in ``[0, 2**63)``.

    Returns:
        The minimal encoding.

    Raises:
        ValueError: If ``value`` is negative or needs more than 63 bits.
    """
    if 0 <= value < 128:
        return _SMALL[value]
    if value < 0 or value >= 1 << 63:
        msg = f"varint value {value} is outside [0, 2**63)"
        raise ValueError(msg)
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(
    buf: bytes | bytearray | memoryview, offset: int = 0
) -> tuple[int, int]:
    """Decode one unsigned varint from ``buf`` starting at ``offset``.

    Args:
        buf: The bytes to read from.
        offset: Where the varint starts.

    Returns:
        ``(value, end)``: the value and the offset just past the varint.

    Raises:
        FormatError: If the buffer ends inside the varint, the varint is
            longer than 9 bytes, or the encoding is not minimal. The message
            names the offset.
    """
    try:
        b = buf[offset]
    except IndexError:
        msg = f"expected a varint at offset {offset}, found end of data"
        raise FormatError(msg) from None
    if b < 0x80:
        return b, offset + 1
    value = b & 0x7F
    shift = 7
    pos = offset + 1
    n = len(buf)
    while True:
        if pos >= n:
            msg = f"varint starting at offset {offset} is cut short by the end of data"
            raise FormatError(msg)
        if pos - offset >= MAX_VARINT_BYTES:
            msg = (
                f"varint starting at offset {offset} is longer than "
                f"{MAX_VARINT_BYTES} bytes"
            )
            raise FormatError(msg)
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            if b == 0:
                msg = f"varint starting at offset {offset} is not minimally encoded"
                raise FormatError(msg)
            return value, pos
        shift += 7
