"""fr32 padding: 127 payload bytes become four 254-bit leaves (spec §2).

Read a quad of 127 bytes as one little-endian integer ``X``; leaf ``i``
(``i = 0..3``) is ``(X >> 254·i) mod 2**254`` written as 32 little-endian
bytes, so the top two bits of every leaf's last byte are zero and each leaf
is a valid BLS12-381 scalar. This module is the readable integer form; the
compiled core uses the equivalent shift form.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from carmigrate.commp._loader import NATIVE
from carmigrate.errors import PieceError

if TYPE_CHECKING:
    from carmigrate.cid import Buffer

__all__ = ["fr32_pad", "fr32_unpad", "pad_quad"]

_MASK254: Final = (1 << 254) - 1


def pad_quad(quad: Buffer) -> bytes:
    """fr32-expand exactly one quad (127 bytes) into 128 bytes of leaves."""
    x = int.from_bytes(quad, "little")
    return b"".join(
        ((x >> (254 * i)) & _MASK254).to_bytes(32, "little") for i in range(4)
    )


def _unpad_quad(padded: Buffer, offset: int) -> bytes:
    x = 0
    for i in range(4):
        leaf = int.from_bytes(padded[32 * i : 32 * i + 32], "little")
        if leaf >> 254:
            msg = (
                f"bytes {offset + 32 * i}..{offset + 32 * i + 31} are not an fr32 leaf: "
                f"the top two bits of byte {offset + 32 * i + 31} are set"
            )
            raise PieceError(msg)
        x |= leaf << (254 * i)
    return x.to_bytes(127, "little")


def fr32_pad(data: Buffer) -> bytes:
    """fr32-expand whole quads: ``len(data)`` must be a multiple of 127.

    Payload bytes ``[127j, 127j + 127)`` become padded bytes
    ``[128j, 128j + 128)``. To pad a payload into a piece, append zeros up to
    its unpadded piece size first.

    Args:
        data: Payload bytes, a whole number of 127-byte quads.

    Returns:
        ``len(data) / 127 * 128`` bytes.

    Raises:
        PieceError: If ``len(data)`` is not a multiple of 127.
    """
    mv = memoryview(data).cast("B")
    if len(mv) % 127:
        msg = f"fr32 padding needs whole 127-byte quads; got {len(mv)} bytes"
        raise PieceError(msg)
    if NATIVE is not None:
        return NATIVE.fr32_pad(mv)
    return b"".join(pad_quad(mv[i : i + 127]) for i in range(0, len(mv), 127))


def fr32_unpad(data: Buffer) -> bytes:
    """Invert [fr32_pad][carmigrate.commp.lowlevel.fr32_pad]: 128 padded bytes to 127.

    Args:
        data: fr32-padded bytes, a whole number of 128-byte quads.

    Returns:
        ``len(data) / 128 * 127`` bytes.

    Raises:
        PieceError: If ``len(data)`` is not a multiple of 128 or a leaf has
            either of its top two bits set (the message names the byte).
    """
    mv = memoryview(data).cast("B")
    if len(mv) % 128:
        msg = f"fr32 unpadding needs whole 128-byte quads; got {len(mv)} bytes"
        raise PieceError(msg)
    return b"".join(_unpad_quad(mv[i : i + 128], i) for i in range(0, len(mv), 128))
