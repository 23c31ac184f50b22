#!/usr/bin/env python3
"""Benchmark the recipes: web3.storage legacy → w3up, and the Filecoin backfill.

On a generated legacy dataset (``--quick``: 24 uploads, about 35 MB; full:
240 uploads, about 430 MB; S3 gets a third of the uploads): uploads of 1 to
3 shards of 64 KiB to 3 MiB made of 256 KiB blocks, four tenants, shards
spread over two legacy buckets in both key schemes, a quarter of them
already in the destination (checked in place, not copied).

Rows, local folders (page cache: CPU and system calls, not disks) and S3
(moto's server in its own process on 127.0.0.1, mostly measuring moto):

- ``w3up-legacy``: the full run (locate, plan, copy or check every shard
  with size + sha256 + every CAR block, records, exports), without and with
  commP; then a re-run with nothing left to do;
- ``filecoin-backfill (ledgers)``: PieceCIDs from the w3up ledgers (no
  read), offered, one aggregate built, manifest written;
- ``filecoin-backfill (bucket scan)``: every CAR of the destination read
  once for its blocks and commP (plus the engine's second digest read).

MB/s counts the bytes of the shards the run covered (a shard checked in
place counts once, though the engine reads it twice). The machine may be
shared: compare rows of one run.

Usage: ``python benchmarks/bench_recipes.py [--quick] [--concurrency N] [--no-s3]``.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from carmigrate.aggregate import AggregateQueue, PackingConstraints
from carmigrate.car import CarWriter
from carmigrate.cid import CID, Multihash, encode_dag_cbor
from carmigrate.migrate import Limits
from carmigrate.recipes import (
    CAR_CODEC,
    backfill_filecoin,
    migrate_w3up_legacy,
    work_ledger,
)
from carmigrate.storage import LocalStore, S3Store

KIB = 1 << 10
MIB = 1 << 20
BLOCK = 256 * KIB

MOTO_SERVER = """
import logging, sys
logging.getLogger("werkzeug").setLevel(logging.ERROR)
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"""


def _link(car: bytes) -> CID:
    return CID.create(1, CAR_CODEC, Multihash(0x12, hashlib.sha256(car).digest()))


def _b32(link: CID) -> str:
    return base64.b32encode(link.multihash_bytes).decode().lower().rstrip("=")


def dataset(uploads: int, seed: int = 7):
    """(listing lines, bucket A, bucket B, destination, total shard bytes)."""
    rnd = random.Random(seed)
    a: dict[str, bytes] = {}
    b: dict[str, bytes] = {}
    dest: dict[str, bytes] = {}
    listing = []
    total = 0
    sizes = [64 * KIB, 256 * KIB, 700 * KIB, 1500 * KIB, 3 * MIB]
    for i in range(uploads):
        tenant = f"user-{i % 4}"
        n = rnd.choice((1, 1, 2, 3))
        links: list[CID] = []
        cars = []
        for s in range(n):
            left = rnd.choice(sizes)
            blocks = []
            while left > 0:
                data = rnd.randbytes(min(BLOCK, left))
                blocks.append((CID.from_data(data), data))
                left -= len(data)
            links += [c for c, _ in blocks]
            roots = []
            if s == n - 1:
                root_data = encode_dag_cbor({"upload": i, "links": links})
                root = CID.from_data(root_data, codec="dag-cbor")
                blocks.append((root, root_data))
                roots = [root]
            buf = io.BytesIO()
            with CarWriter(buf, roots) as w:
                for c, d in blocks:
                    w.write(c, d)
            cars.append(buf.getvalue())
        shard_links = []
        for j, car in enumerate(cars):
            link = _link(car)
            shard_links.append(str(link))
            total += len(car)
            where = (i + j) % 4
            if where == 0:
                dest[f"{link}/{link}.car"] = car
            elif where in (1, 2):
                a[f"raw/{root}/{tenant}/{_b32(link)}.car"] = car
            else:
                b[f"complete/{link}.car"] = car
        listing.append(
            json.dumps(
                {
                    "cid": str(root),
                    "name": f"upload {i} — données",
                    "created": "2022-01-01T00:00:00Z",
                    "tenant": tenant,
                    "shards": shard_links,
                },
                ensure_ascii=False,
            )
        )
    return listing, a, b, dest, total


class Moto:
    """moto's server in a child process."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", MOTO_SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        port = int(self.proc.stdout.readline())
        self.endpoint = f"http://127.0.0.1:{port}"
        self.options = {
            "endpoint_url": self.endpoint,
            "access_key_id": "bench",
            "secret_access_key": "bench",
            "region": "us-east-1",
        }

    def bucket(self, name: str) -> S3Store:
        import boto3

        bucket = f"{name}-{uuid.uuid4().hex[:8]}"
        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=bucket)
        client.close()
        return S3Store(bucket, **self.options)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _fill(store, objects: dict[str, bytes]) -> None:
    for k, v in objects.items():
        store.write(k, v)


