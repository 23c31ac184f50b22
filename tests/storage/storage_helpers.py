"""Shared helpers for the storage tests (imported by conftest and tests)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import attrs

from carmigrate.errors import ColdObject
from carmigrate.storage import MemoryStore, ObjectInfo, RestoreStatus, S3Store

REPO = Path(__file__).resolve().parents[2]
SWIFT_SCRIPT = REPO / "scripts" / "swift-s3"
PART = 64 * 1024
"""The smallest multipart part both test servers accept."""


@dataclass
class S3Server:
    """One running S3-speaking server and what the backend must know about it."""

    name: str
    endpoint: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    options: dict[str, Any] = field(default_factory=dict)
    _clients: list[Any] = field(default_factory=list)
    _stores: list[S3Store] = field(default_factory=list)
    _counter: Iterator[int] = field(default_factory=itertools.count)

    def client(self, **config: Any) -> Any:
        """A raw boto3 client (closed at teardown)."""
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                **config,
            ),
        )
        self._clients.append(client)
        return client

    def bucket(self) -> str:
        """A new, empty bucket."""
        name = f"cm-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def store(
        self, bucket: str | None = None, prefix: str = "", **options: Any
    ) -> S3Store:
        """An S3Store on this server (closed at teardown)."""
        merged = {
            "endpoint_url": self.endpoint,
            "access_key_id": self.access_key,
            "secret_access_key": self.secret_key,
            "region": self.region,
            "part_size": PART,
            **self.options,
            **options,
        }
        store = S3Store(bucket or self.bucket(), prefix, **merged)
        self._stores.append(store)
        return store

    def store_factory(self, **options: Any) -> Callable[[], S3Store]:
        """A ``make_store`` for check_store: fresh prefixes in one bucket."""
        bucket = self.bucket()
        return lambda: self.store(bucket, f"c{next(self._counter)}", **options)

    def close(self) -> None:
        for store in self._stores:
            store.close()
        for client in self._clients:
            client.close()
        self._stores.clear()
        self._clients.clear()


class CallLog:
    """Record the S3 operations a client sends (botocore ``before-call``)."""

    def __init__(self, client: Any) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        client.meta.events.register("before-parameter-build.s3", self._record)

    def _record(self, model: Any, params: Any, **kwargs: Any) -> None:
        self.calls.append((model.name, dict(params)))

    def count(self, operation: str) -> int:
        return sum(1 for name, _ in self.calls if name == operation)

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        yield self._body


def inject_errors(
    client: Any,
    operation: str,
    times: int,
    *,
    status: int = 503,
    code: str = "SlowDown",
) -> list[int]:
    """Answer the next ``times`` calls of ``operation`` with an S3 error response.

    Returns a list that grows by one per injected response.
    """
    from botocore.awsrequest import AWSResponse

    injected: list[int] = []
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Error><Code>{code}</Code><Message>injected by the test</Message></Error>"
    ).encode()

    def handler(request: Any, **kwargs: Any) -> Any:
        if len(injected) >= times:
            return None
        injected.append(1)
        return AWSResponse(
            request.url, status, {"Content-Type": "application/xml"}, _Raw(body)
        )

    client.meta.events.register(f"before-send.s3.{operation}", handler)
    return injected


class BreakingBody:
    """A GetObject body that raises a connection error after ``after`` bytes."""

    def __init__(
        self, inner: Any, after: int, on_break: Callable[[], None] | None = None
    ):
        self._inner = inner
        self._left = after
        self._on_break = on_break

    def readinto(self, buffer: Any) -> int:
        import urllib3.exceptions

        view = memoryview(buffer).cast("B")
        if self._left <= 0 and len(view):
            if self._on_break is not None:
                self._on_break()
            raise urllib3.exceptions.ProtocolError(
                "Connection broken: injected by the test"
            )
        n = int(self._inner.readinto(view[: min(len(view), self._left)]))
        self._left -= n
        return n

    def read(self, amt: int | None = None) -> bytes:
        buf = bytearray(amt or 1 << 20)
        n = self.readinto(buf)
        return bytes(buf[:n])

    def close(self) -> None:
        self._inner.close()


def break_reads(
    client: Any, *, after: int, times: int, on_break: Callable[[], None] | None = None
) -> list[int]:
    """Make the next ``times`` GetObject bodies break after ``after`` bytes."""
    broken: list[int] = []

    def handler(parsed: Any, **kwargs: Any) -> None:
        if len(broken) < times and "Body" in parsed:
            broken.append(1)
            parsed["Body"] = BreakingBody(parsed["Body"], after, on_break)

    client.meta.events.register("after-call.s3.GetObject", handler)
    return broken


class ColdMemoryStore:
    """A store whose objects are all GLACIER until restored; it can restore.

    Implements ``SupportsRestore`` and no other optional Protocol. A restore
    finishes after ``polls`` further ``stat`` calls of the object.
    """

    def __init__(self, polls: int = 0) -> None:
        from carmigrate.storage.lowlevel import derive_capabilities

        self.inner = MemoryStore("cold")
        self.url = "memory://cold"
        self.polls = polls
        self.pending: dict[str, int] = {}
        self.requests: list[tuple[str, int, str]] = []
        self.capabilities = derive_capabilities(self.inner.capabilities, self)

    def _info(self, info: ObjectInfo) -> ObjectInfo:
        left = self.pending.get(info.key)
        if left is None:
            return attrs.evolve(info, storage_class="GLACIER")
        if left > 0:
            self.pending[info.key] = left - 1
        return attrs.evolve(
            info, storage_class="GLACIER", restore=RestoreStatus(in_progress=left > 0)
        )

    def stat(self, key: str) -> ObjectInfo:
        return self._info(self.inner.stat(key))

    def open_read(self, key: str, *, start: int = 0, end: int | None = None) -> Any:
        if self.stat(key).cold:
            raise ColdObject(f"{key} is cold", key=key, storage_class="GLACIER")
        return self.inner.open_read(key, start=start, end=end)

    def write(self, key: str, data: Any, **kwargs: Any) -> ObjectInfo:
        return self.inner.write(key, data, **kwargs)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for info in self.inner.list(prefix):
            yield self._info(info)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def close(self) -> None:
        self.inner.close()

    def request_restore(
        self, key: str, *, days: int = 1, tier: str = "Standard"
    ) -> None:
        self.inner.stat(key)  # ObjectNotFound for a missing key
        self.requests.append((key, days, tier))
        self.pending.setdefault(key, self.polls)
