"""The pure-Python reference: commP as the spec states it (spec §2-§4).

This is the executable specification the compiled core is checked against:
readable first, fast never (tens of MB/s at best). One quad at a time, the
payload is fr32-expanded into four leaves; each pair of leaves is hashed into
a level-1 node and pushed onto a stack that keeps at most one pending node
per level. At the end the partial quad is zero-filled and every pending node
is joined with the zero commitment of its level on its right.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from carmigrate.commp._fr32 import pad_quad
from carmigrate.commp._sizes import MAX_HEIGHT, QUAD
from carmigrate.commp._zero import ZERO_COMMITMENTS

if TYPE_CHECKING:
    from carmigrate.cid import Buffer

__all__ = ["ReferenceEngine", "hash_node"]


def hash_node(left: Buffer, right: Buffer) -> bytes:
    """``H(left || right)``: SHA-256 with ``digest[31] &= 0x3f`` (spec §3).

    Args:
        left: The left child, 32 bytes.
        right: The right child, 32 bytes.

    Returns:
        The 32-byte parent node.
    """
    digest = bytearray(hashlib.sha256(bytes(left) + bytes(right)).digest())
    digest[31] &= 0x3F
    return bytes(digest)


def _push(pending: list[bytes | None], level: int, node: bytes) -> None:
    """Add a node of ``level`` to the right of everything pushed so far."""
    while pending[level] is not None:
        left = pending[level]
        assert left is not None
        pending[level] = None
        node = hash_node(left, node)
        level += 1
    pending[level] = node


def _push_quad(pending: list[bytes | None], quad: Buffer) -> None:
    leaves = pad_quad(quad)
    _push(pending, 1, hash_node(leaves[0:32], leaves[32:64]))
    _push(pending, 1, hash_node(leaves[64:96], leaves[96:128]))


class ReferenceEngine:
    """Streaming tree state of the reference implementation.

    State: ``pending[l]``, the pending left node of level ``l`` (or None),
    and the bytes of the current incomplete quad.
    """

    __slots__ = ("_partial", "_pending")

    def __init__(self) -> None:
        self._pending: list[bytes | None] = [None] * (MAX_HEIGHT + 1)
        self._partial = bytearray()

    def update(self, data: memoryview) -> None:
        """Absorb more payload bytes."""
        pos = 0
        if self._partial:
            pos = min(len(data), QUAD - len(self._partial))
            self._partial += data[:pos]
            if len(self._partial) < QUAD:
                return
            _push_quad(self._pending, self._partial)
            self._partial.clear()
        end = pos + (len(data) - pos) // QUAD * QUAD
        for off in range(pos, end, QUAD):
            _push_quad(self._pending, data[off : off + QUAD])
        self._partial += data[end:]

    def root(self, height: int) -> bytes:
        """The root of the tree of ``height`` over everything absorbed so far.

        Leaves the state unchanged. ``height`` must be large enough for the
        data (the caller computes it from the payload size).
        """
        pending = list(self._pending)
        if self._partial:
            _push_quad(pending, bytes(self._partial).ljust(QUAD, b"\0"))
        acc: bytes | None = None
        for level in range(1, height):
            left = pending[level]
            if left is not None:
                acc = hash_node(left, ZERO_COMMITMENTS[level] if acc is None else acc)
            elif acc is not None:
                acc = hash_node(acc, ZERO_COMMITMENTS[level])
        if acc is not None:
            return acc
        return pending[height] or ZERO_COMMITMENTS[height]

    def copy(self) -> ReferenceEngine:
        """An independent copy of the state."""
        other = ReferenceEngine.__new__(ReferenceEngine)
        other._pending = list(self._pending)
        other._partial = bytearray(self._partial)
        return other
