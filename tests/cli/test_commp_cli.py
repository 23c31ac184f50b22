"""``carmigrate commp``: text and JSON output, several files, stdin as a stream."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from carmigrate.commp import commp

# The full CLI needs every command module; until all of them exist, drive the
# commp command through its own register() the way _main does.
_DRIVER = """
import argparse, sys
from carmigrate.cli._commp import register
parser = argparse.ArgumentParser(prog="carmigrate")
register(parser.add_subparsers(dest="command", required=True))
args = parser.parse_args(sys.argv[1:])
sys.exit(args.handler(args))
"""


def _cli() -> list[str]:
    if importlib.util.find_spec("carmigrate.cli._car") is not None:
        return [sys.executable, "-m", "carmigrate"]
    return [sys.executable, "-c", _DRIVER]


def _payload(n: int) -> bytes:
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(b"carmigrate/commp/v1" + struct.pack("<Q", i)).digest()
        i += 1
    return bytes(out[:n])


def _run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*_cli(), *args], input=stdin, capture_output=True, check=False
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("cars")
    out = []
    for name, size in (("a.car", 1_000_000), ("b.car", 65), ("empty.car", 0)):
        p = d / name
        p.write_bytes(_payload(size))
        out.append(p)
    return out


def test_json_output(files: list[Path]) -> None:
    res = _run("commp", "--json", *map(str, files))
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.decode().splitlines()]
    assert [x["file"] for x in lines] == [str(f) for f in files]
    # pieces.jsonl: sha256-counter/v1, 1000000 bytes
    assert lines[0] == {
        "file": str(files[0]),
        "payload_size": 1_000_000,
        "piece_cid": str(commp(files[0]).cid_v1),
        "piece_cid_v2": str(commp(files[0]).cid_v2),
        "padded_size": 1_048_576,
    }
    assert lines[1]["piece_cid"] == (
        "baga6ea4seaqofrhtakxgoiu3rq5xw53bca3n4cfgkcfrx7g5ei2bklkpdlsjuky"
    )
    assert lines[1]["piece_cid_v2"] == (
        "bafkzcibchybofrhtakxgoiu3rq5xw53bca3n4cfgkcfrx7g5ei2bklkpdlsjuky"
    )
    assert lines[2]["payload_size"] == 0
    assert lines[2]["padded_size"] == 128


def test_text_output(files: list[Path]) -> None:
    res = _run("commp", "--threads", "1", str(files[1]))
    assert res.returncode == 0, res.stderr
    v1, v2, padded, payload, name = res.stdout.decode().split()
    assert v1.startswith("baga6ea4seaq")
    assert v2.startswith("bafkzcib")
    assert (padded, payload, name) == ("128", "65", str(files[1]))


def test_stdin_is_streamed(files: list[Path]) -> None:
    """A payload larger than a batch, piped through standard input."""
    data = _payload(9_000_001)
    res = _run("commp", "--json", "-", stdin=data)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    want = commp(data)
    assert got["file"] == "-"
    assert got["payload_size"] == len(data)
    assert got["piece_cid"] == str(want.cid_v1)
    assert got["piece_cid_v2"] == str(want.cid_v2)
    assert got["padded_size"] == 16 << 20


def test_stdin_from_a_real_pipe(files: list[Path]) -> None:
    with subprocess.Popen(["cat", str(files[0])], stdout=subprocess.PIPE) as cat:
        res = subprocess.run(
            [*_cli(), "commp", "--json", "-"],
            stdin=cat.stdout,
            capture_output=True,
            check=False,
        )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["piece_cid"] == str(commp(files[0]).cid_v1)


def test_missing_file_is_exit_2_and_others_still_print(
    files: list[Path], tmp_path: Path
) -> None:
    missing = tmp_path / "nope.car"
    res = _run("commp", str(missing), str(files[1]))
    assert res.returncode == 2
    assert b"nope.car" in res.stderr
    assert str(files[1]).encode() in res.stdout


@pytest.mark.parametrize("bad", ["0", "-1", "x"])
def test_bad_threads_is_a_usage_error(files: list[Path], bad: str) -> None:
    res = _run("commp", "--threads", bad, str(files[1]))
    assert res.returncode == 2
    assert b"positive integer" in res.stderr
