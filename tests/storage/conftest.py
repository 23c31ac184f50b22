"""Fixtures for the storage tests: two independent S3 servers on 127.0.0.1.

- moto's ``ThreadedMotoServer`` on a random free port, one per session, reset
  (``POST /moto-api/reset``) before every test that uses it;
- OpenStack Swift with s3api (``swift_endpoint``, a session fixture of
  ``tests/conftest.py`` that the CLI tests share).

Both servers accept multipart parts of 64 KiB (moto's and Swift's minimum
part size are lowered) so multipart paths run on small objects.
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from storage_helpers import PART, S3Server

# ----------------------------------------------------------------------
# moto


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's threaded server on a random free port of 127.0.0.1."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    import moto.s3.models
    from moto.server import ThreadedMotoServer

    saved = moto.s3.models.S3_UPLOAD_PART_MIN_SIZE
    moto.s3.models.S3_UPLOAD_PART_MIN_SIZE = PART  # type: ignore[attr-defined]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        moto.s3.models.S3_UPLOAD_PART_MIN_SIZE = saved  # type: ignore[attr-defined]


def _reset_moto(endpoint: str) -> None:
    req = urllib.request.Request(f"{endpoint}/moto-api/reset", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


@pytest.fixture
def moto(moto_endpoint: str) -> Iterator[S3Server]:
    """A freshly reset moto server."""
    _reset_moto(moto_endpoint)
    server = S3Server("moto", moto_endpoint, "moto-key", "moto-secret")
    try:
        yield server
    finally:
        server.close()


# ----------------------------------------------------------------------
# Swift


SWIFT_OPTIONS: dict[str, Any] = {
    # Swift s3api 2.30: no Checksum* fields, If-None-Match only on
    # CompleteMultipartUpload, no cold storage classes. The default
    # conditional_write="auto" finds the second out on the first if-absent
    # write (see swift_defaults); declaring it makes capabilities say so from
    # the start, which check_store's if_absent_race needs.
    "checksums": False,
    "conditional_write": "multipart",
    "cold_tier": False,
}


@pytest.fixture
def swift(swift_endpoint: dict[str, str]) -> Iterator[S3Server]:
    """The Swift server (shared; every test uses new buckets)."""
    server = S3Server(
        "swift",
        swift_endpoint["SWIFT_S3_ENDPOINT"],
        swift_endpoint["SWIFT_S3_ACCESS_KEY"],
        swift_endpoint["SWIFT_S3_SECRET_KEY"],
        swift_endpoint.get("SWIFT_S3_REGION", "us-east-1"),
        options=dict(SWIFT_OPTIONS),
    )
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def swift_defaults(swift_endpoint: dict[str, str]) -> Iterator[S3Server]:
    """The Swift server, with S3Store's default options (no SWIFT_OPTIONS)."""
    server = S3Server(
        "swift",
        swift_endpoint["SWIFT_S3_ENDPOINT"],
        swift_endpoint["SWIFT_S3_ACCESS_KEY"],
        swift_endpoint["SWIFT_S3_SECRET_KEY"],
        swift_endpoint.get("SWIFT_S3_REGION", "us-east-1"),
    )
    try:
        yield server
    finally:
        server.close()


# ----------------------------------------------------------------------
# both


S3_PARAMS = [
    pytest.param("moto", marks=pytest.mark.s3, id="moto"),
    pytest.param("swift", marks=[pytest.mark.s3, pytest.mark.swift], id="swift"),
]


@pytest.fixture(params=S3_PARAMS)
def s3(request: pytest.FixtureRequest) -> S3Server:
    """Each S3 server in turn."""
    server: S3Server = request.getfixturevalue(request.param)
    return server
