"""Placing pieces into an FRC-0058 aggregate and building its commitment (§7)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import attrs

from carmigrate import _html
from carmigrate.aggregate._index import (
    ENTRY_SIZE,
    SegmentIndexEntry,
    index_start,
    max_entries,
)
from carmigrate.aggregate._proof import InclusionProof, ProofData
from carmigrate.aggregate._tree import SparseTree
from carmigrate.commp import PieceInfo
from carmigrate.commp.lowlevel import hash_node
from carmigrate.errors import AggregateError, AggregateFullError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from carmigrate.cid import CID

__all__ = [
    "Aggregate",
    "AggregateBuilder",
    "Estimate",
    "Piece",
    "Placement",
    "check_deal_size",
]

MIN_DEAL_SIZE = 512
"""The smallest deal that can hold its 4-entry index and one 128-byte piece."""

MAX_DEAL_SIZE = 1 << 36
"""64 GiB: the largest Filecoin sector, so the largest deal (commp-spec §1)."""


class Piece(Protocol):
    """What the aggregate layer needs of a piece: its commitment and padded size.

    [carmigrate.commp.PieceInfo][] satisfies it, and so does an
    [Aggregate][carmigrate.aggregate.Aggregate].
    """

    @property
    def root(self) -> bytes:
        """The 32-byte piece commitment."""
        ...

    @property
    def padded_size(self) -> int:
        """The padded piece size (a power of two >= 128)."""
        ...


def check_deal_size(deal_size: int) -> int:
    """Validate a deal (aggregate) padded size and return its tree height.

    Raises:
        AggregateError: Unless the size is a power of two from 512 bytes to
            64 GiB.
    """
    if (
        not isinstance(deal_size, int)
        or deal_size < MIN_DEAL_SIZE
        or deal_size > MAX_DEAL_SIZE
        or deal_size & (deal_size - 1)
    ):
        msg = (
            f"deal size {deal_size} must be a power of two from {MIN_DEAL_SIZE} "
            f"to {MAX_DEAL_SIZE} bytes (64 GiB)"
        )
        raise AggregateError(msg)
    return (deal_size // 32).bit_length() - 1


def _check_piece(piece: Piece) -> tuple[bytes, int]:
    root, size = piece.root, piece.padded_size
    if len(root) != 32:
        msg = f"a piece root is 32 bytes, got {len(root)}"
        raise AggregateError(msg)
    if size < 128 or size & (size - 1):
        msg = f"padded piece size {size} is not a power of two >= 128"
        raise AggregateError(msg)
    return root, size


@attrs.frozen
class Estimate:
    """Whether a piece would fit next, and where. Returned by ``estimate``.

    Attributes:
        fits: True if ``add`` would succeed.
        reason: Why it does not fit (``None`` when it fits).
        offset: Padded offset the piece would take (aligned to its size).
        end: Padded offset just past the piece.
        gap: Padded bytes of alignment hole left before the piece.
    """

    fits: bool
    reason: str | None
    offset: int
    end: int
    gap: int


@attrs.frozen
class Placement:
    """Where one piece sits in an aggregate.

    Attributes:
        piece: The piece as it was added.
        root: Its commitment.
        size: Its padded size.
        offset: Its padded offset in the deal (a multiple of ``size``).
        position: Its index entry number (its order of addition).
    """

    piece: Piece
    root: bytes
    size: int
    offset: int
    position: int

    @property
    def offset_unpadded(self) -> int:
        """Where the piece's payload starts in the unpadded deal bytes."""
        return self.offset // 128 * 127

    @property
    def entry(self) -> SegmentIndexEntry:
        """The piece's data segment index entry."""
        return SegmentIndexEntry(self.root, self.offset, self.size)


