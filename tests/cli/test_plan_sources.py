"""A mistyped source is an error, never an empty plan; destinations are made by the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from carmigrate.cli import main
from carmigrate.errors import StorageError
from carmigrate.storage import is_local_url, open_store


def test_plan_of_a_missing_source_fails_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.bin").write_bytes(b"a")
    code = main(
        [
            "plan",
            str(tmp_path / "srcc"),
            str(tmp_path / "dst"),
            "-o",
            str(tmp_path / "p.jsonl"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "srcc" in err
    assert not (tmp_path / "srcc").exists()
    assert not (tmp_path / "dst").exists()
    assert not (tmp_path / "p.jsonl").exists()


def test_a_missing_destination_is_planned_as_empty_and_made_by_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.bin").write_bytes(b"a")
    plan_file = str(tmp_path / "p.jsonl")
    assert (
        main(["plan", str(tmp_path / "src"), str(tmp_path / "dst"), "-o", plan_file])
        == 0
    )
    assert not (tmp_path / "dst").exists()  # plan writes nothing there
    assert main(["run", plan_file, "--ledger", str(tmp_path / "l.db")]) == 0
    capsys.readouterr()
    assert (tmp_path / "dst" / "a.bin").read_bytes() == b"a"


def test_open_store_does_not_create_local_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StorageError, match="foo:bar"):
        open_store("foo:bar")
    assert not (tmp_path / "foo:bar").exists()
    assert open_store("made", create=True).url.endswith("/made")
    assert all(is_local_url(u) for u in ("x/y", "file:///x", tmp_path))
    assert not any(is_local_url(u) for u in ("s3://b/p", "memory://m"))


def test_messages_name_what_the_user_gave(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    car = (
        Path(__file__).resolve().parents[1]
        / "fixtures/go-car/v2/testdata/sample-v1.car"
    )
    code = main(["car", "index", str(car), "-o", str(tmp_path / "nope" / "x.car")])
    err = capsys.readouterr().err
    assert code == 2
    assert "x.car" in err
    assert ".tmp" not in err
    assert "is not a folder" in err
    code = main(["status", "--ledger", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "is a folder, not a ledger file" in err
    assert "disk I/O" not in err


def test_no_tracebacks_for_damaged_ledgers_and_deep_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"not sqlite at all, just bytes")
    for cmd in ("status", "report"):
        code = main([cmd, "--ledger", str(bad)])
        err = capsys.readouterr().err
        assert code == 2
        assert "is not a usable ledger" in err
        assert "Traceback" not in err
    import io
    import sys

    deep = "[" * 100_000 + "]" * 100_000 + "\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(deep))
    code = main(["aggregate", "build", "--deal-size", str(32 << 30)])
    err = capsys.readouterr().err
    assert code == 2
    assert "nested too deeply" in err
    plan_file = tmp_path / "p.jsonl"
    plan_file.write_text(deep)
    code = main(["run", str(plan_file), "--ledger", str(tmp_path / "l.db")])
    err = capsys.readouterr().err
    assert code == 2
    assert "nested too deeply" in err


def test_ctrl_c_is_one_line_and_exit_130(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import carmigrate.cli._commp as commp_cli

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(commp_cli, "commp", interrupted)
    f = tmp_path / "payload.bin"
    f.write_bytes(b"x" * 200)
    code = main(["commp", str(f)])
    err = capsys.readouterr().err
    assert code == 130
    assert err.strip() == "carmigrate commp: interrupted"
