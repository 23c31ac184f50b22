"""The ``carmigrate car`` commands, through main(argv) and as a subprocess."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from carmigrate.car import Block, CarReader, CarWriter
from carmigrate.cid import CID, Multihash
from carmigrate.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TESTDATA = FIXTURES / "go-car" / "v2" / "testdata"
SPEC = FIXTURES / "ipld-spec"
SAMPLE_V1 = TESTDATA / "sample-v1.car"
WRAPPED = TESTDATA / "sample-wrapped-v2.car"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["car", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _write(path: Path, items: list[Block], **options: object) -> Path:
    with CarWriter.open(path, [items[0].cid], **options) as w:  # type: ignore[arg-type]
        for b in items:
            w.write(b.cid, b.data)
    return path


def test_roots(capsys: pytest.CaptureFixture[str]) -> None:
    """roots prints one root CID per line."""
    code, out, _ = run(capsys, "roots", str(SPEC / "carv1-basic.car"))

    assert code == 0
    assert out.splitlines() == [
        "bafyreihyrpefhacm6kkp4ql6j6udakdit7g3dmkzfriqfykhjw6cad5lrm",
        "bafyreidj5idub6mapiupjwjsyyxhyhedxycv4vihfsicm2vt46o7morwlm",
    ]


@pytest.mark.parametrize("name", ["carv1-basic", "carv2-basic"])
def test_ls_json_matches_the_spec_fixture(
    capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """ls --json gives each block's CID and data offset/length, as the spec's JSON does."""
    expected = [
        {"cid": b["cid"]["/"], "offset": b["blockOffset"], "length": b["blockLength"]}
        for b in json.loads((SPEC / f"{name}.json").read_text())["blocks"]
    ]

    code, out, _ = run(capsys, "ls", "--json", str(SPEC / f"{name}.car"))

    assert code == 0
    assert [json.loads(line) for line in out.splitlines()] == expected


def test_ls_table(capsys: pytest.CaptureFixture[str]) -> None:
    """ls without --json prints a header line and one row per block."""
    code, out, _ = run(capsys, "ls", str(SPEC / "carv1-basic.car"))
    lines = out.splitlines()

    assert code == 0
    assert lines[0].split() == ["OFFSET", "LENGTH", "CID"]
    assert lines[1].split() == [
        "137",
        "55",
        "bafyreihyrpefhacm6kkp4ql6j6udakdit7g3dmkzfriqfykhjw6cad5lrm",
    ]
    assert len(lines) == 9


def test_verify_ok(capsys: pytest.CaptureFixture[str]) -> None:
    """verify exits 0 on a good CAR and says what it checked."""
    code, out, _ = run(capsys, "verify", str(WRAPPED))
    json_code, json_out, _ = run(capsys, "verify", "--json", str(WRAPPED))
    doc = json.loads(json_out)

    assert code == 0
    assert out.startswith("ok: 1049 blocks")
    assert "index checked" in out
    assert json_code == 0
    assert doc["ok"] is True
    assert (doc["blocks"], doc["verified"], doc["unverifiable"], doc["mismatches"]) == (
        1049,
        1049,
        0,
        [],
    )
    assert doc["index_checked"] is True
    assert "error" not in doc


def test_verify_reports_the_first_bad_offset(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """verify exits 1 and names the offset of the first block that does not match."""
    data = bytearray(SAMPLE_V1.read_bytes())
    loc = CarReader(bytes(data)).locations[10]
    data[loc.offset + 1] ^= 0xFF
    bad = tmp_path / "bad.car"
    bad.write_bytes(bytes(data))

    code, out, _ = run(capsys, "verify", str(bad))
    json_code, json_out, _ = run(capsys, "verify", "--json", str(bad))
    doc = json.loads(json_out)

    assert code == 1
    assert out.startswith(
        f"FAILED at offset {loc.offset}: block data does not match CID {loc.cid}"
    )
    assert json_code == 1
    assert doc["ok"] is False
    assert doc["offset"] == loc.offset
    assert doc["blocks"] == 11
    assert doc["error"] == f"block data does not match CID {loc.cid}"


def test_verify_all_lists_every_mismatch(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--all keeps going and prints every mismatch."""
    data = bytearray(SAMPLE_V1.read_bytes())
    reader = CarReader(bytes(data))
    offsets = [reader.locations[i].offset for i in (10, 20, 30)]
    for o in offsets:
        data[o] ^= 1
    bad = tmp_path / "bad.car"
    bad.write_bytes(bytes(data))

    code, out, _ = run(capsys, "verify", "--all", str(bad))
    _, json_out, _ = run(capsys, "verify", "--all", "--json", str(bad))

    assert code == 1
    assert [m["offset"] for m in json.loads(json_out)["mismatches"]] == offsets
    assert out.count("mismatch at offset") == 2
    assert f"FAILED at offset {offsets[0]}" in out


