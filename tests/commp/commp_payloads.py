"""Shared helpers for the commP tests: vector loading and payload generators.

The generators are defined in tests/vectors/commp/README.md.
"""

from __future__ import annotations

import functools
import hashlib
import json
import struct
from pathlib import Path
from typing import Any

from carmigrate.commp import available_implementations

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "commp"
SEED = b"carmigrate/commp/v1"

IMPLEMENTATIONS = available_implementations()
NATIVE = tuple(i for i in IMPLEMENTATIONS if i != "reference")
REFERENCE_LIMIT = 2_100_000
"""Largest payload the (slow) reference hashes in the vector tests."""


def load(name: str) -> list[dict[str, Any]]:
    with (VECTORS / name).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@functools.lru_cache(maxsize=1)
def _counter_stream(n: int) -> bytes:
    out = bytearray()
    for i in range(-(-n // 32)):
        out += hashlib.sha256(SEED + struct.pack("<Q", i)).digest()
    return bytes(out)


_LARGEST = 16_777_216


def counter(n: int) -> bytes:
    """``sha256-counter/v1``: payloads of every size are prefixes of one stream."""
    return _counter_stream(max(n, _LARGEST))[:n]


def payload(generator: str, n: int) -> bytes:
    if generator == "sha256-counter/v1":
        return counter(n)
    if generator == "zero":
        return bytes(n)
    if generator.startswith("fill:0x"):
        return bytes([int(generator[7:], 16)]) * n
    raise ValueError(generator)
