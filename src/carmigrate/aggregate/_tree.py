"""A sparse Merkle tree over a deal: a few known nodes, zero commitments elsewhere.

FRC-0058 aggregates are perfect binary trees of height ``H`` over the padded
deal bytes in which only piece roots and index entries are known; every other
subtree is all zeros and its root is a zero commitment. This module stores
the known nodes level by level, computes their ancestors, and reads sibling
paths for inclusion proofs. Node hashing is sha2-256 with the top two bits
of the last byte cleared (commp-spec §3).
"""

from __future__ import annotations

from hashlib import sha256
from typing import Final

__all__ = ["MAX_HEIGHT", "ZERO", "SparseTree", "node_hash"]

MAX_HEIGHT: Final = 63
"""The tallest tree a proof may describe (commp-spec §8)."""


def node_hash(left: bytes, right: bytes) -> bytes:
    """``H(left || right)``: sha2-256 truncated to 254 bits."""
    d = sha256(left + right).digest()
    return d[:31] + _MASK[d[31]]


_MASK: Final = [bytes((b & 0x3F,)) for b in range(256)]


def _zero_table() -> tuple[bytes, ...]:
    z = [bytes(32)]
    for _ in range(MAX_HEIGHT):
        z.append(node_hash(z[-1], z[-1]))
    return tuple(z)


ZERO: Final = _zero_table()
"""``ZERO[l]`` is the root of an all-zero subtree of ``2**l`` leaves."""


class SparseTree:
    """Known nodes of a perfect binary tree of a given height; zeros elsewhere.

    State: one dict per level mapping node index to its 32-byte value. Call
    [build][carmigrate.aggregate._tree.SparseTree.build] once after setting the
    known nodes; afterwards the tree is read-only.
    """

    __slots__ = ("_built", "height", "levels")

    def __init__(self, height: int) -> None:
        if not 0 <= height <= MAX_HEIGHT:
            msg = f"tree height {height} is outside [0, {MAX_HEIGHT}]"
            raise ValueError(msg)
        self.height = height
        self.levels: list[dict[int, bytes]] = [{} for _ in range(height + 1)]
        self._built = False

    def set(self, level: int, index: int, node: bytes) -> None:
        """Place a known node; call before ``build``."""
        self.levels[level][index] = node

    def build(self) -> bytes:
        """Hash every known node up to the root; return the root."""
        h = node_hash
        zero = ZERO
        for level in range(self.height):
            below = self.levels[level]
            above = self.levels[level + 1]
            z = zero[level]
            for idx in sorted(below):
                parent = idx >> 1
                if parent in above:
                    continue
                base = parent << 1
                left = below.get(base, z)
                right = below.get(base + 1, z)
                above[parent] = h(left, right)
        self._built = True
        return self.root

    @property
    def root(self) -> bytes:
        """The root (the zero commitment of the height if nothing is set)."""
        return self.levels[self.height].get(0, ZERO[self.height])

    def node(self, level: int, index: int) -> bytes:
        """The value of any node (zero commitment where nothing is known)."""
        return self.levels[level].get(index, ZERO[level])

    def path(self, level: int, index: int) -> list[bytes]:
        """Siblings of node ``(level, index)`` from its level up to below the root."""
        out = []
        levels = self.levels
        for lv in range(level, self.height):
            out.append(levels[lv].get(index ^ 1, ZERO[lv]))
            index >>= 1
        return out
