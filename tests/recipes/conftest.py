"""Fixtures for the recipe tests: the legacy dataset in local stores or on moto S3."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from recipes_data import CountingStore, LegacyDataset, fill, legacy_dataset

from carmigrate.storage import LocalStore, S3Store, Store


@pytest.fixture(scope="session")
def recipes_moto() -> Iterator[dict[str, Any]]:
    """moto's threaded S3 server on a random free port of 127.0.0.1, and S3Store options."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield {
            "endpoint_url": f"http://{host}:{port}",
            "access_key_id": "moto-key",
            "secret_access_key": "moto-secret",
            "region": "us-east-1",
        }
    finally:
        server.stop()


@attrs.define
class Backend:
    """Makes empty stores of one kind (closed at the end of the test)."""

    kind: str
    make: Callable[[str], Store]
    opened: list[Store] = attrs.field(factory=list)

    def store(self, name: str) -> Store:
        s = self.make(name)
        self.opened.append(s)
        return s


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Local folders, or fresh buckets on the moto server."""
    if request.param == "local":
        b = Backend(
            "local", lambda name: LocalStore(tmp_path / "stores" / name, fsync=False)
        )
    else:
        options = request.getfixturevalue("recipes_moto")

        def make(name: str) -> Store:
            import boto3

            bucket = f"{name}-{uuid.uuid4().hex[:10]}"
            client = boto3.client(
                "s3",
                endpoint_url=options["endpoint_url"],
                aws_access_key_id=options["access_key_id"],
                aws_secret_access_key=options["secret_access_key"],
                region_name=options["region"],
            )
            client.create_bucket(Bucket=bucket)
            client.close()
            return S3Store(bucket, **options)

        b = Backend("s3", make)
    yield b
    for s in b.opened:
        s.close()


@attrs.define
class Legacy:
    """The dataset placed in two legacy buckets and a destination that counts writes."""

    ds: LegacyDataset
    a: Store
    b: Store
    dest: CountingStore
    work: Path


@pytest.fixture
def legacy(backend: Backend, tmp_path: Path) -> Legacy:
    ds = legacy_dataset()
    a, b, d = (
        backend.store("legacy-a"),
        backend.store("legacy-b"),
        backend.store("carpark"),
    )
    fill(a, ds.bucket_a)
    fill(b, ds.bucket_b)
    fill(d, ds.destination)
    return Legacy(ds, a, b, CountingStore(d), tmp_path / "work")


@pytest.fixture
def new_pg(pg_database: Callable[[], str]) -> Callable[[], str]:
    """A maker of empty databases on the session's PostgreSQL cluster (tests/pg_cluster.py)."""
    return pg_database
