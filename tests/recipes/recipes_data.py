"""A generated web3.storage legacy dataset and store wrappers for the recipe tests.

The dataset (``legacy_dataset``) has realistic shapes at a test-friendly
scale: UnixFS-sized blocks (up to 256 KiB), shards of 64 KiB to about 1 MiB,
multi-shard uploads whose non-final shards have no header root (as w3up's
sharding writes them), unicode names, three tenants and uploads without one,
both bucket key schemes, and the failure cases: a missing shard, a corrupt
shard, an upload whose root is in none of its shards.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

import attrs

from carmigrate.car import CarWriter
from carmigrate.cid import CID, Multihash, encode_dag_cbor
from carmigrate.recipes import CAR_CODEC
from carmigrate.storage import Capabilities, ObjectInfo, S3Store, Store, WriteData

KIB = 1024
BLOCK = 256 * KIB


def car_link(car: bytes) -> CID:
    return CID.create(1, CAR_CODEC, Multihash(0x12, hashlib.sha256(car).digest()))


def b32(link: CID) -> str:
    """The legacy ``<base32 multihash>`` name of a CAR (``ciq…``)."""
    return base64.b32encode(link.multihash_bytes).decode().lower().rstrip("=")


def make_dag(seed: str, size: int) -> tuple[CID, list[tuple[CID, bytes]]]:
    """A file of ``size`` bytes as raw leaves plus a DAG-CBOR root linking them."""
    rnd = random.Random(seed)
    leaves = []
    left = size
    while left > 0:
        data = rnd.randbytes(min(BLOCK, left))
        leaves.append((CID.from_data(data), data))
        left -= len(data)
    root_data = encode_dag_cbor({"name": seed, "links": [c for c, _ in leaves]})
    root = CID.from_data(root_data, codec="dag-cbor")
    return root, [*leaves, (root, root_data)]


def shard(
    root: CID, blocks: list[tuple[CID, bytes]], n: int, *, every_root: bool = False
) -> list[bytes]:
    """Split blocks into ``n`` CARs; the root block goes last, and only the last
    CAR names the root in its header (unless ``every_root``: legacy style)."""
    groups: list[list[tuple[CID, bytes]]] = [[] for _ in range(n)]
    for i, b in enumerate(blocks[:-1]):
        groups[min(i * n // max(1, len(blocks) - 1), n - 1)].append(b)
    groups[-1].append(blocks[-1])
    cars = []
    for i, g in enumerate(groups):
        buf = io.BytesIO()
        roots = [root] if every_root or i == n - 1 else []
        with CarWriter(buf, roots) as w:
            for c, d in g:
                w.write(c, d)
        cars.append(buf.getvalue())
    return cars


def corrupt(car: bytes) -> bytes:
    out = bytearray(car)
    out[len(out) // 2] ^= 0x40
    return bytes(out)


@attrs.define
class Upload:
    tenant: str | None
    name: str
    root: CID
    cars: list[bytes]
    variant: str  # "shards" or "backupUrls"
    expect: str  # "complete" or a substring of the failure reason


@attrs.define
class LegacyDataset:
    """What goes where, and what the recipe should make of it."""

    uploads: list[Upload]
    bucket_a: dict[str, bytes]
    bucket_b: dict[str, bytes]
    destination: dict[str, bytes]
    fixes_a: dict[str, bytes]  # put these into bucket A before the re-run
    listing: list[str]

    def good(self) -> list[Upload]:
        return [u for u in self.uploads if u.expect == "complete"]

    def bad(self) -> list[Upload]:
        return [u for u in self.uploads if u.expect != "complete"]

    def cars(self) -> dict[CID, bytes]:
        return {car_link(c): c for u in self.uploads for c in u.cars}


def key_a(root: CID, tenant: str | None, link: CID) -> str:
    """Bucket A (old ``dotstorage`` style): raw/<root>/<user>/<base32 multihash>.car."""
    return f"raw/{root}/{tenant or 'anon'}/{b32(link)}.car"


def key_b(link: CID) -> str:
    """Bucket B (``carpark`` style, older prefix): complete/<CAR CID>.car."""
    return f"complete/{link}.car"


def dest_key(link: CID) -> str:
    return f"{link}/{link}.car"


def legacy_dataset(scale: int = 1) -> LegacyDataset:
    """The dataset; ``scale`` multiplies the file sizes (benchmarks)."""
    a: dict[str, bytes] = {}
    b: dict[str, bytes] = {}
    dest: dict[str, bytes] = {}
    fixes: dict[str, bytes] = {}
    uploads: list[Upload] = []

    def up(
        tenant: str | None,
        name: str,
        size: int,
        n: int,
        expect: str = "complete",
        variant: str = "shards",
        every_root: bool = False,
    ) -> Upload:
        root, blocks = make_dag(f"{tenant}/{name}", size * scale)
        u = Upload(
            tenant,
            name,
            root,
            shard(root, blocks, n, every_root=every_root),
            variant,
            expect,
        )
        uploads.append(u)
        return u

    # 1. one shard in bucket A, listed by backup URL
    u1 = up(
        "alice",
        "holiday photos 🌴",
        1200 * KIB,
        1,
        variant="backupUrls",
        every_root=True,
    )
    a[key_a(u1.root, "alice", car_link(u1.cars[0]))] = u1.cars[0]
    # 2. three shards over both buckets; the third is in both (taken once, from A)
    u2 = up("alice", "Ünïcødé — 数据 📦", 2600 * KIB, 3)
    s1, s2, s3 = (car_link(c) for c in u2.cars)
    a[key_a(u2.root, "alice", s1)] = u2.cars[0]
    b[key_b(s2)] = u2.cars[1]
    a[key_a(u2.root, "alice", s3)] = u2.cars[2]
    b[key_b(s3)] = u2.cars[2]
    # 3. already in the destination: one shard also in B, one only there
    u3 = up("bob", "déjà là", 900 * KIB, 2)
    t1, t2 = (car_link(c) for c in u3.cars)
    dest[dest_key(t1)] = u3.cars[0]
    b[key_b(t1)] = u3.cars[0]
    dest[dest_key(t2)] = u3.cars[1]
    # 4. a missing shard (put into A before the re-run)
    u4 = up("bob", "missing piece", 700 * KIB, 2, expect="in no legacy bucket")
    m1, m2 = (car_link(c) for c in u4.cars)
    b[key_b(m1)] = u4.cars[0]
    fixes[key_a(u4.root, "bob", m2)] = u4.cars[1]
    # 5. a corrupt shard (its good bytes go back before the re-run)
    u5 = up(
        "carol 👩‍🔬",
        "broken",
        800 * KIB,
        1,
        expect="not the bytes its CAR CID names: .*sha256|CAR check failed",
        variant="backupUrls",
        every_root=True,
    )
    c1 = car_link(u5.cars[0])
    a[key_a(u5.root, "carol 👩‍🔬", c1)] = corrupt(u5.cars[0])
    fixes[key_a(u5.root, "carol 👩‍🔬", c1)] = u5.cars[0]
    # 6. shares a shard with upload 2 (another tenant), plus its own
    root6, blocks6 = make_dag("carol/shared", 300 * KIB * scale)
    own = shard(root6, blocks6, 1, every_root=True)[0]
    u6 = Upload(
        "carol 👩‍🔬", "shared + own", root6, [u2.cars[0], own], "shards", "complete"
    )
    uploads.append(u6)
    b[key_b(car_link(own))] = own
    # 7. the listing's root is in none of its shards
    u7 = up(
        None, "wrong root", 200 * KIB, 1, expect="is not a root of any", every_root=True
    )
    b[key_b(car_link(u7.cars[0]))] = u7.cars[0]
    u7.root = make_dag("elsewhere", 10)[0]
    # 8. small, no tenant, backup URL with a query string
    u8 = up(None, "", 64 * KIB, 1, variant="backupUrls", every_root=True)
    b[key_b(car_link(u8.cars[0]))] = u8.cars[0]

    listing = []
    for i, u in enumerate(uploads):
        links = [car_link(c) for c in u.cars]
        obj: dict[str, Any] = {
            "cid": str(u.root),
            "name": u.name,
            "created": f"2021-0{1 + i % 9}-1{i}T12:00:00.000Z",
            "dagSize": sum(len(c) for c in u.cars),
        }
        if u.tenant is not None:
            obj["tenant"] = u.tenant
        if u.variant == "backupUrls":
            obj["backupUrls"] = [
                f"https://dotstorage-prod-1.s3.amazonaws.com/raw/{u.root}/{b32(lk)}.car?v=1"
                if j % 2 == 0
                else f"https://carpark.example/{lk}/{lk}.car"
                for j, lk in enumerate(links)
            ]
        else:
            obj["shards"] = [str(lk) for lk in links]
        listing.append(json.dumps(obj, ensure_ascii=False))
    return LegacyDataset(uploads, a, b, dest, fixes, listing)


def fill(store: Store, objects: Mapping[str, bytes]) -> None:
    for key, data in objects.items():
        store.write(key, data)


class CountingStore:
    """Wraps a store and counts published writes and reads per key (thread-safe)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.writes: Counter[str] = Counter()
        self.reads: Counter[str] = Counter()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return self.inner.url

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    def stat(self, key: str) -> ObjectInfo:
        return self.inner.stat(key)

    def open_read(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> BinaryIO:
        with self._lock:
            self.reads[key] += 1
        return self.inner.open_read(key, start=start, end=end)

    def write(self, key: str, data: WriteData, **kw: Any) -> ObjectInfo:
        info = self.inner.write(key, data, **kw)  # counted once it is published
        with self._lock:
            self.writes[key] += 1
        return info

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def close(self) -> None:
        pass

    def reset(self) -> None:
        self.writes.clear()
        self.reads.clear()


def new_bucket(moto: dict[str, Any], prefix: str, key_id: str | None = None) -> S3Store:
    """A new, empty bucket on the session's moto server (``key_id``: this side's own credentials; moto takes any)."""
    import uuid

    import boto3

    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    client = boto3.client(
        "s3",
        endpoint_url=moto["endpoint_url"],
        aws_access_key_id=moto["access_key_id"],
        aws_secret_access_key=moto["secret_access_key"],
        region_name=moto["region"],
    )
    client.create_bucket(Bucket=name)
    client.close()
    if key_id is None:
        return S3Store(name, **moto)
    return S3Store(name, **{**moto, "access_key_id": key_id})
