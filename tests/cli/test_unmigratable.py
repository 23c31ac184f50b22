"""Nothing is left out of a plan silently (#13 item 1).

A source folder holds, next to its files, entries no store can offer as
objects: a symbolic link, a FIFO, a file whose name is not UTF-8, a reserved
``.carmigrate.*`` name. Each is planned ``UNMIGRATABLE`` with its reason;
``run``, ``status`` and ``report`` say the migration is not complete and
exit non-zero, so nobody retires the source on a "complete" report.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from carmigrate.cli import main
from carmigrate.migrate import (
    Action,
    ItemState,
    Ledger,
    execute,
    plan,
    report,
    resume,
    status,
    verify,
)
from carmigrate.storage import LocalStore, SupportsFullListing, Unmigratable

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="FIFOs and undecodable names are POSIX"
)

EXPECTED = {
    ".carmigrate.notes": "reserved name",
    "d/link": "symbolic link",
    "fifo": "FIFO",
    "caf\\xe9.txt": "not UTF-8",
}


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"hello")
    (src / "d" / "b.txt").write_bytes(b"world!")
    os.symlink("b.txt", src / "d" / "link")
    os.mkfifo(src / "fifo")
    (src / ".carmigrate.notes").write_bytes(b"mine")
    with open(os.fsencode(src) + b"/caf\xe9.txt", "wb") as f:
        f.write(b"1234")
    return src


def test_the_local_store_reports_what_its_listing_leaves_out(source: Path) -> None:
    store = LocalStore(source)
    assert isinstance(store, SupportsFullListing)
    assert [o.key for o in store.list()] == ["a.txt", "d/b.txt"]
    entries = list(store.list_all())
    objects = [e.key for e in entries if not isinstance(e, Unmigratable)]
    assert objects == ["a.txt", "d/b.txt"]  # as list() yields them, in key order
    left_out = {e.name: e for e in entries if isinstance(e, Unmigratable)}
    assert set(left_out) == set(EXPECTED)
    for name, words in EXPECTED.items():
        assert words in left_out[name].reason
    assert left_out["caf\\xe9.txt"].size == 4
    assert left_out[".carmigrate.notes"].size == 4
    names = [getattr(e, "key", getattr(e, "name", None)) for e in store.list_all("d/")]
    assert names == ["d/b.txt", "d/link"]


def test_unmigratable_entries_are_planned_and_keep_the_migration_open(
    source: Path, tmp_path: Path
) -> None:
    src, dst = LocalStore(source), LocalStore(tmp_path / "dst", create=True)
    made = plan(src, dst, path=tmp_path / "plan.jsonl")
    items = {i.source_key: i for i in made.items()}
    assert items["a.txt"].action is Action.COPY
    for name, words in EXPECTED.items():
        assert items[name].action is Action.UNMIGRATABLE
        assert words in (items[name].reason or "")
    assert made.summary().unmigratable == 4
    assert "4 source entries cannot be migrated" in made.summary().to_markdown()

    with Ledger(tmp_path / "ledger.db") as ledger:
        result = execute(made, ledger, source=src, destination=dst)
        assert result.complete  # the run did all it could ...
        assert result.counts[ItemState.UNMIGRATABLE] == 4  # ... the migration is open
        assert result.failures == 0
        # never run, never retried, never verified, never rolled back
        again = resume(ledger, source=src, destination=dst)
        assert again.items == 0
        assert verify(made, ledger, destination=dst).checked == 2
        rep = report(ledger)
        st = status(ledger)
    assert not rep.complete
    assert rep.unmigratable_count == 4
    assert {e.key: e.reason for e in rep.unmigratable}.keys() == EXPECTED.keys()
    text = rep.to_markdown()
    assert "not migratable (still only at the source): 4" in text
    assert "not complete while any item is 4 unmigratable" in text
    assert "symbolic link (never followed)" in text
    assert not st.complete
    assert st.open == "4 unmigratable"
    assert sorted(p.name for p in (tmp_path / "dst").rglob("*")) == [
        "a.txt",
        "b.txt",
        "d",
    ]


def test_the_cli_exits_non_zero_while_anything_is_unmigratable(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan_file = str(tmp_path / "plan.jsonl")
    ledger = str(tmp_path / "ledger.db")
    assert main(["plan", str(source), str(tmp_path / "dst"), "-o", plan_file]) == 0
    assert "4 source entries cannot be migrated" in capsys.readouterr().out

    assert main(["run", plan_file, "--ledger", ledger, "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "4 source entries cannot be migrated" in out

    assert main(["report", "--ledger", ledger]) == 1
    assert "complete: no" in capsys.readouterr().out

    assert main(["status", "--ledger", ledger]) == 0  # status only informs
    assert "complete: no: 4 unmigratable" in capsys.readouterr().out
    assert main(["status", "--ledger", ledger, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["complete"] is False
    assert data["by_state"]["unmigratable"] == 4
    assert {s["state"] for s in data["stages"]} == {"unmigratable", "unverifiable"}

    assert main(["report", "--ledger", ledger, "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["complete"] is False
    assert data["unmigratable_count"] == 4


def test_s3_style_keys_that_break_the_rules_are_planned_unmigratable() -> None:
    """A given listing (an inventory) with keys no store accepts: each accounted for."""
    from carmigrate.migrate import ListingEntry
    from carmigrate.storage import MemoryStore

    bad = ["a//b", "./x", "a/../b", "//lead", "t\tab", "dir/"]
    good = ["a/b", "z"]
    listing = sorted(ListingEntry(k, 3) for k in [*bad, *good])
    made = plan(
        "s3://bucket",
        MemoryStore("d"),
        source_listing=listing,
        destination_listing=[],
    )
    actions = {i.source_key: i.action for i in made.items()}
    assert actions == {
        **dict.fromkeys(bad, Action.UNMIGRATABLE),
        **dict.fromkeys(good, Action.COPY),
    }
