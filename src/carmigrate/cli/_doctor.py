"""``carmigrate doctor``: which compiled cores are active, and how fast they run here."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

__all__ = ["cores", "register"]

_SAMPLE = 32 << 20


def cores() -> dict[str, str]:
    """The implementation of each hot path that is active in this installation."""
    from carmigrate.cid.lowlevel import SHA256_RANGES_NATIVE
    from carmigrate.commp import IMPLEMENTATION

    fastio = importlib.util.find_spec("carmigrate.storage._fastio") is not None
    return {
        "commp": IMPLEMENTATION,
        "sha256_ranges": "native" if SHA256_RANGES_NATIVE else "hashlib",
        "local_writes": "native" if fastio else "os.write",
    }


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``doctor`` command."""
    p = subparsers.add_parser(
        "doctor",
        help="show the compiled cores in use and their speed on this machine",
        description=(
            "Print which implementation each hot path uses (commP, many-range "
            "SHA-256, local writes) and measure commP and SHA-256 over 32 MiB in "
            "memory, one thread: what this machine gives, against the SHA-256 bound "
            "commP cannot beat by much (hashlib x 127/512), and the pure-Python "
            "reference (4 MiB) that commP falls back to without the compiled core."
        ),
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_doctor)


def _best(fn: Any, rounds: int = 3) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _doctor(args: argparse.Namespace) -> int:
    from carmigrate.commp import IMPLEMENTATION, commp

    data = bytes(range(256)) * (_SAMPLE // 256)
    sha = _SAMPLE / _best(lambda: hashlib.sha256(data).digest()) / 1e6
    if IMPLEMENTATION == "reference":
        piece = reference = _SAMPLE / _best(lambda: commp(data, threads=1), 1) / 1e6
    else:
        piece = _SAMPLE / _best(lambda: commp(data, threads=1)) / 1e6
        small = data[: _SAMPLE // 8]  # the reference is slow: a smaller sample
        reference = (
            len(small)
            / _best(lambda: commp(small, threads=1, implementation="reference"), 1)
            / 1e6
        )
    report: dict[str, Any] = {
        **cores(),
        "sha256_mb_s": round(sha),
        "commp_mb_s": round(piece),
        "commp_x_sha256_bound": round(piece / (sha * 127 / 512), 2),
        "commp_reference_mb_s": round(reference, 1),
        "commp_x_reference": round(piece / reference, 1),
    }
    if args.json:
        print(json.dumps(report, sort_keys=True))
        return 0
    print(f"commP:          {report['commp']}")
    print(f"SHA-256 ranges: {report['sha256_ranges']}")
    print(f"local writes:   {report['local_writes']}")
    print(
        f"measured, one thread, 32 MiB in memory: SHA-256 {report['sha256_mb_s']} MB/s, "
        f"commP {report['commp_mb_s']} MB/s "
        f"({report['commp_x_sha256_bound']}x the SHA-256 bound)"
    )
    print(
        f"the pure-Python commP reference here: {report['commp_reference_mb_s']} MB/s "
        f"(the active implementation is {report['commp_x_reference']}x as fast)"
    )
    return 0
