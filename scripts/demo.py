"""``make demo``: migrate a legacy bucket of CARs, verify it, pack it into deals.

1. Write a "legacy bucket" (a local folder) of about 200 CARs under
   content-addressed keys ``uploads/<upload>/<car cid>.car``: heavy-tailed
   sizes, a few uploads split into several shards, one CAR damaged by bit rot.
   Written once; later runs reuse it.
2. Plan its migration into a "new bucket" (another folder) with SHA-256, a
   check of every CAR block and commP, in two stages: a canary of a few
   uploads, then the rest.
3. Run the canary stage, then everything else, recording every outcome in a
   ledger. The damaged CAR fails (nothing of it reaches the new bucket).
4. Re-check the new bucket independently.
5. Pack the PieceCIDs the ledger recorded into small FRC-0058 aggregates
   (shards of one upload stay together) and check every inclusion proof.
6. Print the final report.

Running it again reuses the bucket, the plan and the ledger: every good item
is already verified and nothing is copied. ``--fresh`` starts over.
Steps 2, 3, 4 and 6 run the ``carmigrate`` command line (in this process)
and show exactly what it prints, after the command itself, so you can repeat
each step by hand; step 5 uses the library (the CLI builds one aggregate at a
time). Everything it writes stays under ``--root`` (default ``.demo/``).

    python scripts/demo.py [--root DIR] [--uploads N] [--deal-size BYTES] [--fresh]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import shlex
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from carmigrate.aggregate import PackingConstraints, PackItem, pack
from carmigrate.car import CarWriter
from carmigrate.cid import CID, encode_dag_cbor
from carmigrate.cli import main as cli_main
from carmigrate.commp import IMPLEMENTATION, PieceInfo
from carmigrate.migrate import (
    ItemState,
    Ledger,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

BLOCK = 256 << 10
MAX_CAR = (3 << 20) + (512 << 10)
SEED = 2026


def _bytes(seed: int, n: int) -> bytes:
    """``n`` pseudo-random bytes (fast, deterministic)."""
    return random.Random(seed).randbytes(n)


def _size(rng: random.Random, cap: int = MAX_CAR) -> int:
    """Heavy-tailed: mostly tens of KiB, some MiB (log-normal, capped)."""
    return int(min(cap, max(600, rng.lognormvariate(10.8, 1.6))))


def _upload(rng: random.Random, upload: int, shards: int) -> list[bytes]:
    """One upload's DAG as ``shards`` CARs: raw leaves, a DAG-CBOR root in the last."""
    # shards of one upload stay together in one deal: keep them smaller
    cap = MAX_CAR if shards == 1 else 900 << 10
    sizes = [_size(rng, cap) for _ in range(shards)]
    leaves: list[list[tuple[CID, bytes]]] = []
    for k, size in enumerate(sizes):
        blocks = []
        for j, off in enumerate(range(0, size, BLOCK)):
            data = _bytes(upload * 1_000_003 + k * 1009 + j, min(BLOCK, size - off))
            blocks.append((CID.from_data(data), data))
        leaves.append(blocks)
    root_data = encode_dag_cbor(
        {"name": f"upload-{upload}", "parts": [c for shard in leaves for c, _ in shard]}
    )
    root = CID.from_data(root_data, codec="dag-cbor")
    cars = []
    for k, blocks in enumerate(leaves):
        buf = io.BytesIO()
        with CarWriter(buf, [root]) as w:
            if k == shards - 1:
                w.write(root, root_data)
            for cid, data in blocks:
                w.write(cid, data)
        cars.append(buf.getvalue())
    return cars


