"""Executing record plans: stages, triggers, integrity checks, resume and rollback.

Every test taking ``pair`` runs on SQLite and on the private PostgreSQL cluster.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest
import schema
import sqlalchemy as sa
from records_helpers import PG_BIN, build

from carmigrate.errors import RecordsIntegrityError, RollbackRefused
from carmigrate.migrate import (
    MARKER_TABLE,
    Ledger,
    execute_records,
    record_checkpoints,
    rollback_records,
)
from carmigrate.records import (
    RecordMapping,
    RecordPlan,
    RowAction,
    load_record_plan,
    open_database,
    parse_mapping,
    plan_records,
    save_record_plan,
)
from pg_cluster import pg_dump_lines

EXECUTABLE = schema.EXECUTABLE


def mapping() -> RecordMapping:
    return parse_mapping(tomllib.loads(schema.MAPPING_TOML + EXECUTABLE))


def make_plan(pair: tuple[str, str]) -> RecordPlan:
    with open_database(pair[0]) as src, open_database(pair[1]) as dst:
        plan = plan_records(src, dst, mapping())
    assert plan.ok
    return plan


def dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows in key order (the marker table left out)."""
    engine = sa.create_engine(url)
    out = {}
    try:
        with engine.connect() as conn:
            for t in schema.metadata.sorted_tables:
                out[t.name] = [
                    tuple(r)
                    for r in conn.execute(sa.select(t).order_by(*t.primary_key))
                ]
    finally:
        engine.dispose()
    return out


def expected(
    plan: RecordPlan, src: str, dst_before: dict[str, list[Any]]
) -> dict[str, set[str]]:
    """The destination the plan describes: its rows before plus every planned insert, as digests."""
    from carmigrate.records import row_digest

    out: dict[str, set[str]] = {}
    with open_database(src) as s:
        for t in schema.metadata.sorted_tables:
            cols = [c.name for c in t.columns]
            rows = {
                row_digest(dict(zip(cols, r, strict=True))) for r in dst_before[t.name]
            }
            inserts = {r.key: r for r in plan.rows_of(t.name, RowAction.INSERT)}
            for srow in s.iter_rows(t.name, keys=list(inserts)):
                key = tuple(srow[c.name] for c in t.primary_key)
                rows.add(row_digest({**srow, **inserts[key].changes}))
            out[t.name] = rows
    return out


def digests(url: str) -> dict[str, set[str]]:
    from carmigrate.records import row_digest

    with open_database(url) as db:
        return {
            t.name: {row_digest(r) for r in db.iter_rows(t.name)}
            for t in schema.metadata.sorted_tables
        }


def pg_dump(url: str) -> list[str]:
    options = ("--data-only", "--inserts", f"--exclude-table={MARKER_TABLE}")
    return sorted(
        line for line in pg_dump_lines(url, *options) if line.startswith("INSERT")
    )


def test_merge_two_deployments(pair: tuple[str, str], tmp_path: Path) -> None:
    src, dst = pair
    plan = make_plan(pair)
    before = dump(dst)
    want = expected(plan, src, before)
    with Ledger(tmp_path / "ledger.db") as ledger:
        result = execute_records(plan, ledger, source=src, destination=dst)
        assert [c.stage for c in result.executed] == ["accounts", "studies"]
        accounts = result.executed[0]
        # carol and bob_1 made their primary groups through the trigger:
        # adopted (replaced by the planned groups), never duplicated
        assert accounts.adopted == 2
        assert accounts.trigger_rows == 0
        assert [c.state for c in record_checkpoints(ledger)] == ["committed"] * 2
    assert digests(dst) == want
    after = dump(dst)
    names = [g[1] for g in after["groups"]]
    assert len(names) == len(set(names))
    assert sorted(n for n in names if n.startswith("primary:")) == [
        "primary:alice",
        "primary:alice_1",
        "primary:bob",
        "primary:bob_1",
        "primary:carol",
    ]
    # the FK cycle: every user points at a group that points back
    gids = {g[0]: g for g in after["groups"]}
    for uid, _, name, gid in after["users"]:
        assert gid in gids
        if name in ("carol", "bob_1"):
            assert gids[gid][3] == uid
    # running again is a no-op
    with Ledger(tmp_path / "ledger.db") as ledger:
        again = execute_records(plan, ledger, source=src, destination=dst)
    assert again.executed == ()
    assert again.already == ("accounts", "studies")
    assert dump(dst) == after


def test_pg_dump_equals_the_expected_rows(
    pair: tuple[str, str], tmp_path: Path
) -> None:
    """On PostgreSQL, pg_dump of the merged destination has the planned rows (and nothing else)."""
    src, dst = pair
    if not dst.startswith("postgresql") or not (PG_BIN / "pg_dump").exists():
        pytest.skip("pg_dump comparison is for PostgreSQL")
    plan = make_plan(pair)
    before = pg_dump(dst)
    with Ledger(tmp_path / "ledger.db") as ledger:
        result = execute_records(plan, ledger, source=src, destination=dst)
    after = pg_dump(dst)
    assert set(before) <= set(after)
    inserted = sum(c.inserted for c in result.executed)
    assert len(after) - len(before) == inserted == plan.summary().count("insert")


