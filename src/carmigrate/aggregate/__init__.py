"""FRC-0058 aggregates: placement, data segment index, proofs, packing.

Pieces are laid out in a deal aligned to their own padded size, an index of
checksummed entries is written at the end of the deal, and the aggregate's
commitment is computed from the piece commitments alone. Inclusion proofs
show a piece is both a subtree of the deal and named by a valid index entry;
they verify offline against the aggregate's root and size.

Where the index area sits in a deal and how many entries it holds are in
[carmigrate.aggregate.lowlevel][].

Spec: FRC-0058 (verifiable data aggregation); commp-spec §7 to §9.
"""

from typing import TYPE_CHECKING

from carmigrate._lazy import lazy_names

if TYPE_CHECKING:
    from carmigrate.aggregate._builder import (
        Aggregate,
        AggregateBuilder,
        Estimate,
        Piece,
        Placement,
        check_deal_size,
    )
    from carmigrate.aggregate._index import SegmentIndexEntry
    from carmigrate.aggregate._packing import (
        POLICIES,
        SPADE_DEAL_SIZE,
        SPADE_PAYLOAD_WINDOW,
        PackingConstraints,
        PackItem,
        PackResult,
        PlannedAggregate,
        Policy,
        in_order,
        largest_first,
        pack,
        smallest_first,
    )
    from carmigrate.aggregate._proof import InclusionProof, ProofData
    from carmigrate.aggregate._queue import (
        AggregateQueue,
        AggregateRecord,
        AggregateState,
        Offer,
        OfferResult,
        PieceRecord,
    )
    from carmigrate.aggregate._stream import (
        PayloadOpener,
        iter_aggregate_bytes,
        open_aggregate_stream,
    )

__all__ = [
    "Aggregate",
    "AggregateBuilder",
    "AggregateQueue",
    "AggregateRecord",
    "AggregateState",
    "Estimate",
    "InclusionProof",
    "Offer",
    "OfferResult",
    "POLICIES",
    "PackItem",
    "PackResult",
    "PackingConstraints",
    "PayloadOpener",
    "Piece",
    "PieceRecord",
    "Placement",
    "PlannedAggregate",
    "Policy",
    "ProofData",
    "SPADE_DEAL_SIZE",
    "SPADE_PAYLOAD_WINDOW",
    "SegmentIndexEntry",
    "check_deal_size",
    "in_order",
    "iter_aggregate_bytes",
    "largest_first",
    "open_aggregate_stream",
    "pack",
    "smallest_first",
]

# Names load from their submodules on first use (PEP 562): importing this
# package costs nothing until one is used, so the command line starts fast.
_SOURCES: dict[str, str] = {
    "Aggregate": "carmigrate.aggregate._builder",
    "AggregateBuilder": "carmigrate.aggregate._builder",
    "AggregateQueue": "carmigrate.aggregate._queue",
    "AggregateRecord": "carmigrate.aggregate._queue",
    "AggregateState": "carmigrate.aggregate._queue",
    "Estimate": "carmigrate.aggregate._builder",
    "InclusionProof": "carmigrate.aggregate._proof",
    "Offer": "carmigrate.aggregate._queue",
    "OfferResult": "carmigrate.aggregate._queue",
    "POLICIES": "carmigrate.aggregate._packing",
    "PackItem": "carmigrate.aggregate._packing",
    "PackResult": "carmigrate.aggregate._packing",
    "PackingConstraints": "carmigrate.aggregate._packing",
    "PayloadOpener": "carmigrate.aggregate._stream",
    "Piece": "carmigrate.aggregate._builder",
    "PieceRecord": "carmigrate.aggregate._queue",
    "Placement": "carmigrate.aggregate._builder",
    "PlannedAggregate": "carmigrate.aggregate._packing",
    "Policy": "carmigrate.aggregate._packing",
    "ProofData": "carmigrate.aggregate._proof",
    "SPADE_DEAL_SIZE": "carmigrate.aggregate._packing",
    "SPADE_PAYLOAD_WINDOW": "carmigrate.aggregate._packing",
    "SegmentIndexEntry": "carmigrate.aggregate._index",
    "check_deal_size": "carmigrate.aggregate._builder",
    "in_order": "carmigrate.aggregate._packing",
    "iter_aggregate_bytes": "carmigrate.aggregate._stream",
    "largest_first": "carmigrate.aggregate._packing",
    "open_aggregate_stream": "carmigrate.aggregate._stream",
    "pack": "carmigrate.aggregate._packing",
    "smallest_first": "carmigrate.aggregate._packing",
}


if not TYPE_CHECKING:  # type checkers see the imports above instead
    __getattr__, __dir__ = lazy_names(__name__, _SOURCES)