class AggregateBuilder:
    """Lays pieces out in a deal in the order they are added (FRC-0058 §7.1).

    Each piece starts at the first offset at or after the end of the previous
    one that is a multiple of its own padded size. State: the deal size and
    the placements made so far. ``estimate`` is pure; ``add`` either places
    the piece or raises and leaves the builder unchanged.

    Args:
        deal_size: Padded deal size, a power of two of at least 512 bytes.

    Raises:
        AggregateError: For an invalid deal size.
    """

    def __init__(self, deal_size: int) -> None:
        self.height = check_deal_size(deal_size)
        self.deal_size = deal_size
        self.max_entries = max_entries(deal_size)
        self.index_start = index_start(deal_size)
        self._placements: list[Placement] = []
        self._end = 0

    @property
    def placements(self) -> tuple[Placement, ...]:
        """The pieces placed so far, in order."""
        return tuple(self._placements)

    @property
    def data_end(self) -> int:
        """Padded offset just past the last placed piece."""
        return self._end

    def estimate(self, piece: Piece) -> Estimate:
        """Say whether ``piece`` would fit next, where, and at what alignment cost.

        Raises:
            AggregateError: If the piece itself is invalid (not a size error).
        """
        _, size = _check_piece(piece)
        offset = -(-self._end // size) * size
        end = offset + size
        count = len(self._placements) + 1
        reason = None
        if count > self.max_entries:
            reason = (
                f"too many pieces for a {self.deal_size}-byte aggregate: "
                f"{count} > {self.max_entries} index entries"
            )
        elif end > self.index_start:
            reason = (
                f"piece of {size} bytes would end at padded offset {end}, past the "
                f"index area that starts at {self.index_start} in a "
                f"{self.deal_size}-byte deal"
            )
        return Estimate(reason is None, reason, offset, end, offset - self._end)

    def add(self, piece: Piece) -> Placement:
        """Place ``piece`` next.

        Raises:
            AggregateFullError: If it does not fit; ``failed_at`` is its
                0-based position. The builder is unchanged.
        """
        root, size = _check_piece(piece)
        est = self.estimate(piece)
        if not est.fits:
            raise AggregateFullError(est.reason or "", failed_at=len(self._placements))
        placement = Placement(piece, root, size, est.offset, len(self._placements))
        self._placements.append(placement)
        self._end = est.end
        return placement

    def extend(self, pieces: Iterable[Piece]) -> None:
        """Add several pieces; stops at the first that does not fit (and raises)."""
        for p in pieces:
            self.add(p)

    def build(self) -> Aggregate:
        """Compute the aggregate's tree and commitment.

        Raises:
            AggregateError: If no piece was added.
        """
        if not self._placements:
            msg = "an aggregate needs at least one piece"
            raise AggregateError(msg)
        return Aggregate(self.deal_size, tuple(self._placements))


class Aggregate:
    """A built FRC-0058 aggregate: placements, index, commitment and proofs.

    Immutable once built. State: the sparse tree of known nodes, kept to
    answer [proof][carmigrate.aggregate.Aggregate.proof] without rehashing.

    Args:
        deal_size: Padded deal size.
        placements: The placements, as an ``AggregateBuilder`` produced them.

    Raises:
        AggregateError: If the placements overlap, are misaligned, or do not
            fit the deal and its index.
    """

    __slots__ = (
        "_tree",
        "deal_size",
        "height",
        "index_start",
        "max_entries",
        "placements",
    )

    def __init__(self, deal_size: int, placements: Sequence[Placement]) -> None:
        self.height = check_deal_size(deal_size)
        self.deal_size = deal_size
        self.max_entries = max_entries(deal_size)
        self.index_start = index_start(deal_size)
        self.placements = tuple(placements)
        if len(self.placements) > self.max_entries:
            msg = (
                f"{len(self.placements)} pieces exceed {self.max_entries} index entries"
            )
            raise AggregateError(msg)
        tree = SparseTree(self.height)
        end = 0
        for j, p in enumerate(self.placements):
            if p.position != j or p.offset % p.size or p.offset < end:
                msg = f"placement {j} is misaligned, overlapping or out of order"
                raise AggregateError(msg)
            end = p.offset + p.size
            tree.set((p.size // 32).bit_length() - 1, p.offset // p.size, p.root)
        if end > self.index_start:
            msg = "placements run into the index area"
            raise AggregateError(msg)
        first = self.index_start // ENTRY_SIZE
        for j, p in enumerate(self.placements):
            raw = p.entry.to_bytes()
            tree.set(1, first + j, hash_node(raw[:32], raw[32:]))
        tree.build()
        self._tree = tree

    @property
    def root(self) -> bytes:
        """The aggregate commitment (commP of the whole deal)."""
        return self._tree.root

    @property
    def padded_size(self) -> int:
        """The deal size; an aggregate is itself a piece."""
        return self.deal_size

    @property
    def piece_cid(self) -> CID:
        """The aggregate's PieceCID v1 (``baga6ea4seaq…``): the commitment as a CID.

        The CID of [root][carmigrate.aggregate.Aggregate.root] with codec
        ``fil-commitment-unsealed`` and multihash
        ``sha2-256-trunc254-padded``, as
        [PieceInfo.cid_v1][carmigrate.commp.PieceInfo.cid_v1] makes it. It
        carries no size: a deal names the aggregate by this CID together
        with ``deal_size``, as ``carmigrate aggregate verify-proof
        --aggregate CID --deal-size N`` takes them. It is the ``piece_cid``
        an [AggregateQueue][carmigrate.aggregate.AggregateQueue] records for
        the same aggregate.
        """
        return PieceInfo(self.root, self.deal_size).cid_v1

    @property
    def piece_cid_v2(self) -> CID:
        """The aggregate's PieceCID v2 (FRC-0069, ``bafkzcib…``): height and root, padding 0.

        An aggregate is always a full piece, so its v2 CID has padding 0
        (commp-spec §6) and carries the deal size. It is the
        ``piece_cid_v2`` an [AggregateQueue][carmigrate.aggregate.AggregateQueue]
        records for the same aggregate.
        """
        size = self.deal_size
        return PieceInfo(self.root, size, size // 128 * 127).cid_v2

    @property
    def data_end(self) -> int:
        """Padded offset just past the last piece."""
        last = self.placements[-1]
        return last.offset + last.size

    @property
    def index_level(self) -> int:
        """Tree level of the node that covers the whole index area."""
        return (2 * self.max_entries).bit_length() - 1

    @property
    def index_root(self) -> bytes:
        """Commitment of the whole index area (go-data-segment's index PieceCID)."""
        level = self.index_level
        return self._tree.node(level, self.index_start >> (level + 5))

    def index_entries(self) -> tuple[SegmentIndexEntry, ...]:
        """The used index entries, in piece order."""
        return tuple(p.entry for p in self.placements)

    def proof(self, position: int) -> InclusionProof:
        """The inclusion proof of the piece at ``position``.

        Raises:
            IndexError: If there is no such piece.
        """
        if not 0 <= position < len(self.placements):
            msg = f"no piece at position {position} of {len(self.placements)}"
            raise IndexError(msg)
        p = self.placements[position]
        level = (p.size // 32).bit_length() - 1
        tree_index = p.offset // p.size
        entry_node = self.index_start // ENTRY_SIZE + position
        return InclusionProof(
            ProofData(tree_index, tuple(self._tree.path(level, tree_index))),
            ProofData(entry_node, tuple(self._tree.path(1, entry_node))),
        )

    def proofs(self) -> list[InclusionProof]:
        """Inclusion proofs of every piece, in piece order."""
        return [self.proof(j) for j in range(len(self.placements))]

    def _repr_html_(self) -> str:
        """Jupyter's view: PieceCIDs, deal size and use, and the placements."""
        h = _html
        used = sum(p.size for p in self.placements)
        pairs: list[tuple[str, object]] = [
            ("PieceCID v1", h.code(self.piece_cid)),
            ("PieceCID v2", h.code(self.piece_cid_v2)),
            ("deal size", h.nbytes(self.deal_size)),
            ("pieces", f"{len(self.placements)} of {self.max_entries} index entries"),
            ("covered by pieces", h.nbytes(used)),
            ("alignment holes", h.nbytes(self.data_end - used)),
            ("free before the index", h.nbytes(self.index_start - self.data_end)),
        ]
        rows = (
            (
                p.position,
                h.code(PieceInfo(p.root, p.size).cid_v1),
                h.nbytes(p.size),
                p.offset,
            )
            for p in self.placements[: h.MAX_ROWS]
        )
        return h.block(
            h.Markup(f"<b>Aggregate</b> {h.code(self.piece_cid)}"),
            h.facts(pairs),
            h.table(
                ("position", "PieceCID v1", "padded size", "offset"),
                rows,
                total=len(self.placements),
            ),
        )

    def __repr__(self) -> str:
        return (
            f"Aggregate(deal_size={self.deal_size}, pieces={len(self.placements)}, "
            f"root={self.root.hex()})"
        )
