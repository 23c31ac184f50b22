"""Wire-format pieces of the multiformats, not needed to work with CIDs.

In the spirit of ``trio.lowlevel``: what a user of CIDs needs is in
``carmigrate.cid``; what someone reading or writing binary formats by hand
(CAR sections, CARv2 indexes, PieceCID v2 digests) needs is here.

- [encode_varint][carmigrate.cid.lowlevel.encode_varint] and
  [decode_varint][carmigrate.cid.lowlevel.decode_varint] are the unsigned
  varints of the multiformats (minimal, at most
  [MAX_VARINT_BYTES][carmigrate.cid.lowlevel.MAX_VARINT_BYTES] bytes);
- [sha256_ranges][carmigrate.cid.lowlevel.sha256_ranges] hashes many ranges
  of one buffer in one call, two at a time where the CPU allows
  ([SHA256_RANGES_NATIVE][carmigrate.cid.lowlevel.SHA256_RANGES_NATIVE]);
  the CAR verifier uses it to hash the blocks of a CAR held in memory.

Spec: multiformats unsigned-varint.
"""

from carmigrate.cid._ranges import SHA256_RANGES_NATIVE, sha256_ranges
from carmigrate.cid._varint import MAX_VARINT_BYTES, decode_varint, encode_varint

__all__ = [
    "MAX_VARINT_BYTES",
    "SHA256_RANGES_NATIVE",
    "decode_varint",
    "encode_varint",
    "sha256_ranges",
]
