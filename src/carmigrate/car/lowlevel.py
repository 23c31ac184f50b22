"""The CARv2 index and pragma as values, for those who work on CAR bytes directly.

In the spirit of ``trio.lowlevel``: reading, verifying, indexing and writing
CARs is in ``carmigrate.car``; what someone building, encoding or decoding a
CARv2 index by hand, or recognising a CARv2 from its first bytes, needs is
here.

- [CarIndex][carmigrate.car.lowlevel.CarIndex] is a CARv2 index value
  (IndexSorted or MultihashIndexSorted), with ``build``, ``encode`` and
  ``decode``; [CarReader.index][carmigrate.car.CarReader.index] and
  [CarSummary.index][carmigrate.car.CarSummary] are one, checked against the
  data. Its entries are [IndexEntry][carmigrate.car.lowlevel.IndexEntry]
  tuples.
- [PRAGMA][carmigrate.car.lowlevel.PRAGMA] is the fixed 11 bytes that open
  every CARv2.

Spec: CARv2 https://ipld.io/specs/transport/car/carv2/ ("Pragma", "Index
format").
"""

from carmigrate.car._header import PRAGMA
from carmigrate.car._index import CarIndex, IndexEntry

__all__ = [
    "CarIndex",
    "IndexEntry",
    "PRAGMA",
]
