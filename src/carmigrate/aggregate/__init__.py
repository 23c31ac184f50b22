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
