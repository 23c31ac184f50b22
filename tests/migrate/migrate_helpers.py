"""Helpers for the migrate tests: CARs, store wrappers, ledger snapshots."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

import attrs

from carmigrate.car import CarWriter
from carmigrate.cid import CID
from carmigrate.errors import ColdObject, ObjectNotFound, StorageError
from carmigrate.migrate import Ledger
from carmigrate.storage import (
    Capabilities,
    ObjectInfo,
    RestoreStatus,
    Store,
    WriteData,
)


def make_car(blocks: int = 4, *, seed: bytes = b"x", block_size: int = 1000) -> bytes:
    """A valid CARv1 of raw blocks (sha2-256), rooted at its first block."""
    data = [seed + bytes([i % 256]) * (block_size + i) for i in range(blocks)]
    cids = [CID.from_data(b) for b in data]
    buf = io.BytesIO()
    with CarWriter(buf, roots=[cids[0]]) as w:
        for c, b in zip(cids, data, strict=True):
            w.write(c, b)
    return buf.getvalue()


def corrupt(car: bytes, at: int = -10) -> bytes:
    """The CAR with one bit flipped in the data of its last block."""
    out = bytearray(car)
    out[at] ^= 1
    return bytes(out)


def car_key(car: bytes, folder: str = "") -> str:
    """A web3.storage-style content-addressed key: ``<car cid>.car``."""
    name = f"{CID.from_data(car, codec='car')}.car"
    return f"{folder}/{name}" if folder else name


def keys(store: Store) -> list[str]:
    return [i.key for i in store.list()]


def contents(store: Store) -> dict[str, bytes]:
    out = {}
    for info in store.list():
        with store.open_read(info.key) as f:
            out[info.key] = f.read()
    return out


def ledger_snapshot(ledger: Ledger) -> dict[str, tuple[Any, ...]]:
    """What should not depend on how a run was split: state and outcome per key.

    ``"compare"`` is left out of the checks: an object found already written
    after an interruption is proven by comparing it with the source, on top
    of the checks a clean run makes.
    """
    return {
        r.item.key: (
            r.state.value,
            r.digests,
            r.created,
            r.replaced,
            tuple(c for c in r.checks if c != "compare"),
            r.car_check,
            r.piece_cid,
        )
        for r in ledger.items()
    }


class Kill(BaseException):
    """Simulates a worker killed mid-object (not an Exception: nothing catches it)."""


class KillingStore:
    """Wraps a store; the ``nth`` write (1-based) dies after ``after`` bytes."""

    def __init__(self, inner: Store, *, nth: int = 1, after: int = 1) -> None:
        self.inner = inner
        self.nth = nth
        self.after = after
        self.writes = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return self.inner.url

    @property
    def capabilities(self) -> Capabilities:
        return attrs.evolve(self.inner.capabilities, server_side_copy=False)

    def stat(self, key: str) -> ObjectInfo:
        return self.inner.stat(key)

    def open_read(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> BinaryIO:
        return self.inner.open_read(key, start=start, end=end)

    def write(self, key: str, data: WriteData, **kwargs: Any) -> ObjectInfo:
        with self.lock:
            self.writes += 1
            doomed = self.writes == self.nth
        if not doomed:
            return self.inner.write(key, data, **kwargs)

        def dying() -> Iterator[bytes]:
            sent = 0
            for chunk in data:  # type: ignore[union-attr]
                yield chunk
                sent += len(chunk)
                if sent >= self.after:
                    raise Kill(key)

        return self.inner.write(key, dying(), **kwargs)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def close(self) -> None:
        self.inner.close()


class ColdStore:
    """Wraps a store: listed keys in ``cold`` are GLACIER until restored.

    A restore finishes after ``polls`` more ``stat`` calls, so the waiting
    path of the executor runs (moto finishes restores at once).
    """

    def __init__(self, inner: Store, cold: set[str], *, polls: int = 2) -> None:
        self.inner = inner
        self.cold = set(cold)
        self.polls = polls
        self.pending: dict[str, int] = {}
        self.requests: list[str] = []
        self.outstanding: set[str] = set()
        self.max_outstanding = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return self.inner.url

    @property
    def capabilities(self) -> Capabilities:
        return attrs.evolve(
            self.inner.capabilities, cold_tier=True, server_side_copy=False
        )

    def _info(self, info: ObjectInfo) -> ObjectInfo:
        with self.lock:
            if info.key not in self.cold:
                return info
            left = self.pending.get(info.key)
            if left is None:
                return attrs.evolve(info, storage_class="GLACIER")
            if left > 0:
                self.pending[info.key] = left - 1
                return attrs.evolve(
                    info,
                    storage_class="GLACIER",
                    restore=RestoreStatus(in_progress=True),
                )
            return attrs.evolve(
                info, storage_class="GLACIER", restore=RestoreStatus(in_progress=False)
            )

    def stat(self, key: str) -> ObjectInfo:
        return self._info(self.inner.stat(key))

    def open_read(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> BinaryIO:
        if self.stat(key).cold:
            raise ColdObject(f"{key} is cold", key=key, storage_class="GLACIER")
        with self.lock:
            self.outstanding.discard(key)
        return self.inner.open_read(key, start=start, end=end)

    def request_restore(
        self, key: str, *, days: int = 1, tier: str = "Standard"
    ) -> None:
        with self.lock:
            if key not in self.cold:
                raise StorageError(f"{key} is not cold", key=key)
            self.requests.append(key)
            self.pending.setdefault(key, self.polls)
            self.outstanding.add(key)
            self.max_outstanding = max(self.max_outstanding, len(self.outstanding))

    def write(self, key: str, data: WriteData, **kwargs: Any) -> ObjectInfo:
        return self.inner.write(key, data, **kwargs)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for info in self.inner.list(prefix):
            yield self._info(info)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def close(self) -> None:
        self.inner.close()


class UnsortedStore:
    """Wraps a store and lists in reverse order, declaring it."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner

    @property
    def url(self) -> str:
        return self.inner.url

    @property
    def capabilities(self) -> Capabilities:
        return attrs.evolve(self.inner.capabilities, sorted_listing=False)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return iter(list(self.inner.list(prefix))[::-1])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class LyingStore(UnsortedStore):
    """Lists in reverse order but claims a sorted listing."""

    @property
    def capabilities(self) -> Capabilities:
        return attrs.evolve(self.inner.capabilities, sorted_listing=True)


def fill(store: Store, objects: Mapping[str, bytes]) -> None:
    for key, data in objects.items():
        store.write(key, data, size=len(data))


def missing(store: Store, key: str) -> bool:
    try:
        store.stat(key)
    except ObjectNotFound:
        return True
    return False
