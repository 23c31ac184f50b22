"""scripts/swift-s3: status reports, start is idempotent."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from storage_helpers import SWIFT_SCRIPT


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/usr/bin/python3", str(SWIFT_SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_status_of_a_server_never_started(tmp_path: Path) -> None:
    """status fails, saying the server was not started."""
    proc = run("status", "--state-dir", str(tmp_path / "none"))

    assert proc.returncode == 1
    assert "not started" in proc.stderr


@pytest.mark.swift
def test_status_and_restart_of_the_running_server(
    swift_endpoint: dict[str, str],
) -> None:
    """status prints the endpoint; start on a healthy server reuses it."""
    state = swift_endpoint["SWIFT_STATE_DIR"]
    status = run("status", "--state-dir", state)
    again = run("start", "--state-dir", state)

    assert status.returncode == 0, status.stderr
    assert f"SWIFT_S3_ENDPOINT={swift_endpoint['SWIFT_S3_ENDPOINT']}" in status.stdout
    assert again.returncode == 0
    assert again.stdout == status.stdout


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(proc.name))
    return found


def test_failed_start_prints_config_and_logs_and_cleans_up(tmp_path: Path) -> None:
    """A start that does not get healthy prints what it used and stops what it started."""
    state = tmp_path / "state"
    proc = run("start", "--state-dir", str(state), "--timeout", "0")

    assert proc.returncode == 1
    assert "did not become healthy" in proc.stderr
    assert "[pipeline:main]" in proc.stderr  # the configs ...
    assert "proxy-server.conf" in proc.stderr
    assert "log/proxy.log" in proc.stderr  # ... and the log tails
    assert _processes_mentioning(str(state)) == []