@pytest.mark.parametrize(
    ("path", "offset"),
    [
        (TESTDATA / "sample-v1-tailing-corrupt-section.car", 479518),
        (TESTDATA / "sample-rootless-v42.car", 0),
        (
            FIXTURES
            / "go-car"
            / "cmd"
            / "car"
            / "testdata"
            / "inputs"
            / "badsectionlength.car",
            18,
        ),
    ],
    ids=lambda x: getattr(x, "name", str(x)),
)
def test_verify_malformed(
    capsys: pytest.CaptureFixture[str], path: Path, offset: int
) -> None:
    """A malformed CAR fails verify with exit 1 and the offset of the problem."""
    code, out, _ = run(capsys, "verify", "--json", str(path))
    doc = json.loads(out)

    assert code == 1
    assert doc["ok"] is False
    assert doc["offset"] == offset
    assert doc["error"]


def test_zero_length_option(capsys: pytest.CaptureFixture[str]) -> None:
    """--zero-length-section-as-eof accepts go-car's padded CAR; without it verify fails."""
    path = str(TESTDATA / "sample-v1-with-zero-len-section.car")

    assert run(capsys, "verify", path)[0] == 1
    assert run(capsys, "verify", "--zero-length-section-as-eof", path)[0] == 0


def test_verify_unverifiable_blocks(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Blocks with an unsupported hash fail verify unless --allow-unverifiable."""
    odd = Block(CID.create(1, "raw", Multihash(0x16, b"\x00" * 32)), b"x")
    path = _write(tmp_path / "odd.car", [Block.from_data(b"fine"), odd])

    code, out, _ = run(capsys, "verify", "--json", str(path))
    allowed, text, _ = run(capsys, "verify", "--allow-unverifiable", str(path))
    doc = json.loads(out)

    assert code == 1
    assert "sha3-256" in doc["error"]
    with CarReader.open(path) as reader:
        assert doc["offset"] == reader.locate(odd.cid).offset
    assert allowed == 0
    assert "1 unverifiable" in text


def test_limits_options(capsys: pytest.CaptureFixture[str]) -> None:
    """--max-section-size and --max-header-size set the limits."""
    code, out, _ = run(
        capsys, "verify", "--json", "--max-section-size", "100", str(SAMPLE_V1)
    )
    header_code, _, err = run(
        capsys, "roots", "--max-header-size", "10", str(SAMPLE_V1)
    )

    assert code == 1
    assert "exceeds the limit of 100 bytes" in json.loads(out)["error"]
    assert header_code == 2
    assert "header length" in err
    with pytest.raises(SystemExit):
        main(["car", "roots", "--max-section-size", "0", str(SAMPLE_V1)])


def test_inspect(capsys: pytest.CaptureFixture[str]) -> None:
    """inspect summarises version, roots, counts, sizes, codecs and the index."""
    code, out, _ = run(capsys, "inspect", str(WRAPPED))
    json_code, json_out, _ = run(capsys, "inspect", "--json", str(WRAPPED))
    doc = json.loads(json_out)

    assert code == json_code == 0
    assert "version: 2" in out
    assert "blocks: 1049 (1049 distinct CIDs)" in out
    assert "codecs: dag-cbor 1043, raw 6" in out
    assert "index: MultihashIndexSorted, 1043 entries, checked" in out
    assert doc["version"] == 2
    assert doc["codecs"] == {"dag-cbor": 1043, "raw": 6}
    assert doc["index"] == {
        "codec": "MultihashIndexSorted",
        "entries": 1043,
        "checked": True,
    }
    assert doc["v2"]["data_offset"] == 51
    assert doc["data_bytes"] == 438130


def test_inspect_v1_and_indexless(capsys: pytest.CaptureFixture[str]) -> None:
    """A CARv1 has no v2 block in JSON; an indexless CARv2 says 'index: none'."""
    _, out, _ = run(capsys, "inspect", "--json", str(SAMPLE_V1))
    _, text, _ = run(capsys, "inspect", str(TESTDATA / "sample-v2-indexless.car"))

    assert json.loads(out)["v2"] is None
    assert "index: none" in text


def test_index_writes_a_carv2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """index writes go-car's wrapped CARv2 byte for byte, and other codecs on request."""
    out_path = tmp_path / "wrapped.car"
    sorted_path = tmp_path / "sorted.car"

    code, out, _ = run(capsys, "index", str(SAMPLE_V1), "-o", str(out_path))
    run(
        capsys,
        "index",
        str(SAMPLE_V1),
        "-o",
        str(sorted_path),
        "--codec",
        "index-sorted",
        "--store-identity-cids",
    )

    assert code == 0
    assert out.startswith(f"wrote {out_path}: CARv2")
    assert out_path.read_bytes() == WRAPPED.read_bytes()
    with CarReader.open(sorted_path) as reader:
        assert reader.index is not None
        assert reader.index.codec_name == "IndexSorted"
        assert reader.header.v2 is not None
        assert reader.header.v2.characteristics.fully_indexed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sorted.car", "wrapped.car"]


def test_index_of_a_bad_car_leaves_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A failing index run exits 2 and leaves neither the output nor a temporary file."""
    out_path = tmp_path / "out.car"

    code, _, err = run(
        capsys,
        "index",
        str(TESTDATA / "sample-v1-tailing-corrupt-section.car"),
        "-o",
        str(out_path),
    )
    dash, _, dash_err = run(capsys, "index", str(SAMPLE_V1), "-o", "-")

    assert code == 2
    assert "479518" in err
    assert list(tmp_path.iterdir()) == []
    assert dash == 2
    assert "not -" in dash_err


def test_missing_file_and_malformed_car_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Unreadable input exits 2 with a one-line error."""
    code, _, err = run(capsys, "ls", str(tmp_path / "missing.car"))
    bad, _, bad_err = run(capsys, "inspect", str(TESTDATA / "sample-rootless-v42.car"))

    assert code == 2
    assert err.startswith("carmigrate car ls: error:")  # names the command
    assert err.count("\n") == 1
    assert bad == 2
    assert bad_err.startswith("carmigrate car inspect: error:")
    assert "unsupported CAR version 42" in bad_err


def test_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """FILE '-' reads standard input, for ls, verify and inspect (index included)."""
    data = WRAPPED.read_bytes()

    class Stdin:
        buffer = io.BufferedReader(io.BytesIO(data))  # type: ignore[arg-type]

    monkeypatch.setattr(sys, "stdin", Stdin)
    code, out, _ = run(capsys, "verify", "--json", "-")

    assert code == 0
    assert json.loads(out)["index_checked"] is True


def test_python_m_carmigrate(tmp_path: Path) -> None:
    """`python -m carmigrate car ...` runs the same command line in a new process."""
    proc = subprocess.run(
        [sys.executable, "-m", "carmigrate", "car", "verify", "--json", "-"],
        input=SAMPLE_V1.read_bytes(),
        capture_output=True,
        check=False,
    )
    ls = subprocess.run(
        [
            sys.executable,
            "-m",
            "carmigrate",
            "car",
            "ls",
            "--json",
            str(SPEC / "carv1-basic.car"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )

    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["blocks"] == 1049
    assert json.loads(ls.stdout.splitlines()[0])["offset"] == 137
