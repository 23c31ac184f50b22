"""``carmigrate bag verify``: exit codes 0, 1 and 2, the text and the JSON output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from bag_helpers import EXTERNAL_IDENTIFIER, PAYLOAD, copy_bag, payload_size, reseal

from carmigrate.cli import main

BIG = "data/big/three-megabytes.bin"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["bag", "verify", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_valid_bag(capsys: pytest.CaptureFixture[str], loc_bag: Path) -> None:
    """Exit 0 and one line."""
    code, out, err = run(capsys, str(loc_bag))

    assert code == 0
    assert out == (
        f"valid: {len(PAYLOAD)} payload files, {payload_size()} bytes, checked with sha512\n"
    )
    assert err == ""


def test_a_valid_bag_as_json(capsys: pytest.CaptureFixture[str], loc_bag: Path) -> None:
    """--json prints the result's to_dict()."""
    code, out, _ = run(
        capsys,
        loc_bag.as_uri(),
        "--json",
        "--external-identifier",
        EXTERNAL_IDENTIFIER,
    )

    assert code == 0
    assert json.loads(out) == {
        "valid": True,
        "algorithm": "sha512",
        "files": len(PAYLOAD),
        "bytes": payload_size(),
        "failures": [],
    }


def test_an_invalid_bag(
    capsys: pytest.CaptureFixture[str], bag: Path, tmp_path: Path
) -> None:
    """Exit 1; every failure on its own line, then a summary."""
    (bag / "data" / "stray.txt").write_bytes(b"x")

    code, out, _ = run(capsys, str(bag), "--external-identifier", "b1")

    assert code == 1
    assert out.splitlines() == [
        f"external-identifier: bag-info.txt's External-Identifier is "
        f"'{EXTERNAL_IDENTIFIER}', not 'b1'",
        "unreferenced-files: 'data/stray.txt' is stored in the bag but no manifest "
        "lists it",
        "INVALID: 2 failures of 2 rules (external-identifier, unreferenced-files)",
    ]


def test_an_invalid_bag_as_json(capsys: pytest.CaptureFixture[str], bag: Path) -> None:
    """--json lists the failures as {rule, path, message}."""
    (bag / "data" / "a.txt").write_bytes(b"HELLO\n")

    code, out, _ = run(capsys, str(bag), "--json")

    assert code == 1
    doc = json.loads(out)
    assert doc["valid"] is False
    assert [(f["rule"], f["path"]) for f in doc["failures"]] == [
        ("checksum", "data/a.txt"),
        ("checksum", "data/a.txt"),
    ]


def test_a_replica_and_fetch_roots(
    capsys: pytest.CaptureFixture[str], bag: Path, tmp_path: Path
) -> None:
    """--replica-of, --fetch-root and --allowed-fetch-prefix reach the library."""
    older = tmp_path / "older"
    (older / EXTERNAL_IDENTIFIER / "v1" / "data" / "big").mkdir(parents=True)
    (bag / BIG).rename(older / EXTERNAL_IDENTIFIER / "v1" / BIG)
    url = f"s3://storage/digitised/{EXTERNAL_IDENTIFIER}/v1/{BIG}"
    (bag / "fetch.txt").write_text(f"{url} - {BIG}\n")
    reseal(bag)
    replica = copy_bag(bag, tmp_path / "replica")

    code, out, err = run(
        capsys,
        str(replica),
        "--replica-of",
        str(bag),
        "--fetch-root",
        f"s3://storage/digitised/={older}",
        "--allowed-fetch-prefix",
        f"s3://storage/digitised/{EXTERNAL_IDENTIFIER}/",
        "--json",
    )

    assert (code, err) == (0, "")
    assert json.loads(out)["bytes"] == payload_size()

    code, out, _ = run(capsys, str(replica), "--json")
    assert code == 1
    assert "which no fetch root covers" in out


def test_no_bag_is_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A folder with nothing in it, or no folder: exit 2, one line, a JSON error."""
    (tmp_path / "empty").mkdir()

    code, out, err = run(capsys, str(tmp_path / "empty"), "--json")

    assert code == 2
    assert err.startswith("carmigrate bag verify: error: no bag at ")
    assert json.loads(out)["error"]["type"] == "BagError"

    code, out, err = run(capsys, str(tmp_path / "missing"))
    assert code == 2
    assert out == ""
    assert err.startswith("carmigrate bag verify: error: ")


def test_a_bad_fetch_root_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], loc_bag: Path
) -> None:
    """--fetch-root without '=' is refused by the parser: exit 2."""
    with pytest.raises(SystemExit) as info:
        main(["bag", "verify", str(loc_bag), "--fetch-root", "s3://x", "--json"])

    assert info.value.code == 2
    out, _ = capsys.readouterr()
    assert "expected URL_PREFIX=STORE_URL" in json.loads(out)["error"]["message"]


def test_as_a_subprocess(loc_bag: Path, bag: Path) -> None:
    """The installed entry point gives the same exit codes."""
    ok = subprocess.run(
        [sys.executable, "-m", "carmigrate", "bag", "verify", str(loc_bag)],
        capture_output=True,
        text=True,
        check=False,
    )
    (bag / "notes.txt").write_text("x")
    bad = subprocess.run(
        [sys.executable, "-m", "carmigrate", "bag", "verify", str(bag), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert ok.returncode == 0
    assert ok.stdout.startswith("valid: ")
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["failures"][0]["rule"] == "unreferenced-files"
