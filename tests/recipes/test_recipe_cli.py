"""carmigrate recipe w3up-legacy | filecoin-backfill | filecoin-report."""

from __future__ import annotations

import io
import json

from recipes_data import car_link, fill, legacy_dataset

from carmigrate.cli import main
from carmigrate.storage import LocalStore


def _setup(tmp_path):
    ds = legacy_dataset()
    for name, objects in (
        ("a", ds.bucket_a),
        ("b", ds.bucket_b),
        ("d", ds.destination),
    ):
        fill(LocalStore(tmp_path / name, fsync=False), objects)
    listing = tmp_path / "uploads.jsonl"
    listing.write_text("\n".join(ds.listing) + "\n", encoding="utf-8")
    return ds, listing


def _w3up(tmp_path, listing, *extra: str) -> list[str]:
    return [
        "recipe",
        "w3up-legacy",
        str(listing),
        "--bucket",
        str(tmp_path / "a"),
        "--bucket",
        str(tmp_path / "b"),
        "--destination",
        str(tmp_path / "d"),
        "--work",
        str(tmp_path / "work"),
        *extra,
    ]


def test_w3up_legacy_dry_run_run_and_backfill(tmp_path, capsys, monkeypatch) -> None:
    """Dry run prints the plan; the run exits 1 with the failures; the backfill and
    the report take it from there and every proof holds."""
    ds, listing = _setup(tmp_path)

    assert main(_w3up(tmp_path, listing, "--dry-run")) == 0
    out = capsys.readouterr().out
    assert "# w3up-legacy (dry run)" in out
    assert "- round: 1" in out
    assert "- plan 0 from " in out
    assert not (tmp_path / "work").exists()

    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(ds.listing)))
    code = main(
        _w3up(tmp_path, "-", "--commp", "--json", "--tenant-items-per-second", "1000")
    )
    data = json.loads(capsys.readouterr().out)
    assert code == 1
    assert data["units"] == {"complete": 5, "failed": 3}
    assert len(data["failures"]) == 3
    assert (tmp_path / "work" / "records.jsonl").exists()

    queue = str(tmp_path / "aggregates.db")
    backfill = [
        "recipe",
        "filecoin-backfill",
        "--queue",
        queue,
        "--work",
        str(tmp_path / "bf"),
        "--w3up-work",
        str(tmp_path / "work"),
        "--deal-size",
        str(1 << 24),
        "--max-age",
        "0",
    ]
    assert main([*backfill, "--dry-run"]) == 0
    assert "- from_ledgers: 10" in capsys.readouterr().out
    assert main([*backfill, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    outputs = result["outputs"]
    assert outputs["offered"] == 10
    assert result["plans"] == []  # nothing scanned
    assert len(outputs["manifests"]) == len(outputs["aggregates"]) >= 1

    report = [
        "recipe",
        "filecoin-report",
        "--queue",
        queue,
        "--work",
        str(tmp_path / "bf"),
    ]
    assert main([*report, "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 10
    assert {e["proof_check"] for e in lines} == {"ok"}
    assert {e["status"] for e in lines} == {"aggregated"}
    assert main([*report, lines[0]["link"]]) == 0
    table = capsys.readouterr().out
    assert lines[0]["link"] in table
    assert "| ok |" in table
    unknown = str(car_link(b"no such CAR"))
    assert main([*report, unknown]) == 1
    assert "not in this backfill" in capsys.readouterr().err


def test_bad_input_exits_2(tmp_path, capsys) -> None:
    """A malformed listing is a usage error; nothing is planned."""
    _, _ = _setup(tmp_path)
    listing = tmp_path / "bad.jsonl"
    listing.write_text('{"cid": "not a cid", "shards": []}\n')

    assert main(_w3up(tmp_path, listing)) == 2
    assert "listing line 1" in capsys.readouterr().err
