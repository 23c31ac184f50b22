#!/usr/bin/env python3
"""Benchmark ``bag-backfill`` against ``rclone copy --checksum`` of the same bags.

Bags are made by the Library of Congress ``bagit`` package (sha256 and
sha512 manifests), ``--bags`` of them (default 40; ``--quick``: 12), each
with ``--files`` payload files (default 12) of 8 KiB to 1 MiB; they are
stored under ``digitised/<id>/v1`` of a primary and registered first
(``register_bag``: every bag verified, every byte read; timed on its own
row). Then, in the same run, each scenario copies every bag once with the
recipe (warm, copy, compare every byte with the register's sha512, verify
the replica as a bag, register it) and once with ``rclone copy --checksum``
(copy; rclone checks the MD5 of each upload), to fresh destinations:

- local -> local (page cache: CPU and system calls, not disks);
- S3 -> S3 on moto's server (in its own process on 127.0.0.1; both tools
  copy on the server; mostly measuring moto).

bags/s and MB/s count the bags' files (payload and tag files). The machine
may be shared: compare rows of one run.

Usage: ``python benchmarks/bench_bag_backfill.py [--quick] [--bags N]
[--files N] [--concurrency N] [--no-s3]``. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bagit
from carmigrate.migrate import Limits
from carmigrate.recipes import BagRegister, backfill_bags, register_bag
from carmigrate.storage import LocalStore, MemoryStore, S3Store, Store, write_bytes

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_storage import Moto, rclone_env

KIB = 1 << 10
SPACE = "digitised"


def make_bags(root: Path, bags: int, files: int, seed: int = 16) -> list[Path]:
    """``bags`` LoC-made bags of ``files`` payload files each."""
    rng = random.Random(seed)
    logging.getLogger("bagit").setLevel(logging.ERROR)
    made = []
    for b in range(bags):
        folder = root / f"b{b:05d}"
        (folder / "pages").mkdir(parents=True)
        for f in range(files):
            size = rng.choice((8, 64, 256, 1024)) * KIB
            (folder / "pages" / f"page-{f:03d}.tif").write_bytes(rng.randbytes(size))
        bagit.make_bag(
            str(folder),
            {"External-Identifier": folder.name},
            checksums=["sha256", "sha512"],
        )
        made.append(folder)
    return made


def upload(bags: list[Path], store: Store) -> tuple[int, int]:
    """Store every bag under ``digitised/<id>/v1``; (files, bytes)."""
    files = size = 0
    for bag in bags:
        for f in sorted(bag.rglob("*")):
            if f.is_file():
                data = f.read_bytes()
                key = f"{SPACE}/{bag.name}/v1/{f.relative_to(bag).as_posix()}"
                write_bytes(store, key, data)
                files += 1
                size += len(data)
    return files, size


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(cmd: list[str], **kw: Any) -> None:
    subprocess.run(cmd, check=True, **kw)


def row(
    scenario: str, tool: str, bags: int, files: int, size: int, s: float
) -> list[str]:
    return [
        scenario,
        tool,
        str(bags),
        str(files),
        f"{size / 1e6:.1f}",
        f"{s:.2f}",
        f"{bags / s:.1f}",
        f"{size / 1e6 / s:.1f}",
    ]


def register_all(register: BagRegister, primary: Store, bags: list[Path]) -> None:
    for bag in bags:
        register_bag(
            register, primary, space=SPACE, external_identifier=bag.name, version=1
        )


def bench_local(
    tmp: Path, bags: list[Path], workers: int, rclone: str | None
) -> list[list[str]]:
    primary = LocalStore(tmp / "primary", create=True, fsync=False)
    files, size = upload(bags, primary)
    n = len(bags)
    register = BagRegister(MemoryStore("register"))
    rows = [
        row(
            "local -> local",
            "register_bag (verify every bag)",
            n,
            files,
            size,
            timed(lambda: register_all(register, primary, bags)),
        )
    ]
    dest = LocalStore(tmp / "replica", create=True, fsync=False)

    def backfill() -> None:
        result = backfill_bags(
            register.store,
            primary,
            [("replica", dest)],
            tmp / "work",
            limits=Limits(concurrency=workers),
        )
        assert result.complete, result.to_markdown()

    rows.append(row("local -> local", "bag-backfill", n, files, size, timed(backfill)))
    if rclone:
        cmd = [rclone, "copy", "-q", "--checksum", "--transfers", str(workers),
               str(tmp / "primary"), str(tmp / "rclone")]  # fmt: skip
        s = timed(lambda: run(cmd))
        tool = f"rclone copy --checksum --transfers {workers}"
        rows.append(row("local -> local", tool, n, files, size, s))
    return rows


def bench_s3(
    tmp: Path, bags: list[Path], workers: int, rclone: str | None
) -> list[list[str]]:
    moto = Moto()
    try:
        opts = {
            "endpoint_url": moto.endpoint,
            "access_key_id": "bench",
            "secret_access_key": "bench",
            "region": "us-east-1",
        }
        for name in ("primary", "replica", "rclone"):
            moto.bucket(name)
        primary = S3Store("primary", **opts)
        files, size = upload(bags, primary)
        n = len(bags)
        register = BagRegister(MemoryStore("register"))
        rows = [
            row(
                "S3 -> S3 (moto)",
                "register_bag (verify every bag)",
                n,
                files,
                size,
                timed(lambda: register_all(register, primary, bags)),
            )
        ]
        replica = S3Store("replica", **opts)

        def backfill() -> None:
            result = backfill_bags(
                register.store,
                primary,
                [("replica", replica)],
                tmp / "work-s3",
                limits=Limits(concurrency=workers),
            )
            assert result.complete, result.to_markdown()

        rows.append(
            row("S3 -> S3 (moto)", "bag-backfill", n, files, size, timed(backfill))
        )
        if rclone:
            cmd = [rclone, "copy", "-q", "--checksum", "--transfers", str(workers),
                   "moto:primary", "moto:rclone"]  # fmt: skip
            s = timed(lambda: run(cmd, env=rclone_env(moto)))
            assert moto.count("rclone", "") == files
            tool = f"rclone copy --checksum --transfers {workers}"
            rows.append(row("S3 -> S3 (moto)", tool, n, files, size, s))
        primary.close()
        replica.close()
        return rows
    finally:
        moto.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="12 bags")
    p.add_argument("--bags", type=int, default=None)
    p.add_argument("--files", type=int, default=12)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--no-s3", action="store_true")
    args = p.parse_args()
    bags_n = args.bags or (12 if args.quick else 40)
    rclone = shutil.which("rclone")
    version = "not installed"
    if rclone:
        out = subprocess.run(
            [rclone, "version"], capture_output=True, text=True, check=False
        )
        version = out.stdout.splitlines()[0] if out.stdout else "unknown"
    with tempfile.TemporaryDirectory(prefix="bench-bags-") as t:
        tmp = Path(t)
        bags = make_bags(tmp / "bags", bags_n, args.files)
        rows = bench_local(tmp / "local", bags, args.concurrency, rclone)
        if not args.no_s3:
            rows += bench_s3(tmp / "s3", bags, args.concurrency, rclone)
    head = ["scenario", "tool", "bags", "files", "MB", "s", "bags/s", "MB/s"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; rclone: {version}; files in the page cache."
    )


if __name__ == "__main__":
    main()