def test_failed_integrity_check_rolls_the_stage_back(
    pair: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dst = pair
    plan = make_plan(pair)
    before = dump(dst)
    from carmigrate.migrate import _records

    original = _records._StageRun._checks

    def tampered(self: Any, conn: Any, order: Any, counts: Any) -> list[str]:
        if self.stage.name == "studies":
            conn.execute(self.dst.tables["projects"].update().values(name="tampered"))
        return original(self, conn, order, counts)

    monkeypatch.setattr(_records._StageRun, "_checks", tampered)
    with Ledger(tmp_path / "ledger.db") as ledger:
        with pytest.raises(RecordsIntegrityError) as e:
            execute_records(plan, ledger, source=src, destination=dst)
        assert e.value.stage == "studies"
        assert any("digest differs" in p and "name" in p for p in e.value.problems)
        states = {c.stage: c.state for c in record_checkpoints(ledger)}
        assert states == {"accounts": "committed", "studies": "failed"}
    after = dump(dst)
    # accounts committed, nothing of studies (and the tamper rolled back too)
    assert after["projects"] == before["projects"]
    assert after["nodes"] == before["nodes"]
    assert after["files"] == before["files"]
    assert len(after["users"]) > len(before["users"])
    monkeypatch.undo()
    with Ledger(tmp_path / "ledger.db") as ledger:
        result = execute_records(plan, ledger, source=src, destination=dst)
    assert [c.stage for c in result.executed] == ["studies"]
    assert digests(dst) == expected(plan, src, before)


def test_a_trigger_changing_a_planned_value_fails_the_checks(
    pair: tuple[str, str], tmp_path: Path
) -> None:
    src, dst = pair
    engine = sa.create_engine(dst)
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql(
                "CREATE TRIGGER shout AFTER INSERT ON tags BEGIN "
                "UPDATE tags SET label = upper(label) WHERE id = NEW.id; END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION shout() RETURNS trigger LANGUAGE plpgsql AS $$ "
                "BEGIN NEW.label := upper(NEW.label); RETURN NEW; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER shout BEFORE INSERT ON tags "
                "FOR EACH ROW EXECUTE FUNCTION shout()"
            )
    engine.dispose()
    plan = make_plan(pair)
    before = dump(dst)
    with (
        Ledger(tmp_path / "ledger.db") as ledger,
        pytest.raises(RecordsIntegrityError, match="label"),
    ):
        execute_records(plan, ledger, source=src, destination=dst)
    after = dump(dst)
    assert after["tags"] == before["tags"]
    assert after["projects"] == before["projects"]


# -- SIGKILL and resume ------------------------------------------------------------------

RUNNER = textwrap.dedent(
    """
    import os, signal, sys
    from carmigrate.migrate import Ledger, execute_records
    from carmigrate.records import load_record_plan

    plan_path, ledger_path, src, dst, event, stage, n = sys.argv[1:]
    calls = 0

    def hook(e, s, i):
        if e == event and s == stage and i >= int(n):
            os.kill(os.getpid(), signal.SIGKILL)

    with Ledger(ledger_path) as ledger:
        execute_records(
            load_record_plan(plan_path), ledger, source=src, destination=dst,
            batch_size=2, hook=hook,
        )
    """
)


@pytest.mark.parametrize(
    ("event", "stage", "n"),
    [
        ("batch", "accounts", 1),
        ("batch", "accounts", 4),
        ("checks", "accounts", 0),
        ("committed", "accounts", 0),
        ("batch", "studies", 2),
        ("committed", "studies", 0),
    ],
)
def test_sigkill_then_resume(
    pair: tuple[str, str],
    new_database: Any,
    tmp_path: Path,
    event: str,
    stage: str,
    n: int,
) -> None:
    src, dst = pair
    plan = make_plan(pair)
    before = dump(dst)
    want = expected(plan, src, before)
    plan_path = tmp_path / "plan.jsonl"
    save_record_plan(plan, plan_path)
    # the runs here and in the subprocess use the same plan file: a ``json``
    # column keeps its text, and the file's documents have sorted keys
    plan = load_record_plan(plan_path)
    script = tmp_path / "run.py"
    script.write_text(RUNNER)
    ledger_path = tmp_path / "ledger.db"
    done = subprocess.run(
        [
            sys.executable,
            str(script),
            str(plan_path),
            str(ledger_path),
            src,
            dst,
            event,
            stage,
            str(n),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    # never a half stage: each stage's tables are all there or untouched
    mid, rows = digests(dst), dump(dst)
    for tables in (
        ("groups", "users", "user_to_groups"),
        ("projects", "nodes", "files", "tags"),
    ):
        whole = all(mid[t] == want[t] for t in tables)
        untouched = all(rows[t] == before[t] for t in tables)
        assert whole or untouched, tables
    with Ledger(ledger_path) as ledger:
        result = execute_records(plan, ledger, source=src, destination=dst)
        if event == "committed":
            assert stage in result.repaired
            assert all(
                c.repaired for c in record_checkpoints(ledger) if c.stage == stage
            )
        assert [c.state for c in record_checkpoints(ledger)] == ["committed"] * 2
    assert digests(dst) == want
    if dst.startswith("postgresql") and (PG_BIN / "pg_dump").exists():
        # the same plan, uninterrupted, into a fresh copy of the destination
        reference = build(new_database(), schema.DEST)
        with Ledger(tmp_path / "reference.db") as ledger:
            execute_records(plan, ledger, source=src, destination=reference)
        assert pg_dump(dst) == pg_dump(reference)


# -- rollback ------------------------------------------------------------------------------


def test_rollback_restores_the_prior_state(
    pair: tuple[str, str], tmp_path: Path
) -> None:
    src, dst = pair
    plan = make_plan(pair)
    before = dump(dst)
    with Ledger(tmp_path / "ledger.db") as ledger:
        execute_records(plan, ledger, source=src, destination=dst)
        with pytest.raises(Exception, match="roll those back first"):
            rollback_records(ledger, dst, stage="accounts")
        r = rollback_records(ledger, dst, stage="studies")
        assert r.deleted == plan.summary().count("insert") - sum(
            len(plan.rows_of(t, RowAction.INSERT))
            for t in ("groups", "users", "user_to_groups")
        )
        middle_state = dump(dst)
        assert middle_state["projects"] == before["projects"]
        r = rollback_records(ledger, dst, stage="accounts")
        assert r.restored == 0
        assert [c.state for c in record_checkpoints(ledger)] == ["rolled-back"] * 2
    assert dump(dst) == before
    # and it can be executed again
    with Ledger(tmp_path / "ledger.db") as ledger:
        result = execute_records(plan, ledger, source=src, destination=dst)
    assert [c.stage for c in result.executed] == ["accounts", "studies"]
    assert digests(dst) == expected(plan, src, before)


def test_rollback_refuses_changed_rows_unless_forced(
    pair: tuple[str, str], tmp_path: Path
) -> None:
    src, dst = pair
    plan = make_plan(pair)
    before = dump(dst)
    with Ledger(tmp_path / "ledger.db") as ledger:
        execute_records(plan, ledger, source=src, destination=dst)
        engine = sa.create_engine(dst)
        with engine.begin() as conn:
            conn.execute(
                schema.tags.update()
                .where(schema.tags.c.id == "b_blue")
                .values(label="mine")
            )
        engine.dispose()
        changed = dump(dst)
        with pytest.raises(RollbackRefused) as e:
            rollback_records(ledger, dst, stage="studies")
        assert e.value.changed == ("tags ('b_blue',): changed since the stage",)
        assert dump(dst) == changed
        r = rollback_records(ledger, dst, stage="studies", force=True)
        assert r.changed == e.value.changed
        rollback_records(ledger, dst, stage="accounts")
    assert dump(dst) == before


def test_rows_a_trigger_changed_are_restored_by_the_rollback(
    pair: tuple[str, str], tmp_path: Path
) -> None:
    """A destination trigger that updates a row that existed before the stage:
    the stage keeps its before-image, and rolling the stage back restores it."""
    src, dst = pair
    engine = sa.create_engine(dst)
    with engine.begin() as conn:
        first = conn.execute(sa.text("SELECT min(gid) FROM groups")).scalar_one()
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql(
                "CREATE TRIGGER touch AFTER INSERT ON tags BEGIN "
                f"UPDATE groups SET kind = 'touched' WHERE gid = {first}; END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ "
                f"BEGIN UPDATE groups SET kind = 'touched' WHERE gid = {first}; "
                "RETURN NEW; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER touch AFTER INSERT ON tags "
                "FOR EACH ROW EXECUTE FUNCTION touch()"
            )
    engine.dispose()
    plan = make_plan(pair)
    before = dump(dst)
    with Ledger(tmp_path / "ledger.db") as ledger:
        result = execute_records(plan, ledger, source=src, destination=dst)
        (studies,) = [c for c in result.executed if c.stage == "studies"]
        assert studies.updated == 1  # the touched group, with its before-image
        touched = dump(dst)["groups"]
        assert touched != before["groups"]
        undone = rollback_records(ledger, dst, stage="studies")
        assert undone.restored == 1
    after = dump(dst)
    # the group is as it was before the stage (accounts, still committed,
    # changed other groups: compare the touched one)
    row = {r[0]: r for r in after["groups"]}[first]
    assert row == {r[0]: r for r in before["groups"]}[first]
    assert after["tags"] == before["tags"]
