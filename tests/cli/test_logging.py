"""The library logs under carmigrate.*; the CLI's -v and -q choose what reaches stderr."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from carmigrate.cli import main
from carmigrate.migrate import Ledger, execute, plan
from carmigrate.storage import MemoryStore


def test_the_library_adds_no_handler_and_logs_runs(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    import carmigrate

    handlers = logging.getLogger("carmigrate").handlers
    assert all(
        isinstance(h, logging.NullHandler)
        or type(h).__module__.startswith("carmigrate.cli")
        for h in handlers
    )
    assert carmigrate.__version__
    src, dst = MemoryStore("log-s"), MemoryStore("log-d")
    src.write("a", b"1")
    with (
        caplog.at_level(logging.INFO, logger="carmigrate"),
        Ledger(tmp_path / "l.db") as led,
    ):
        execute(plan(src, dst), led, source=src, destination=dst)
    messages = [
        r.getMessage()
        for r in caplog.records
        if r.name == "carmigrate.migrate._executor"
    ]
    assert any("1 items" in m and "run 1" in m for m in messages)
    assert any(m.startswith("run 1 stopped (done)") for m in messages)


def test_verbose_and_quiet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_bytes(b"x")
    plan_file = str(tmp_path / "p.jsonl")
    assert (
        main(["plan", str(tmp_path / "src"), str(tmp_path / "dst"), "-o", plan_file])
        == 0
    )
    capsys.readouterr()
    assert main(["-v", "run", plan_file, "--ledger", str(tmp_path / "l.db")]) == 0
    err = capsys.readouterr().err
    assert "carmigrate: INFO: execute run 1" in err
    (tmp_path / "src" / "g").write_bytes(b"y")
    plan2 = str(tmp_path / "p2.jsonl")
    assert (
        main(["plan", str(tmp_path / "src"), str(tmp_path / "dst2"), "-o", plan2]) == 0
    )
    capsys.readouterr()
    assert main(["-q", "run", plan2, "--ledger", str(tmp_path / "l2.db")]) == 0
    assert "INFO" not in capsys.readouterr().err
