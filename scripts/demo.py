"""``make demo``: carmigrate end to end on generated data.

1. Write a small "legacy bucket" of CAR files (heavy-tailed sizes, CARv1 and
   CARv2, one of them deliberately corrupted) into ``.demo/legacy``.
2. Verify every CAR, block by block, and show where the corrupt one breaks.
3. List the blocks of one CAR.
4. Compute the PieceCID of every good CAR.
5. Pack the pieces into FRC-0058 aggregates and check every inclusion proof.

Everything it writes stays under ``.demo/`` (deleted and re-created on every
run).
"""

from __future__ import annotations

import hashlib
import random
import shutil
import time
from pathlib import Path

from carmigrate.aggregate import PackingConstraints, PackItem, pack
from carmigrate.car import CarWriter, iter_blocks, verify_car
from carmigrate.cid import CID, encode_dag_cbor
from carmigrate.commp import IMPLEMENTATION, commp

ROOT = Path(".demo")
LEGACY = ROOT / "legacy"


def _bytes(seed: int, n: int) -> bytes:
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{i}".encode()).digest()
        i += 1
    return bytes(out[:n])


def write_car(path: Path, seed: int, size: int, *, version: int = 1) -> CID:
    """A CAR of raw 256 KiB blocks plus a DAG-CBOR root that links them."""
    chunks = [
        _bytes(seed * 1000 + k, min(1 << 18, size - off))
        for k, off in enumerate(range(0, size, 1 << 18))
    ]
    leaves = [(CID.from_data(c), c) for c in chunks]
    root_data = encode_dag_cbor(
        {"name": f"upload-{seed}", "parts": [c for c, _ in leaves]}
    )
    root = CID.from_data(root_data, codec="dag-cbor")
    with path.open("wb") as f, CarWriter(f, [root], version=version) as w:  # type: ignore[arg-type]
        w.write(root, root_data)
        for cid, data in leaves:
            w.write(cid, data)
    return root


def corrupt(path: Path) -> int:
    """Flip one byte near the end of the file (inside the last block's data)."""
    data = bytearray(path.read_bytes())
    at = len(data) - 100
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    return at


def main() -> None:
    shutil.rmtree(ROOT, ignore_errors=True)
    LEGACY.mkdir(parents=True)
    rng = random.Random(2026)
    print(f"1. Writing CARs to {LEGACY}/ ...")
    paths = []
    for i in range(24):
        size = int(min(6 << 20, max(300, rng.lognormvariate(11.5, 1.4))))
        p = LEGACY / f"upload-{i:03d}.car"
        write_car(p, i, size, version=2 if i % 5 == 0 else 1)
        paths.append(p)
    bad = paths[7]
    offset = corrupt(bad)
    total = sum(p.stat().st_size for p in paths)
    print(
        f"   {len(paths)} CARs, {total / 2**20:.1f} MiB; corrupted {bad.name} at byte {offset}\n"
    )

    print("2. Verifying every block of every CAR")
    good = []
    for p in paths:
        with p.open("rb") as f:
            r = verify_car(f)
        status = "ok" if r.ok else f"BAD: {r.first_failure}"
        print(
            f"   {p.name}  v{r.version}  {r.blocks:>3} blocks  {r.bytes:>9} bytes  {status}"
        )
        if r.ok:
            good.append(p)
    print()

    print(f"3. The blocks of {paths[1].name}")
    with paths[1].open("rb") as f:
        for block in iter_blocks(f):
            print(f"   {block.cid}  offset {block.offset:>8}  length {block.length:>7}")
    print()

    print(f"4. PieceCIDs (commP, {IMPLEMENTATION} core)")
    t0 = time.perf_counter()
    items = []
    for p in good:
        info = commp(p)
        items.append(PackItem(info, p.name, payload_size=p.stat().st_size))
        print(f"   {p.name}  {info.cid_v2}  padded {info.padded_size}")
    dt = time.perf_counter() - t0
    print(f"   {sum(p.stat().st_size for p in good) / 2**20 / dt:.0f} MiB/s\n")

    print("5. Packing into 16 MiB FRC-0058 aggregates (largest_first)")
    rules = PackingConstraints(deal_size=16 << 20, max_age=0.0)
    result = pack(items, rules, policy="largest_first", now=1.0)
    for planned in result.aggregates:
        agg = planned.build()
        for j, pl in enumerate(agg.placements):
            agg.proof(j).verify(pl.root, pl.size, agg.root, agg.deal_size)
        print(
            f"   {len(planned.items):>2} pieces, {planned.used / agg.deal_size:.1%} of the deal, "
            f"alignment holes {planned.alignment_waste} B, every proof verified; root {agg.root.hex()[:16]}…"
        )
    print(
        f"\nDone. {len(good)} of {len(paths)} CARs verified; {bad.name} was caught at its corrupt block."
    )


if __name__ == "__main__":
    main()
