"""``--json`` is consistent (#13 item 11).

Every command has ``--json``; with it, an error is one JSON object on stdout
(``{"error": {"message", "type", "exit_code", ...}}``) as well as one line on
stderr, and the states of items are spelled the same by ``run``,
``status`` and ``report``.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from carmigrate.cli import main
from carmigrate.cli._main import build_parser


def _leaf_commands() -> list[tuple[str, argparse.ArgumentParser]]:
    found = []

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs and prefix:
            found.append((prefix, parser))
        for action in subs:
            for name, child in action.choices.items():
                walk(child, f"{prefix} {name}".strip())

    walk(build_parser(), "")
    return found


def test_every_command_has_json() -> None:
    missing = [
        name
        for name, parser in _leaf_commands()
        if not any("--json" in a.option_strings for a in parser._actions)
    ]
    assert missing == []


def _run(
    capsys: pytest.CaptureFixture[str], *argv: str, stdin: str | None = None
) -> tuple[int, str, str]:
    if stdin is not None:
        pytest.MonkeyPatch().setattr("sys.stdin", io.StringIO(stdin))
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse's usage errors
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "kind", "words"),
    [
        (["car", "roots", "/nonexistent.car"], "FileNotFoundError", "No such file"),
        (
            ["car", "index", "/dev/null", "-o", "/nonexistent/dir/x.car"],
            "NotADirectoryError",
            "is not a folder",
        ),
        (["commp", "/nonexistent.bin"], "FileNotFoundError", "/nonexistent.bin"),
        (["status", "--ledger", "/nonexistent.db"], "PlanError", "no ledger"),
        (["report", "--ledger", "/nonexistent.db"], "PlanError", "no ledger"),
        (["plan", "/nonexistent-source", "/tmp/x", "-o", "p.jsonl"], None, "exist"),
        (["run", "/nonexistent-plan.jsonl", "--ledger", "l.db"], None, "nonexistent"),
        (["recipe", "w3up-legacy"], "usage", "required"),
        (["plan"], "usage", "required"),
    ],
)
def test_an_error_with_json_is_a_json_object_and_one_line(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    kind: str | None,
    words: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(capsys, *argv, "--json")
    assert code == 2
    lines = out.splitlines()
    assert len(lines) == 1, out
    error = json.loads(lines[0])["error"]
    assert error["exit_code"] == 2
    if kind is not None:
        assert error["type"] == kind
    assert words in error["message"]
    stderr_errors = [x for x in err.splitlines() if ": error: " in x]
    assert len(stderr_errors) == 1, err
    assert error["message"] in stderr_errors[0]
    assert "Traceback" not in err

    # the same error without --json: nothing on stdout, the same line on stderr
    code, out, err2 = _run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert [x for x in err2.splitlines() if ": error: " in x] == stderr_errors


def test_aggregate_build_failure_names_the_piece(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from carmigrate.commp import commp

    info = commp(bytes(600_000))  # a 1 MiB piece: no room for the index in 1 MiB
    piece = {"piece_cid": str(info.cid_v1), "padded_size": info.padded_size}
    code, out, _ = _run(
        capsys,
        "aggregate",
        "build",
        "--deal-size",
        str(1 << 20),
        "--json",
        stdin=json.dumps(piece) + "\n",
    )
    assert code == 2
    error = json.loads(out)["error"]
    assert error["failed_at"] == 0
    assert error["command"] == "aggregate build"


def test_states_are_spelled_the_same_by_run_status_and_report(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"f{i}").write_bytes(b"x" * i)
    plan_file, ledger = str(tmp_path / "p.jsonl"), str(tmp_path / "l.db")
    assert main(["plan", str(src), str(tmp_path / "dst"), "-o", plan_file]) == 0
    capsys.readouterr()
    assert main(["run", plan_file, "--ledger", ledger, "--json", "--no-progress"]) == 0
    run_states = json.loads(capsys.readouterr().out.splitlines()[-1])["by_state"]
    assert main(["status", "--ledger", ledger, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert main(["report", "--ledger", ledger, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    report_states = {state: n for state, n, _ in report["by_state"]}
    assert run_states == status["by_state"] == report_states == {"unverifiable": 3}
    assert {s["state"] for s in status["stages"]} == {"unverifiable"}
