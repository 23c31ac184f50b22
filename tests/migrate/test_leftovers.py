"""What cleanup could not remove is reported, never forgotten (#13 item 6).

A run killed mid-copy leaves its writers' temporary files; ``resume`` (and
``verify``) remove those of the plan's keys. Whatever stays (here, a folder
under a temporary name, which cleanup never deletes) is recorded in the
ledger, shown by ``status``, tried again by the next cleanup, and cleared
once it is gone.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carmigrate.cli import main
from carmigrate.migrate import ItemState, Ledger, plan, resume, status, verify
from carmigrate.storage import LocalStore
from carmigrate.storage._local import _temp_prefix


def test_leftovers_of_a_crash_are_reported_until_they_are_gone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = LocalStore(tmp_path / "src", create=True)
    dst = LocalStore(tmp_path / "dst", create=True)
    for i in range(3):
        src.write(f"d/f{i}.bin", bytes([i]) * 1000)
    made = plan(src, dst, path=tmp_path / "plan.jsonl")
    ledger_path = tmp_path / "ledger.db"
    with Ledger(ledger_path) as ledger:
        ledger.attach(made)
        # a run died while writing d/f1.bin: its item is COPYING, its
        # writer's temporary file is there, and so is something cleanup
        # must not delete (a folder under the same temporary name)
        seq = next(r.seq for r in ledger.items() if r.item.key == "d/f1.bin")
        ledger.transition(seq, ItemState.COPYING, started=1.0)
    (tmp_path / "dst" / "d").mkdir(parents=True)
    stale = tmp_path / "dst" / "d" / f"{_temp_prefix('f1.bin')}dead"
    stale.write_bytes(b"partial")
    stuck = tmp_path / "dst" / "d" / f"{_temp_prefix('f1.bin')}stuck"
    stuck.mkdir()

    with Ledger(ledger_path) as ledger:
        resume(ledger, source=src, destination=dst)
        assert ledger.counts() == {
            ItemState.UNVERIFIABLE: 3
        }  # a folder vouches for nothing
        assert not stale.exists()  # removed
        left = ledger.leftovers()
        assert left == (
            (
                "temporary file",
                f"d/{stuck.name}",
                "has a temporary name but is not a regular file",
            ),
        )
        assert status(ledger).leftovers == left

    assert main(["status", "--ledger", str(ledger_path)]) == 0
    out = capsys.readouterr().out
    assert "1 left at the destination that cleanup could not remove" in out
    assert f"temporary file d/{stuck.name}" in out
    assert main(["status", "--ledger", str(ledger_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["leftovers"] == [
        {
            "kind": "temporary file",
            "name": f"d/{stuck.name}",
            "why": "has a temporary name but is not a regular file",
        }
    ]

    # the item is verified now, but the next cleanup tries its key again
    with Ledger(ledger_path) as ledger:
        verify(made, ledger, destination=dst)
        assert len(ledger.leftovers()) == 1
    stuck.rmdir()
    with Ledger(ledger_path) as ledger:
        verify(made, ledger, destination=dst)
        assert ledger.leftovers() == ()
        assert ledger.leftover_keys("temporary file") == ()
    assert main(["status", "--ledger", str(ledger_path)]) == 0
    assert "cleanup could not remove" not in capsys.readouterr().out
