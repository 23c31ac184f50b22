"""Fixtures for the storage tests: two independent S3 servers on 127.0.0.1.

- moto's ``ThreadedMotoServer`` on a random free port, one per session, reset
  (``POST /moto-api/reset``) before every test that uses it;
- OpenStack Swift with s3api (``swift_endpoint``, a session fixture of
  ``tests/conftest.py`` that the CLI tests share).

Both servers accept multipart parts of 64 KiB (moto's and Swift's minimum
part size are lowered) so multipart paths run on small objects.

Azurite (Azure Blob Storage's emulator, ``azurite_endpoint``) runs once per
session on a free port of 127.0.0.1, installed by ``scripts/install-azurite``.
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure_helpers import AzuriteServer
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


# ----------------------------------------------------------------------
# Azurite (Azure Blob Storage)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _start_azurite(binary: str, location: Path, log: Path) -> tuple[Any, str]:
    """Start azurite-blob on a free port; wait until it answers over HTTP."""
    import subprocess
    import time
    import urllib.error

    from azure_helpers import ACCOUNT

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}/{ACCOUNT}"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                binary, "--blobHost", "127.0.0.1", "--blobPort", str(port),
                "--location", str(location), "--silent", "--skipApiVersionCheck",
            ],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"{endpoint}?comp=list", timeout=2) as r:
                r.read()
            return proc, endpoint
        except urllib.error.HTTPError:
            return proc, endpoint  # 403 without credentials: it answers
        except OSError:
            time.sleep(0.1)
    _stop_azurite(proc)
    raise RuntimeError(
        f"azurite-blob on port {port} did not answer (exit code {proc.poll()}):\n"
        + log.read_text(errors="replace")[-3000:]
    )


def _stop_azurite(proc: Any) -> None:
    import subprocess

    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def azurite_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Azurite's blob service on a free port of 127.0.0.1, for the whole session.

    ``scripts/install-azurite`` installs it (npm, once) if it is missing.
    If it cannot be installed or started, the Azure tests fail with the
    diagnostics, unless ``CARMIGRATE_SKIP_AZURITE=1`` is set (then they skip).
    """
    import os
    import subprocess

    from azure_helpers import INSTALL_AZURITE

    try:
        installed = subprocess.run(
            ["bash", str(INSTALL_AZURITE)],
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        problem = (
            None
            if installed.returncode == 0
            else f"exit {installed.returncode}\n{installed.stderr}"
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        problem = f"{type(e).__name__}: {e}"
    proc = None
    if problem is None:
        binary = installed.stdout.strip().splitlines()[-1]
        state = tmp_path_factory.mktemp("azurite")
        for _ in range(3):  # the free port may be taken before Azurite binds it
            try:
                proc, endpoint = _start_azurite(binary, state, state / "azurite.log")
                break
            except RuntimeError as e:
                problem = str(e)
        else:
            proc = None
    if proc is None:
        message = f"Azurite could not be installed or started: {problem}"
        if os.environ.get("CARMIGRATE_SKIP_AZURITE") == "1":
            pytest.skip(f"CARMIGRATE_SKIP_AZURITE=1 and {message}")
        pytest.fail(
            f"{message}\n(install it with `make node-deps`, or set "
            "CARMIGRATE_SKIP_AZURITE=1 to skip the Azure tests)",
            pytrace=False,
        )
    try:
        yield endpoint
    finally:
        _stop_azurite(proc)


@pytest.fixture
def azurite(azurite_endpoint: str) -> Iterator[AzuriteServer]:
    """The Azurite server (shared; every test uses new containers)."""
    server = AzuriteServer(azurite_endpoint)
    try:
        yield server
    finally:
        server.close()
