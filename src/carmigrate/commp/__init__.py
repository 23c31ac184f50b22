"""Piece commitments (commP) and PieceCIDs for Filecoin.

Every CAR that goes into a Filecoin deal is identified by its piece
commitment: the root of a binary SHA-256 (truncated to 254 bits) Merkle tree
over the fr32-padded payload. This package computes it in bounded memory,
converts between the three sizes of a piece, and encodes and decodes
PieceCIDs v1 (``baga…``) and v2 (FRC-0069, ``bafkzcib…``).

Two implementations sit behind the same API: a pure-Python reference (the
executable spec) and a compiled core (SHA-NI, ARMv8 SHA-2 or portable C,
chosen at run time, GIL released, several threads). [IMPLEMENTATION][carmigrate.commp.IMPLEMENTATION]
names the active one; ``CARMIGRATE_COMMP=reference`` forces the reference
and ``CARMIGRATE_COMMP=native`` requires the compiled core.

The steps of the algorithm (fr32 padding, the node hash, zero commitments)
are in [carmigrate.commp.lowlevel][].

Spec: commp-spec §0-§6 (sizes, fr32, tree, zero commitments, PieceCID v1
and v2); FRC-0069.
"""

from carmigrate.commp._backend import IMPLEMENTATION, available_implementations
from carmigrate.commp._hasher import GO_MIN_PAYLOAD, PieceHasher, commp
from carmigrate.commp._piece import PieceInfo, to_piece_cid_v1, to_piece_cid_v2
from carmigrate.commp._sizes import (
    MAX_HEIGHT,
    MIN_HEIGHT,
    PaddedPieceSize,
    PayloadSize,
    UnpaddedPieceSize,
)

__all__ = [
    "GO_MIN_PAYLOAD",
    "IMPLEMENTATION",
    "MAX_HEIGHT",
    "MIN_HEIGHT",
    "PaddedPieceSize",
    "PayloadSize",
    "PieceHasher",
    "PieceInfo",
    "UnpaddedPieceSize",
    "available_implementations",
    "commp",
    "to_piece_cid_v1",
    "to_piece_cid_v2",
]
