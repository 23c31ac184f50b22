"""Content identifiers, multihashes, multibase and DAG-CBOR.

carmigrate's own small, fast implementation of the multiformats it needs on
hot paths. Everything that takes a CID also takes its string or binary form
or a ``multiformats.CID`` (see [as_cid][carmigrate.cid.as_cid]);
[CID.to_multiformats][carmigrate.cid.CID.to_multiformats] goes the other way.
Varints and the many-range SHA-256 behind the CAR verifier are in
[carmigrate.cid.lowlevel][].

Specs: multiformats CID, multihash, multibase and unsigned-varint; IPLD
DAG-CBOR.
"""

from carmigrate.cid._cid import CID, MAX_CID_STRING, CIDLike, as_cid
from carmigrate.cid._codes import CODECS, HASHES, codec_name, hash_name
from carmigrate.cid._dagcbor import IPLDValue, decode_dag_cbor, encode_dag_cbor
from carmigrate.cid._multibase import BASES, multibase_decode, multibase_encode
from carmigrate.cid._multihash import (
    HashCheck,
    Multihash,
    UnsupportedHash,
    hash_digest,
    supported_hashes,
)
from carmigrate.cid._types import Buffer

__all__ = [
    "BASES",
    "Buffer",
    "CID",
    "CIDLike",
    "CODECS",
    "HASHES",
    "HashCheck",
    "IPLDValue",
    "MAX_CID_STRING",
    "Multihash",
    "UnsupportedHash",
    "as_cid",
    "codec_name",
    "decode_dag_cbor",
    "encode_dag_cbor",
    "hash_digest",
    "hash_name",
    "multibase_decode",
    "multibase_encode",
    "supported_hashes",
]
