"""Ledger schema versions: older ledgers are upgraded in place and resumable."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from migrate_helpers import contents, corrupt, make_car

from carmigrate.errors import PlanError
from carmigrate.migrate import ItemState, Ledger, execute, load_plan, resume
from carmigrate.migrate._ledger import SCHEMA_VERSION
from carmigrate.storage import MemoryStore

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ledgers"
V1_PLAN_ID = "bafyreidedb6tgzspwvuhgyaskzjg3krdybdseeiqbmwszz3tsyrlvir5pe"


def _fixture_stores() -> tuple[MemoryStore, MemoryStore]:
    """The stores the v1 ledger was written against, rebuilt from the same bytes.

    The destination holds what the first run wrote: the one verified CAR.
    """
    src = MemoryStore("ledger-fixture-src")
    dst = MemoryStore("ledger-fixture-dst")
    good = make_car(4, seed=b"a")
    src.write("a/good.car", good)
    src.write("b/bad.car", corrupt(make_car(4, seed=b"b")))
    src.write("c/later.bin", b"later " * 100)
    dst.write("a/good.car", good)
    return src, dst


def _copy_v1(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.db"
    shutil.copyfile(FIXTURES / "v1.db", path)
    return path


def _schema(path: Path) -> tuple[str, list[str]]:
    db = sqlite3.connect(path)
    try:
        version = db.execute(
            "SELECT value FROM meta WHERE key = 'schema_version'"
        ).fetchone()[0]
        columns = [r[1] for r in db.execute("PRAGMA table_info(items)")]
    finally:
        db.close()
    return version, columns


def test_v1_ledger_is_upgraded_in_place_after_a_backup(tmp_path: Path) -> None:
    path = _copy_v1(tmp_path)
    before = path.read_bytes()

    with Ledger(path) as ledger:
        backup = ledger.backup_path
        records = {r.item.key: r for r in ledger.items()}
        assert ledger.plan_id == V1_PLAN_ID

    # the backup is the file as it was, byte for byte
    assert backup == f"{path}.schema1.bak"
    assert _schema(Path(backup)) == _schema(FIXTURES / "v1.db")
    assert sqlite3.connect(backup).execute("PRAGMA integrity_check").fetchone() == (
        "ok",
    )
    version, columns = _schema(path)
    assert version == str(SCHEMA_VERSION)
    assert {"digests", "plan_digests"} <= set(columns)
    assert not {"md5", "sha256", "plan_md5", "plan_sha256"} & set(columns)
    assert path.read_bytes() != before

    good, bad, later = (
        records["a/good.car"],
        records["b/bad.car"],
        records["c/later.bin"],
    )
    assert good.state is ItemState.VERIFIED
    assert set(good.digests) == {"md5", "sha256"}
    assert (
        good.sha256
        == "6b63dbab64e73a27b367fcd3348a602fdfc0ffc793cba6a3d38bda4d4655317d"
    )
    assert good.item.digests == {
        "md5": "fbb7dcd3a137587bc3f21146889f6d43",
        "sha256": good.sha256,
    }
    assert bad.state is ItemState.FAILED
    assert "CAR check failed" in (bad.reason or "")
    assert bad.transient is False
    assert later.state is ItemState.PENDING
    assert later.item.digests["sha256"] == (
        "6040c8dc7267892a23fdee7d9548955e61ca1ccca0d93eff9d87c0fcf1b6ba72"
    )


def test_upgraded_v1_ledger_resumes_to_the_end(tmp_path: Path) -> None:
    path = _copy_v1(tmp_path)
    src, dst = _fixture_stores()

    with Ledger(path) as ledger:
        result = resume(ledger, source=src, destination=dst)
        states = {r.item.key: r.state for r in ledger.items()}
        later = ledger.find("c/later.bin")

    assert result.stop_reason == "done"
    assert states == {
        "a/good.car": ItemState.VERIFIED,
        "b/bad.car": ItemState.FAILED,  # permanent: resume leaves it
        "c/later.bin": ItemState.VERIFIED,
    }
    assert later is not None
    assert "sha256:source" in later.checks
    assert contents(dst) == {
        "a/good.car": make_car(4, seed=b"a"),
        "c/later.bin": b"later " * 100,
    }


def test_v1_plan_file_loads_with_its_id_and_runs_on_the_upgraded_ledger(
    tmp_path: Path,
) -> None:
    plan = load_plan(FIXTURES / "v1-plan.jsonl")
    assert plan.id == V1_PLAN_ID
    assert plan.header.format_version == 1
    items = {i.key: i for i in plan.items()}
    assert items["c/later.bin"].digests == {
        "md5": "1b9409752f861704ba1f3ca43d343506",
        "sha256": "6040c8dc7267892a23fdee7d9548955e61ca1ccca0d93eff9d87c0fcf1b6ba72",
    }

    src, dst = _fixture_stores()
    with Ledger(_copy_v1(tmp_path)) as ledger:
        # the same plan: attach is accepted, and the run carries on
        execute(plan, ledger, source=src, destination=dst)
        assert ledger.find("c/later.bin").state is ItemState.VERIFIED  # type: ignore[union-attr]

    # in memory, its lines are still the file's (the header's digest holds)
    assert list(load_plan(FIXTURES / "v1-plan.jsonl", in_memory=True).lines()) == list(
        plan.lines()
    )

    # a fresh ledger attaches the v1 plan file's lines as digests
    src, dst = _fixture_stores()
    dst.delete("a/good.car")
    with Ledger(tmp_path / "fresh.db") as fresh:
        execute(plan, fresh, source=src, destination=dst)
        rec = fresh.find("a/good.car")
        assert rec is not None
        assert rec.item.digests == items["a/good.car"].digests
        assert rec.state is ItemState.VERIFIED


def test_readonly_open_reads_an_upgraded_copy_and_leaves_the_file(
    tmp_path: Path,
) -> None:
    path = _copy_v1(tmp_path)
    before = path.read_bytes()

    with Ledger(path, readonly=True) as ledger:
        states = [r.state for r in ledger.items()]
        assert ledger.backup_path is None
        with pytest.raises(PlanError, match="read-only"):
            ledger.transition(2, ItemState.COPYING)

    assert states == [ItemState.VERIFIED, ItemState.FAILED, ItemState.PENDING]
    assert path.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if ".bak" in p.name]


def test_newer_ledger_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    Ledger(path).close()
    db = sqlite3.connect(path)
    db.execute(
        "UPDATE meta SET value = ? WHERE key = 'schema_version'",
        (str(SCHEMA_VERSION + 1),),
    )
    db.commit()
    db.close()

    for readonly in (False, True):
        with pytest.raises(PlanError, match=rf"schema {SCHEMA_VERSION + 1}, newer"):
            Ledger(path, readonly=readonly)


def test_failed_upgrade_leaves_the_ledger_as_it_was(tmp_path: Path) -> None:
    path = _copy_v1(tmp_path)
    db = sqlite3.connect(path)
    # a column the upgrade wants to add is there already: the step fails
    db.execute("ALTER TABLE items ADD COLUMN digests TEXT")
    db.commit()
    db.close()
    before = _schema(path)

    with pytest.raises(PlanError, match="upgrading schema 1 to 2 failed"):
        Ledger(path)

    assert _schema(path) == before


def test_ledger_table_is_derived_from_the_declarations(tmp_path: Path) -> None:
    """Every declared field has its column, and nothing else is in the table."""
    import attrs

    from carmigrate.migrate import ItemOutcome, ItemRecord, PlanItem

    with Ledger(tmp_path / "l.db"):
        pass
    _, columns = _schema(tmp_path / "l.db")
    renamed = {"digests": "plan_digests", "etag": "plan_etag", "reason": "plan_reason"}
    plan_cols = {renamed.get(f.name, f.name) for f in attrs.fields(PlanItem)}
    outcome_cols = {
        "error_offset" if f.name == "offset" else f.name
        for f in attrs.fields(ItemOutcome)
    }
    own = {f.name for f in attrs.fields(ItemRecord)} - outcome_cols - {"item", "offset"}
    assert set(columns) == plan_cols | outcome_cols | own


def test_the_run_lock_holds_through_symlinks_and_hard_links_are_refused(
    tmp_path: Path,
) -> None:
    """The lock is on the database file itself, opened by its resolved path: a
    symbolic link reaches the same lock; a second name (hard link) is refused."""
    import os

    path = tmp_path / "ledger.db"
    with Ledger(path) as first:
        first.start_run("execute")
        os.symlink(path, tmp_path / "via-symlink.db")
        for other in ("via-symlink.db", "ledger.db"):
            with Ledger(tmp_path / other) as second:
                assert second.path == str(path)
                assert second.is_running()
                with pytest.raises(PlanError, match="another run is using ledger"):
                    second.start_run("resume")
        os.link(path, tmp_path / "via-hardlink.db")
        with pytest.raises(PlanError, match="has 2 hard links"):
            Ledger(tmp_path / "via-hardlink.db")
        with pytest.raises(PlanError, match="has 2 hard links"):
            Ledger(path)
        first.finish_run(1, stop_reason="done")
    assert not (tmp_path / "ledger.db.lock").exists()


def test_another_applications_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    db.execute("INSERT INTO customers (name) VALUES ('ada')")
    db.commit()
    db.close()
    before = path.read_bytes()

    with pytest.raises(PlanError, match=r"another application \(tables: customers\)"):
        Ledger(path)
    assert path.read_bytes() == before

    other = tmp_path / "other.db"
    db = sqlite3.connect(other)
    db.execute("PRAGMA application_id = 1234")
    db.commit()
    db.close()
    with pytest.raises(PlanError, match="application id 0x4d2"):
        Ledger(other)


def test_new_ledgers_carry_carmigrates_application_id(tmp_path: Path) -> None:
    from carmigrate.migrate._ledger import APPLICATION_ID

    Ledger(tmp_path / "l.db").close()
    assert (
        sqlite3.connect(tmp_path / "l.db")
        .execute("PRAGMA application_id")
        .fetchone()[0]
        == APPLICATION_ID
    )