def generate(where: Path, uploads: int) -> tuple[int, int, str]:
    """Write the legacy bucket into ``where`` atomically (a temporary folder renamed).

    Returns the number of CARs, their bytes and the key of the damaged one.
    """
    rng = random.Random(SEED)
    tmp = where.with_name(where.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    count = total = 0
    damaged = ""
    victim = min(7, uploads - 1)
    for u in range(uploads):
        shards = 2 + u % 3 if u % 25 == 3 else 1
        for car in _upload(rng, u, shards):
            if u == victim:
                # A writer damaged a block before the upload was hashed: the
                # key's SHA-256 matches the file, only the block check can tell.
                car = bytearray(car)
                car[-100] ^= 0x01
                car = bytes(car)
            key = f"uploads/u{u:04d}/{CID.from_data(car, codec='car')}.car"
            if u == victim:
                damaged = key
            path = tmp / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(car)
            count += 1
            total += len(car)
    os.replace(tmp, where)
    (where.parent / "damaged.txt").write_text(damaged + "\n")
    return count, total, damaged


def _cli(*argv: str) -> int:
    """Run one ``carmigrate`` command; show it and what it prints; its exit code."""
    print("   $ carmigrate " + " ".join(shlex.quote(a) for a in argv))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli_main(list(argv))
    text = out.getvalue().rstrip()
    if text:
        print("   " + text.replace("\n", "\n   "))
    if code:
        print(f"   (exit code {code})")
    return code


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=".demo", help="where everything goes")
    parser.add_argument("--uploads", type=int, default=190, help="uploads to generate")
    parser.add_argument(
        "--deal-size", type=int, default=16 << 20, help="padded deal size (bytes)"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="items in flight")
    parser.add_argument("--fresh", action="store_true", help="delete --root first")
    args = parser.parse_args(argv)
    if args.uploads < 2:
        parser.error("--uploads must be at least 2")

    root = Path(args.root)
    if args.fresh:
        shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    legacy, new = root / "legacy-bucket", root / "new-bucket"
    plan_path, ledger_path = root / "plan.jsonl", root / "ledger.db"
    t_start = time.perf_counter()

    print(f"1. The legacy bucket: {legacy}/")
    if legacy.is_dir():
        damaged = (root / "damaged.txt").read_text().strip()
        cars = list(legacy.rglob("*.car"))
        print(
            f"   reusing it: {len(cars)} CARs, {_mib(sum(p.stat().st_size for p in cars))}"
            " (--fresh to start over)"
        )
    else:
        t0 = time.perf_counter()
        count, total, damaged = generate(legacy, args.uploads)
        print(
            f"   wrote {count} CARs from {args.uploads} uploads, {_mib(total)}, "
            f"in {time.perf_counter() - t0:.1f} s"
        )
    print(f"   one CAR has a damaged block: {damaged}\n")

    print("2. Plan: list both buckets, decide per key, write a reviewable plan")
    if plan_path.exists() and ledger_path.exists():
        print(f"   reusing {plan_path} (--fresh to plan again)")
    else:
        ledger_path.unlink(missing_ok=True)
        code = _cli(
            "plan", str(legacy), str(new),
            "--verify", "size,sha256,car,commp",
            "--stage-by", "segments:2", "--stage", "canary=uploads/u000*",
            "--concurrency", str(args.concurrency),
            "-o", str(plan_path),
        )  # fmt: skip
        if code:
            return code
    print()

    print(
        "3. Run: the canary stage first, then the rest (the damaged CAR fails: exit 1)"
    )
    t0 = time.perf_counter()
    plan_arg, ledger_args = str(plan_path), ("--ledger", str(ledger_path))
    _cli("run", plan_arg, *ledger_args, "--stage", "canary", "--no-progress")
    _cli("run", plan_arg, *ledger_args, "--no-progress")
    print(f"   {time.perf_counter() - t0:.1f} s\n")

    print("4. Verify: read the new bucket back, check it independently")
    t0 = time.perf_counter()
    if _cli("verify", plan_arg, *ledger_args) == 1:
        _cli("resume", *ledger_args, "--no-progress")
    print(f"   ({time.perf_counter() - t0:.1f} s)")
    with Ledger(ledger_path) as ledger:
        print(f"   {new}/ holds {len(list(new.rglob('*.car')))} CARs\n")

        print(
            f"5. Pack the recorded PieceCIDs into {_mib(args.deal_size)} deals "
            f"(commP core: {IMPLEMENTATION})"
        )
        print(
            "   (library: carmigrate.aggregate.pack; the CLI builds one aggregate at "
            "a time with `carmigrate aggregate build`)"
        )
        items = [
            PackItem(
                PieceInfo.from_cid(rec.piece_cid_v2),
                rec.item.key,
                payload_size=rec.item.size,
                group=rec.item.cohort,  # uploads/<upload>: shards stay together
            )
            for rec in ledger.items(state=ItemState.VERIFIED)
            if rec.piece_cid_v2 is not None
        ]
        rules = PackingConstraints(deal_size=args.deal_size, max_age=0.0)
        packed = pack(items, rules, policy="largest_first", now=1.0)
        where: dict[str, set[int]] = defaultdict(set)
        for n, planned in enumerate(packed.aggregates):
            agg = planned.build()
            for j, pl in enumerate(agg.placements):
                agg.proof(j).verify(pl.root, pl.size, agg.root, agg.deal_size)
            for item in planned.items:
                where[item.group or item.key].add(n)
            cid = agg.piece_cid
            print(
                f"   {cid}  {len(planned.items):>3} pieces  "
                f"{planned.used / agg.deal_size:6.1%} full  "
                f"{'in' if planned.in_window else 'below'} the payload window; "
                "every inclusion proof verified"
            )
        split = [g for g, aggs in where.items() if len(aggs) > 1]
        shards = defaultdict(int)
        for it in items:
            shards[it.group] += 1
        multi = sum(1 for n in shards.values() if n > 1)
        print(
            f"   {len(items)} pieces in {len(packed.aggregates)} aggregates; "
            f"{multi} multi-shard uploads, "
            f"{'all kept together' if not split else f'split: {split}'}\n"
        )

    print("6. The report")
    _cli("report", *ledger_args, "--markdown")
    print(
        f"\nDone in {time.perf_counter() - t_start:.1f} s. Run it again: nothing is copied twice."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
