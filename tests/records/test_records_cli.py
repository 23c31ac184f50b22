"""``carmigrate records plan | show | id-map`` on the synthetic deployments (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import schema

from carmigrate.cli import main
from carmigrate.records import load_record_plan

RESOLVED = schema.EXECUTABLE


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_plan_show_and_id_map(
    pair: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(schema.MAPPING_TOML + RESOLVED)
    plan_file = tmp_path / "records.jsonl"

    code, out, err = run(
        capsys,
        "records",
        "plan",
        *pair,
        "--mapping",
        str(mapping),
        "-o",
        str(plan_file),
    )
    assert code == 0, err
    assert f"Record plan written to {plan_file}." in out
    plan = load_record_plan(plan_file)
    assert plan.ok

    code, out, _ = run(capsys, "records", "show", str(plan_file), "--json")
    assert code == 0
    shown = json.loads(out)
    assert shown["plan_id"] == plan.id
    assert shown["conflicts"] == 0

    code, out, _ = run(capsys, "records", "id-map", str(plan_file))
    assert code == 0
    lines = [json.loads(x) for x in out.splitlines()]
    assert len(lines) == len(plan.id_map) > 0
    assert lines[0] == plan.id_map[0].to_dict()

    out_csv = tmp_path / "ids.csv"
    code, out, _ = run(
        capsys,
        "records",
        "id-map",
        str(plan_file),
        "--format",
        "csv",
        "-o",
        str(out_csv),
        "--json",
    )
    assert code == 0
    assert json.loads(out) == {
        "entries": len(plan.id_map),
        "format": "csv",
        "path": str(out_csv),
    }
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    assert len(rows) == len(plan.id_map)
    first = plan.id_map[0]
    assert rows[0] == {
        "table": first.table,
        "column": first.column,
        "old": str(first.old),
        "new": str(first.new),
        "action": first.action.value,
    }


def test_conflicts_exit_1_and_bad_input_exits_2(
    pair: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Findings whose policy is 'fail' leave conflicts: the plan is written, exit 1."""
    plan_file = tmp_path / "records.jsonl"
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(schema.MAPPING_TOML)  # no policy for the membership clash
    code, out, _ = run(
        capsys,
        "records",
        "plan",
        *pair,
        "--mapping",
        str(mapping),
        "-o",
        str(plan_file),
    )
    assert code == 1
    assert "rows are in conflict" in out
    assert not load_record_plan(plan_file).ok

    bad = tmp_path / "bad.toml"
    bad.write_text("version = 1\n[[contexts]]\nname = 3\n")
    code, out, err = run(
        capsys,
        "records",
        "plan",
        *pair,
        "--mapping",
        str(bad),
        "-o",
        str(tmp_path / "x.jsonl"),
        "--json",
    )
    assert code == 2
    error = json.loads(out)["error"]
    assert error["type"] == "MappingError"
    assert error["command"] == "records plan"
    assert "bad.toml" in error["message"]
    assert err.startswith("carmigrate records plan: error:")
    assert not (tmp_path / "x.jsonl").exists()


def test_run_status_and_rollback_through_the_cli(
    pair: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """records run executes every stage; run again skips them; status lists the
    checkpoints; rollback of the last stage deletes its rows, refusing (exit 1)
    when one changed since, unless --force."""
    import sqlalchemy as sa

    mapping = tmp_path / "mapping.toml"
    mapping.write_text(schema.MAPPING_TOML + RESOLVED)
    plan_file, ledger = tmp_path / "records.jsonl", str(tmp_path / "ledger.db")
    src, dst = pair
    assert run(capsys, "records", "plan", src, dst, "--mapping", str(mapping), "-o",
               str(plan_file))[0] == 0  # fmt: skip
    plan = load_record_plan(plan_file)
    stages = [s.name for s in plan.stages]

    code, out, err = run(
        capsys, "records", "run", str(plan_file), "--ledger", ledger,
        "--source", src, "--destination", dst, "--json",
    )  # fmt: skip
    assert code == 0, err
    done = json.loads(out)
    assert [c["stage"] for c in done["executed"]] == stages
    assert {c["state"] for c in done["executed"]} == {"committed"}

    code, out, _ = run(
        capsys, "records", "run", str(plan_file), "--ledger", ledger,
        "--source", src, "--destination", dst,
    )  # fmt: skip
    assert code == 0
    assert out.count("committed before (skipped)") == len(stages)

    code, out, _ = run(capsys, "records", "status", "--ledger", ledger, "--json")
    assert code == 0
    assert [c["stage"] for c in json.loads(out)["stages"]] == stages

    last = stages[-1]
    inserted = [
        r for r in plan.rows if r.action.value == "insert" and r.table == "tags"
    ]
    assert inserted, "the last stage inserts tags"
    engine = sa.create_engine(dst)
    try:
        with engine.begin() as conn:  # someone changes a row the stage inserted
            conn.execute(sa.text("UPDATE tags SET label = 'changed since'"))
    finally:
        engine.dispose()
    code, out, _ = run(
        capsys, "records", "verify", "--ledger", ledger, "--destination", dst
    )
    assert code == 1  # the changed tags are found
    assert "changed since stage" in out
    code, out, err = run(
        capsys, "records", "rollback", "--ledger", ledger, "--stage", last,
        "--destination", dst, "--json",
    )  # fmt: skip
    assert code == 1
    assert json.loads(out)["error"]["type"] == "RollbackRefused"
    code, out, err = run(
        capsys, "records", "rollback", "--ledger", ledger, "--stage", last,
        "--destination", dst, "--force",
    )  # fmt: skip
    assert code == 0, err
    assert f"stage {last} rolled back" in out
    code, out, _ = run(capsys, "records", "status", "--ledger", ledger)
    assert f"stage {last}: rolled-back" in out
