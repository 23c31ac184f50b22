"""The layout of a deal's data segment index, for those who lay out deals by hand.

In the spirit of ``trio.lowlevel``: building, packing, proving and queueing
aggregates is in ``carmigrate.aggregate``, whose
[Aggregate][carmigrate.aggregate.Aggregate] and
[AggregateBuilder][carmigrate.aggregate.AggregateBuilder] already carry
their own ``index_start`` and ``max_entries``. What someone reading the index
area of a deal's bytes, or planning a layout without a builder, needs is
here:

- [max_entries][carmigrate.aggregate.lowlevel.max_entries]: how many index
  entries a deal of a given size reserves;
- [index_start][carmigrate.aggregate.lowlevel.index_start]: the padded offset
  where the index area begins (pieces must end at or before it);
- [ENTRY_SIZE][carmigrate.aggregate.lowlevel.ENTRY_SIZE]: the padded size of
  one [SegmentIndexEntry][carmigrate.aggregate.SegmentIndexEntry].

Spec: FRC-0058; commp-spec §7.2.
"""

from carmigrate.aggregate._index import ENTRY_SIZE, index_start, max_entries

__all__ = [
    "ENTRY_SIZE",
    "index_start",
    "max_entries",
]
