"""``carmigrate aggregate build`` and ``verify-proof`` against the data-segment vectors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from carmigrate.cli import main
from carmigrate.commp import PieceInfo

VECTORS = Path(__file__).parent.parent / "vectors" / "commp" / "aggregates.jsonl"
CASES = [json.loads(line) for line in VECTORS.read_text().splitlines() if line]


def to_line(spec: object) -> str:
    if isinstance(spec, str):
        return json.dumps({"piece_cid": spec})
    assert isinstance(spec, dict)
    return json.dumps({"piece_cid": spec["link"], "padded_size": spec["size"]})


def run(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stdin: str,
    *argv: str,
) -> tuple[int, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(list(argv))
    return code, capsys.readouterr().out


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["name"])
def test_build_matches_vectors(
    case: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the default in-order policy the CLI reproduces every vector, failures included."""
    stdin = "\n".join(to_line(p) for p in case["input"]["pieces"])
    deal = str(case["input"]["dealSize"])

    code, out = run(
        monkeypatch, capsys, stdin, "aggregate", "build", "--deal-size", deal, "--json"
    )

    exp = case["expected"]
    got = json.loads(out)
    if "error" in exp:
        assert code == 2
        assert got["error"]["failed_at"] == exp["error"]["failedAt"]
        assert got["error"]["type"] == "AggregateFullError"
        return
    assert code == 0
    assert got["aggregate_cid"] == exp["aggregate"]["pieceCidV1"]
    assert got["aggregate_cid_v2"] == exp["aggregate"]["pieceCidV2"]
    for mine, theirs in zip(got["pieces"], exp["pieces"], strict=True):
        assert mine["offset"] == theirs["offset"]
        assert mine["padded_size"] == theirs["size"]
        assert mine["piece_cid"] == theirs["pieceCidV1"]
        assert mine["proof"]["tree"]["path"] == theirs["proof"]["tree"]["path"]
        assert mine["proof"]["index"]["path"] == theirs["proof"]["index"]["path"]


def test_verify_proof_accepts_and_rejects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A proof from 'build' verifies for its piece and fails for another piece."""
    case = next(c for c in CASES if c["name"] == "mixed-as-given")
    stdin = "\n".join(to_line(p) for p in case["input"]["pieces"])
    code, out = run(
        monkeypatch,
        capsys,
        stdin,
        "aggregate",
        "build",
        "--deal-size",
        "4194304",
        "--json",
    )
    assert code == 0
    built = json.loads(out)
    first, second = built["pieces"][0], built["pieces"][1]
    proof = tmp_path / "proof.json"
    proof.write_text(json.dumps(first))

    ok, _ = run(
        monkeypatch,
        capsys,
        "",
        "aggregate",
        "verify-proof",
        "--aggregate",
        built["aggregate_cid_v2"],
        "--piece",
        first["piece_cid"],
        "--padded-size",
        str(first["padded_size"]),
        "--proof",
        str(proof),
    )
    bad, out = run(
        monkeypatch,
        capsys,
        "",
        "aggregate",
        "verify-proof",
        "--aggregate",
        built["aggregate_cid"],
        "--deal-size",
        "4194304",
        "--piece",
        second["piece_cid"],
        "--padded-size",
        str(second["padded_size"]),
        "--proof",
        str(proof),
        "--json",
    )

    assert ok == 0
    assert bad == 1
    assert json.loads(out)["ok"] is False


def test_policy_largest_first_fits_what_in_order_cannot(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--policy largest_first places the set that fails in the given order."""
    case = next(c for c in CASES if c["name"] == "small-then-large-fails")
    stdin = "\n".join(to_line(p) for p in case["input"]["pieces"])

    code, out = run(
        monkeypatch,
        capsys,
        stdin,
        "aggregate",
        "build",
        "--deal-size",
        "1048576",
        "--policy",
        "largest_first",
        "--json",
    )

    assert code == 0
    got = json.loads(out)
    assert [p["input"] for p in got["pieces"]] == [1, 0]
    first = PieceInfo.from_cid(got["pieces"][0]["piece_cid"], padded_size=524288)
    assert first.padded_size == 524288


def test_malformed_input_is_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Lines that are not piece objects give exit code 2 and a JSON error."""
    code, out = run(
        monkeypatch,
        capsys,
        '{"cid": "x"}\n',
        "aggregate",
        "build",
        "--deal-size",
        "1048576",
    )

    assert code == 2
    assert out == ""  # without --json, stdout stays empty; the error is on stderr
