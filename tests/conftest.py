"""Shared test configuration: Hypothesis profiles, and the Swift server.

``dev`` (the default) keeps property tests quick; ``ci`` runs more examples.
Choose with ``HYPOTHESIS_PROFILE``.

OpenStack Swift with s3api is started once per session by
``scripts/swift-s3`` under Debian's ``/usr/bin/python3`` (the storage tests
and the CLI tests share it). If it cannot start, every Swift test fails with
the script's diagnostics, unless ``CARMIGRATE_SKIP_SWIFT=1`` is set.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from pg_cluster import pg_database, postgres_socket  # noqa: F401 - shared fixtures

SWIFT_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "swift-s3"
SWIFT_MIN_PART = 64 * 1024  # the smallest multipart part both S3 servers accept

settings.register_profile(
    "dev", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(scope="session")
def swift_endpoint(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, str]]:
    """OpenStack Swift with s3api, started by scripts/swift-s3."""
    state = tmp_path_factory.mktemp("swift") / "state"
    cmd = ["/usr/bin/python3", str(SWIFT_SCRIPT), "--state-dir", str(state)]
    try:
        proc = subprocess.run(
            [*cmd[:2], "start", *cmd[2:], "--min-part-size", str(SWIFT_MIN_PART)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        problem = (
            None if proc.returncode == 0 else f"exit {proc.returncode}\n{proc.stderr}"
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        proc = None
        problem = f"{type(e).__name__}: {e}"
    if problem is not None:
        message = f"scripts/swift-s3 start failed: {problem}"
        if os.environ.get("CARMIGRATE_SKIP_SWIFT") == "1":
            pytest.skip(f"CARMIGRATE_SKIP_SWIFT=1 and {message}")
        pytest.fail(
            f"{message}\n(install the servers with `make system-deps`, or set "
            "CARMIGRATE_SKIP_SWIFT=1 to skip the Swift tests)",
            pytrace=False,
        )
    assert proc is not None
    env = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    try:
        yield env
    finally:
        subprocess.run(
            [*cmd[:2], "stop", *cmd[2:]], capture_output=True, timeout=60, check=False
        )
