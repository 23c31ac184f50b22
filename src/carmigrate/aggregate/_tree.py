"""A sparse Merkle tree over a deal: a few known nodes, zero commitments elsewhere.

FRC-0058 aggregates are perfect binary trees of height ``H`` over the padded
deal bytes in which only piece roots and index entries are known; every other
subtree is all zeros and its root is a zero commitment. This module stores
the known nodes level by level, computes their ancestors, and reads sibling
paths for inclusion proofs. Nodes are hashed with
[carmigrate.commp.lowlevel.hash_node][] (commp-spec §3).
"""

from __future__ import annotations

from typing import Final

from carmigrate.commp.lowlevel import ZERO_COMMITMENTS, hash_node

__all__ = ["MAX_HEIGHT", "SparseTree"]

MAX_HEIGHT: Final = len(ZERO_COMMITMENTS) - 1
"""The tallest tree this module builds or a proof may describe."""


class SparseTree:
    """Known nodes of a perfect binary tree of a given height; zeros elsewhere.

    State: one dict per level mapping node index to its 32-byte value. Call
    ``build`` once after setting the known nodes; afterwards the tree is
    read-only.
    """

    __slots__ = ("height", "levels")

    def __init__(self, height: int) -> None:
        if not 0 <= height <= MAX_HEIGHT:
            msg = f"tree height {height} is outside [0, {MAX_HEIGHT}]"
            raise ValueError(msg)
        self.height = height
        self.levels: list[dict[int, bytes]] = [{} for _ in range(height + 1)]

    def set(self, level: int, index: int, node: bytes) -> None:
        """Place a known node; call before ``build``."""
        self.levels[level][index] = node

    def build(self) -> bytes:
        """Hash every known node up to the root; return the root."""
        h = hash_node
        for level in range(self.height):
            below = self.levels[level]
            above = self.levels[level + 1]
            z = ZERO_COMMITMENTS[level]
            for idx in sorted(below):
                parent = idx >> 1
                if parent in above:
                    continue
                base = parent << 1
                above[parent] = h(below.get(base, z), below.get(base + 1, z))
        return self.root

    @property
    def root(self) -> bytes:
        """The root (the zero commitment of the height if nothing is set)."""
        return self.levels[self.height].get(0, ZERO_COMMITMENTS[self.height])

    def node(self, level: int, index: int) -> bytes:
        """The value of any node (zero commitment where nothing is known)."""
        return self.levels[level].get(index, ZERO_COMMITMENTS[level])

    def path(self, level: int, index: int) -> list[bytes]:
        """Siblings of node ``(level, index)`` from its level up to below the root."""
        out = []
        levels = self.levels
        for lv in range(level, self.height):
            out.append(levels[lv].get(index ^ 1, ZERO_COMMITMENTS[lv]))
            index >>= 1
        return out
