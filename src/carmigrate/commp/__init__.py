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

from typing import TYPE_CHECKING

from carmigrate._lazy import lazy_names

# chosen at import (CARMIGRATE_COMMP), so a bad choice fails the import itself
from carmigrate.commp._backend import IMPLEMENTATION, available_implementations

if TYPE_CHECKING:
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

# Names load from their submodules on first use (PEP 562): importing this
# package costs nothing until one is used, so the command line starts fast.
_SOURCES: dict[str, str] = {
    "GO_MIN_PAYLOAD": "carmigrate.commp._hasher",
    "MAX_HEIGHT": "carmigrate.commp._sizes",
    "MIN_HEIGHT": "carmigrate.commp._sizes",
    "PaddedPieceSize": "carmigrate.commp._sizes",
    "PayloadSize": "carmigrate.commp._sizes",
    "PieceHasher": "carmigrate.commp._hasher",
    "PieceInfo": "carmigrate.commp._piece",
    "UnpaddedPieceSize": "carmigrate.commp._sizes",
    "commp": "carmigrate.commp._hasher",
    "to_piece_cid_v1": "carmigrate.commp._piece",
    "to_piece_cid_v2": "carmigrate.commp._piece",
}


if not TYPE_CHECKING:  # type checkers see the imports above instead
    __getattr__, __dir__ = lazy_names(__name__, _SOURCES)
