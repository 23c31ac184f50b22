"""Multicodec table entries carmigrate names (a small, checked subset)."""

from __future__ import annotations

from typing import Final

__all__ = ["CODECS", "HASHES", "codec_name", "hash_name"]

CODECS: Final[dict[str, int]] = {
    "identity": 0x00,
    "raw": 0x55,
    "dag-pb": 0x70,
    "dag-cbor": 0x71,
    "libp2p-key": 0x72,
    "git-raw": 0x78,
    "dag-jose": 0x85,
    "dag-json": 0x0129,
    "json": 0x0200,
    "car": 0x0202,
    "fil-commitment-unsealed": 0xF101,
    "fil-commitment-sealed": 0xF102,
}
"""Content codecs by name (multicodec table)."""

HASHES: Final[dict[str, int]] = {
    "identity": 0x00,
    "sha1": 0x11,
    "sha2-256": 0x12,
    "sha2-512": 0x13,
    "sha3-256": 0x16,
    "blake2b-256": 0xB220,
    "blake3": 0x1E,
    "fr32-sha256-trunc254-padbintree": 0x1011,
    "sha2-256-trunc254-padded": 0x1012,
}
"""Multihash function codes by name (multicodec table)."""

_CODEC_NAMES: Final = {v: k for k, v in CODECS.items()}
_HASH_NAMES: Final = {v: k for k, v in HASHES.items()}


def codec_name(code: int) -> str:
    """The multicodec name of a content codec, or ``0x..`` hex if unknown."""
    return _CODEC_NAMES.get(code) or f"0x{code:x}"


def hash_name(code: int) -> str:
    """The multicodec name of a hash function, or ``0x..`` hex if unknown."""
    return _HASH_NAMES.get(code) or f"0x{code:x}"
