"""CAR files: read, verify, index and write CARv1 and CARv2.

Two ways in, chosen by what you hold (as in go-car):

- a stream: [iter_blocks][carmigrate.car.iter_blocks] and
  [CarBlockReader][carmigrate.car.CarBlockReader] read blocks in order from
  any binary stream; [verify_car][carmigrate.car.verify_car] re-hashes them;
  [inspect_car][carmigrate.car.inspect_car] summarises;
- a seekable file: [CarReader][carmigrate.car.CarReader] gives random access
  by CID through an index it builds itself, and checks any embedded index.

[CarWriter][carmigrate.car.CarWriter] writes CARv1 (streaming) and CARv2
(with an index, header written at close); [index_car][carmigrate.car.index_car]
turns any CAR into an indexed CARv2. The index itself, as a value to build,
encode or decode, is in [carmigrate.car.lowlevel][].

Every length read from a file is checked against
[CarLimits][carmigrate.car.CarLimits] before anything is allocated, and every
parse error is a [CarFormatError][carmigrate.errors.CarFormatError] that names
the byte offset and what was expected.

Specs: CARv1 https://ipld.io/specs/transport/car/carv1/ and CARv2
https://ipld.io/specs/transport/car/carv2/; behaviour follows go-car v2 where
the specs are silent.
"""

from typing import TYPE_CHECKING

from carmigrate._lazy import lazy_names

if TYPE_CHECKING:
    from carmigrate.car._block import Block, BlockLocation, CarBlock
    from carmigrate.car._header import CarHeader, CarV2Header, Characteristics
    from carmigrate.car._index import INDEX_SORTED, MULTIHASH_INDEX_SORTED
    from carmigrate.car._inspect import CarSummary, inspect_car
    from carmigrate.car._limits import (
        DEFAULT_LIMITS,
        DEFAULT_MAX_HEADER_SIZE,
        DEFAULT_MAX_SECTION_SIZE,
        CarLimits,
    )
    from carmigrate.car._reader import CarReader
    from carmigrate.car._scan import CarBlockReader, iter_blocks
    from carmigrate.car._verify import VerifyResult, verify_car
    from carmigrate.car._writer import CarWriter, index_car

__all__ = [
    "Block",
    "BlockLocation",
    "CarBlock",
    "CarBlockReader",
    "CarHeader",
    "CarLimits",
    "CarReader",
    "CarSummary",
    "CarV2Header",
    "CarWriter",
    "Characteristics",
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_HEADER_SIZE",
    "DEFAULT_MAX_SECTION_SIZE",
    "INDEX_SORTED",
    "MULTIHASH_INDEX_SORTED",
    "VerifyResult",
    "index_car",
    "inspect_car",
    "iter_blocks",
    "verify_car",
]

# Names load from their submodules on first use (PEP 562): importing this
# package costs nothing until one is used, so the command line starts fast.
_SOURCES: dict[str, str] = {
    "Block": "carmigrate.car._block",
    "BlockLocation": "carmigrate.car._block",
    "CarBlock": "carmigrate.car._block",
    "CarBlockReader": "carmigrate.car._scan",
    "CarHeader": "carmigrate.car._header",
    "CarLimits": "carmigrate.car._limits",
    "CarReader": "carmigrate.car._reader",
    "CarSummary": "carmigrate.car._inspect",
    "CarV2Header": "carmigrate.car._header",
    "CarWriter": "carmigrate.car._writer",
    "Characteristics": "carmigrate.car._header",
    "DEFAULT_LIMITS": "carmigrate.car._limits",
    "DEFAULT_MAX_HEADER_SIZE": "carmigrate.car._limits",
    "DEFAULT_MAX_SECTION_SIZE": "carmigrate.car._limits",
    "INDEX_SORTED": "carmigrate.car._index",
    "MULTIHASH_INDEX_SORTED": "carmigrate.car._index",
    "VerifyResult": "carmigrate.car._verify",
    "index_car": "carmigrate.car._writer",
    "inspect_car": "carmigrate.car._inspect",
    "iter_blocks": "carmigrate.car._scan",
    "verify_car": "carmigrate.car._verify",
}


if not TYPE_CHECKING:  # type checkers see the imports above instead
    __getattr__, __dir__ = lazy_names(__name__, _SOURCES)