def run(backend: str, uploads: int, concurrency: int, tmp: Path, moto: Moto | None):
    listing, a_obj, b_obj, d_obj, total = dataset(uploads)
    rows = []
    mb = total / 1e6

    def stores(tag: str):
        if backend == "local":
            return tuple(
                LocalStore(tmp / backend / tag / n, fsync=False)
                for n in ("a", "b", "d")
            )
        assert moto is not None
        return moto.bucket("a"), moto.bucket("b"), moto.bucket(f"d{tag}")

    limits = Limits(concurrency=concurrency)
    variants = [("off", False), ("on", True)] if backend == "local" else [("on", True)]
    work = None
    dest = None
    for tag, commp in variants:
        a, b, d = stores(tag)
        _fill(a, a_obj)
        _fill(b, b_obj)
        _fill(d, d_obj)
        work = tmp / backend / tag / "work"
        t = time.perf_counter()
        result = migrate_w3up_legacy(
            listing, [a, b], d, work, commp=commp, limits=limits
        )
        s = time.perf_counter() - t
        assert result.units == {"complete": uploads}, result.to_markdown()
        rows.append((f"w3up-legacy, commP {tag}", backend, uploads, mb, s))
        dest = d
    assert work is not None
    assert dest is not None
    t = time.perf_counter()
    again = migrate_w3up_legacy(listing, [a, b], dest, work, limits=limits)
    rows.append(
        (
            "w3up-legacy re-run (nothing to do)",
            backend,
            uploads,
            0.0,
            time.perf_counter() - t,
        )
    )
    assert again.round is None

    with work_ledger(work) as ledger:
        ledgers = [p.ledger for r in ledger.rounds() for p in r.plans]
    rules = PackingConstraints(max_age=0)  # 32 GiB deals, build now
    queue = AggregateQueue(tmp / backend / "agg-ledgers.db", constraints=rules)
    t = time.perf_counter()
    bf = backfill_filecoin(
        queue, tmp / backend / "bf-ledgers", ledgers=ledgers, limits=limits
    )
    s = time.perf_counter() - t
    assert bf.planned == 0
    assert bf.outputs["offered"] > 0
    assert bf.outputs["aggregates"]
    offered = bf.outputs["offered"]
    rows.append(("filecoin-backfill (ledgers, no read)", backend, offered, mb, s))
    queue.close()

    queue = AggregateQueue(tmp / backend / "agg-scan.db", constraints=rules)
    t = time.perf_counter()
    bf = backfill_filecoin(queue, tmp / backend / "bf-scan", bucket=dest, limits=limits)
    s = time.perf_counter() - t
    assert bf.failed == 0
    assert bf.outputs["aggregates"]
    rows.append(("filecoin-backfill (bucket scan)", backend, bf.planned, mb, s))
    queue.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small dataset (smoke run)")
    ap.add_argument("--concurrency", type=int, default=8, help="engine concurrency")
    ap.add_argument("--no-s3", action="store_true", help="skip the S3 (moto) rows")
    args = ap.parse_args()
    uploads = 24 if args.quick else 240
    rows = []
    with tempfile.TemporaryDirectory(prefix="carmigrate-bench-recipes-") as d:
        tmp = Path(d)
        rows += run("local", uploads, args.concurrency, tmp, None)
        if not args.no_s3:
            moto = Moto()
            try:
                rows += run(
                    "S3 (moto)", max(8, uploads // 3), args.concurrency, tmp, moto
                )
            finally:
                moto.close()
    print(f"concurrency {args.concurrency}; uploads of 1-3 shards, 64 KiB-3 MiB each\n")
    print("| run | backend | uploads / CARs | MB | seconds | per second | MB/s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, backend, n, mb, s in rows:
        rate = f"{mb / s:.0f}" if mb else "-"
        print(
            f"| {name} | {backend} | {n} | {mb:.0f} | {s:.2f} | {n / s:.0f} | {rate} |"
        )


if __name__ == "__main__":
    main()
