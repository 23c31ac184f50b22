#!/usr/bin/env python3
"""Generate src/carmigrate/commp/_zero.py: the zero commitment of every level.

``Z_0`` is 32 zero bytes and ``Z_{l+1} = H(Z_l || Z_l)``, where ``H`` is
SHA-256 with the top two bits of the last digest byte cleared (commp-spec §4).
The table stops at level 58, carmigrate.commp's MAX_HEIGHT.

Usage::

    python scripts/gen_zero_commitments.py            # rewrite the module
    python scripts/gen_zero_commitments.py --check    # exit 1 if it is stale
    python scripts/gen_zero_commitments.py --stdout   # print it
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

LEVELS = 58
TARGET = Path(__file__).resolve().parent.parent / "src/carmigrate/commp/_zero.py"


def _node(left: bytes, right: bytes) -> bytes:
    digest = bytearray(hashlib.sha256(left + right).digest())
    digest[31] &= 0x3F
    return bytes(digest)


def _size(level: int) -> str:
    size = 32 << level
    for unit, shift in (("EiB", 60), ("PiB", 50), ("TiB", 40), ("GiB", 30)):
        if size >= 1 << shift:
            return f"{size >> shift} {unit}"
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift:
            return f"{size >> shift} {unit}"
    return f"{size} B"


def render() -> str:
    """The full text of the generated module."""
    lines = [
        '"""Zero commitments by level (commp-spec §4). Generated; do not edit.',
        "",
        "Produced by ``scripts/gen_zero_commitments.py``; a test regenerates it",
        "and compares. ``ZERO_COMMITMENTS[l]`` is the root of ``2**l`` zero",
        "leaves, i.e. of ``32·2**l`` zero padded bytes.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Final",
        "",
        '__all__ = ["ZERO_COMMITMENTS"]',
        "",
        "ZERO_COMMITMENTS: Final[tuple[bytes, ...]] = (",
    ]
    z = bytes(32)
    for level in range(LEVELS + 1):
        lines.append(f"    # level {level}: {_size(level)}")
        lines.append(f'    bytes.fromhex("{z.hex()}"),')
        z = _node(z, z)
    lines.append(")")
    lines.append(
        '"""``ZERO_COMMITMENTS[l]``: root of ``2**l`` zero leaves, for ``l`` in 0..58."""'
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--check", action="store_true", help="fail if the module is stale"
    )
    group.add_argument("--stdout", action="store_true", help="print instead of writing")
    args = parser.parse_args(argv)
    text = render()
    if args.stdout:
        sys.stdout.write(text)
        return 0
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET} is stale; run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
