"""Fixtures for the migrate tests: local stores, a moto S3 server, a Dask cluster."""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from carmigrate.migrate import Ledger
from carmigrate.storage import LocalStore


@pytest.fixture
def src(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "src", fsync=False)


@pytest.fixture
def dst(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "dst", fsync=False)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger(tmp_path / "ledger.db")
    yield led
    led.close()


@pytest.fixture(scope="session")
def migrate_moto() -> Iterator[str]:
    """moto's threaded S3 server on a random free port of 127.0.0.1."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_options(migrate_moto: str) -> dict[str, Any]:
    """S3Store options for the (freshly reset) moto server."""
    req = urllib.request.Request(
        f"{migrate_moto}/moto-api/reset", data=b"", method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()
    return {
        "endpoint_url": migrate_moto,
        "access_key_id": "moto-key",
        "secret_access_key": "moto-secret",
        "region": "us-east-1",
    }
