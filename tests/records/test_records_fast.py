"""PostgreSQL to PostgreSQL: tables streamed as ``COPY`` text, checked by fingerprint and read-back.

From a PostgreSQL source, the planner fingerprints each table's rows as
``COPY`` text in its read snapshot (``TextFingerprint``); the executor
streams the same lines, rewrites the planned fields, and loads them with
``COPY`` (``_StageRun._copy_fast``), then reads the rows back as text and
compares each line with the one sent. These tests hold that path to the
row-by-row one: the same destination, the same refusals, and checkpoints
that rollback and verify can use.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import schema
import sqlalchemy as sa
from records_helpers import build

from carmigrate.errors import RecordsError, RollbackRefused
from carmigrate.migrate import (
    Ledger,
    _records,
    execute_records,
    rollback_records,
    verify_records,
)
from carmigrate.records import (
    RecordPlan,
    RowAction,
    TextFingerprint,
    load_record_plan,
    open_database,
    parse_mapping,
    plan_records,
    save_record_plan,
)
from carmigrate.records.lowlevel import (
    CopyCodec,
    apply_copy_settings,
    array_text,
    copy_escape,
    copy_lines,
    copy_unescape,
)


def streamed(plan: RecordPlan) -> set[str]:
    """The tables the executor streams as text: inserts, one-column keys, no trigger in the stage."""
    return {
        t
        for s in plan.stages
        if "users" not in s.tables  # its INSERT trigger makes the stage row by row
        for t in s.tables
        if plan.rows_of(t, RowAction.INSERT)
        and len(schema.metadata.tables[t].primary_key.columns) == 1
    }


def make_plan(src: str, dst: str) -> RecordPlan:
    mapping = parse_mapping(tomllib.loads(schema.MAPPING_TOML + schema.EXECUTABLE))
    with open_database(src) as s, open_database(dst) as d:
        plan = plan_records(s, d, mapping)
    assert plan.ok
    return plan


def rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows in key order (the marker table left out)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                t.name: [
                    tuple(r)
                    for r in conn.execute(sa.select(t).order_by(*t.primary_key))
                ]
                for t in schema.metadata.sorted_tables
            }
    finally:
        engine.dispose()


def execute(
    plan: RecordPlan,
    src: str,
    dst: str,
    ledger: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    fast: bool,
) -> tuple[Any, list[str]]:
    """Run the plan; the tables loaded as COPY text (none when ``fast`` is off)."""
    loaded: list[str] = []
    original = _records._StageRun._copy_fast

    def spy(self: Any, conn: Any, table: str, batch: int) -> int:
        out = original(self, conn, table, batch)
        loaded.append(table)
        return out

    with monkeypatch.context() as m:
        m.setattr(_records._StageRun, "_copy_fast", spy)
        if not fast:
            m.setattr(_records._StageRun, "_fast_tables", lambda self, t: set())
        with Ledger(ledger) as lg:
            result = execute_records(plan, lg, source=src, destination=dst)
    return result, loaded


@pytest.fixture
def pg_pair(pg_database: Callable[[], str]) -> tuple[str, str]:
    return build(pg_database(), schema.SOURCE), build(pg_database(), schema.DEST)


def test_fingerprints_are_planned_for_postgresql_sources_and_saved(
    pg_pair: tuple[str, str], tmp_path: Path
) -> None:
    src, dst = pg_pair
    plan = make_plan(src, dst)
    # every table with a one-column primary key (user_to_groups has two)
    tables = {
        t
        for s in plan.stages
        for t in s.tables
        if len(schema.metadata.tables[t].primary_key.columns) == 1
    }
    assert "user_to_groups" not in tables
    assert {f.table for f in plan.fingerprints} == tables
    for f in plan.fingerprints:
        assert f.rows == len(plan.rows_of(f.table))
        assert len(f.sha256) == 64
    # the digest is of the lines a later read gives, in the same order
    with open_database(src) as s:
        users = next(f for f in plan.fingerprints if f.table == "users")
        lines = s.copy_lines("users", users.columns)
        assert lines is not None
        import hashlib

        assert hashlib.sha256(b"".join(lines)).hexdigest() == users.sha256
    path = tmp_path / "plan.jsonl"
    save_record_plan(plan, path)
    loaded = load_record_plan(path)
    assert loaded.fingerprints == plan.fingerprints
    # the id a loaded plan takes from its header is the one it would compute
    assert loaded.id == plan.id
    object.__delattr__(loaded, "id")
    assert loaded.id == plan.id


def test_sqlite_sources_have_no_fingerprint(tmp_path: Path) -> None:
    src = build(f"sqlite:///{tmp_path}/s.db", schema.SOURCE)
    dst = build(f"sqlite:///{tmp_path}/d.db", schema.DEST)
    assert make_plan(src, dst).fingerprints == ()
    with open_database(src) as s:
        assert s.copy_lines("users") is None


def test_text_stream_gives_the_same_destination_as_row_by_row(
    pg_pair: tuple[str, str],
    pg_database: Callable[[], str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src, dst = pg_pair
    other = build(pg_database(), schema.DEST)
    plan = make_plan(src, dst)
    result, loaded = execute(plan, src, dst, tmp_path / "a.db", monkeypatch, fast=True)
    assert set(loaded) == streamed(plan)
    assert {"projects", "nodes", "files", "tags"} <= set(loaded)
    reference, none = execute(
        plan, src, other, tmp_path / "b.db", monkeypatch, fast=False
    )
    assert none == []
    assert rows(dst) == rows(other)
    counts = [(c.stage, c.inserted, c.merged) for c in result.executed]
    assert counts == [(c.stage, c.inserted, c.merged) for c in reference.executed]
    # the checkpoints of streamed tables hold text digests, which verify re-reads
    with Ledger(tmp_path / "a.db") as lg:
        report = verify_records(lg, dst)
        assert report.ok
        assert report.checked == sum(c.inserted for c in result.executed)


def test_a_source_row_changed_since_planning_is_refused(
    pg_pair: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dst = pg_pair
    plan = make_plan(src, dst)
    row = plan.rows_of("tags", RowAction.INSERT)[0]
    engine = sa.create_engine(src)
    with engine.begin() as conn:
        conn.execute(
            schema.tags.update()
            .where(schema.tags.c.id == row.key[0])
            .values(label="changed")
        )
    engine.dispose()
    before = rows(dst)
    with pytest.raises(
        RecordsError, match=r"source row tags .* changed since the plan"
    ):
        execute(plan, src, dst, tmp_path / "l.db", monkeypatch, fast=True)
    # the failing stage left nothing; the stages before it are committed
    after = rows(dst)
    assert after["tags"] == before["tags"]


def test_a_row_added_since_planning_falls_back_and_is_not_carried(
    pg_pair: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fingerprint covers the whole table; the row checks only the planned rows."""
    src, dst = pg_pair
    plan = make_plan(src, dst)
    fp = next(f for f in plan.fingerprints if f.table == "tags")
    assert not fp.filtered
    before = len(rows(dst)["tags"])
    engine = sa.create_engine(src)
    with engine.begin() as conn:
        conn.execute(schema.tags.insert().values(id="zz-new", label="added later"))
    engine.dispose()
    result, loaded = execute(plan, src, dst, tmp_path / "l.db", monkeypatch, fast=True)
    assert "tags" not in loaded
    assert "projects" in loaded
    assert all(c.state == "committed" for c in result.executed)
    labels = [r[1] for r in rows(dst)["tags"]]
    assert "added later" not in labels
    assert len(labels) == before + len(plan.rows_of("tags", RowAction.INSERT))


def test_jsonb_written_differently_is_compared_as_values(
    pg_database: Callable[[], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """jsonb normalizes documents, so the read-back text differs from the text sent."""
    src = build(pg_database(), schema.SOURCE)
    dst = build(pg_database(), schema.DEST)
    for url in (src, dst):
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "ALTER TABLE projects ALTER COLUMN workbench TYPE jsonb "
                "USING workbench::jsonb"
            )
        engine.dispose()
    plan = make_plan(src, dst)
    assert any("workbench" in r.changes for r in plan.rows_of("projects"))
    result, loaded = execute(plan, src, dst, tmp_path / "l.db", monkeypatch, fast=True)
    assert "projects" in loaded
    assert all(c.state == "committed" for c in result.executed)
    with Ledger(tmp_path / "l.db") as lg:
        assert verify_records(lg, dst).ok
        payloads = _records._payloads(lg)
    # projects fell back to row digests; other streamed tables kept text ones
    text = {t for p in payloads.values() for t in p.get("text_columns", {})}
    assert "projects" not in text
    assert text


def test_rollback_of_a_streamed_stage_refuses_a_changed_row(
    pg_pair: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dst = pg_pair
    before = rows(dst)
    plan = make_plan(src, dst)
    execute(plan, src, dst, tmp_path / "l.db", monkeypatch, fast=True)
    last = plan.stages[-1]
    table = next(t for t in last.tables if plan.rows_of(t, RowAction.INSERT))
    key = plan.rows_of(table, RowAction.INSERT)[0].target_key
    assert key is not None
    t = schema.metadata.tables[table]
    text_col = next(
        c
        for c in t.columns
        if isinstance(c.type, sa.String) and not c.primary_key and not c.foreign_keys
    )
    engine = sa.create_engine(dst)
    with engine.begin() as conn:
        old = conn.execute(
            sa.select(text_col).where(t.c[t.primary_key.columns[0].name] == key[0])
        ).scalar_one()
        conn.execute(
            t.update()
            .where(t.c[t.primary_key.columns[0].name] == key[0])
            .values({text_col.name: f"{old} edited"})
        )
    engine.dispose()
    with Ledger(tmp_path / "l.db") as lg:
        report = verify_records(lg, dst)
        assert [m.split(":")[0] for m in report.mismatches] == [f"{table} {key!r}"]
        with pytest.raises(RollbackRefused):
            rollback_records(lg, dst, stage=last.name)
        done = rollback_records(lg, dst, stage=last.name, force=True)
        assert done.changed
        for s in reversed(plan.stages[:-1]):
            rollback_records(lg, dst, stage=s.name)
    assert rows(dst) == before


def test_a_planned_key_taken_since_is_named(
    pg_pair: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dst = pg_pair
    plan = make_plan(src, dst)
    row = plan.rows_of("tags", RowAction.INSERT)[0]
    assert row.target_key is not None
    engine = sa.create_engine(dst)
    with engine.begin() as conn:
        conn.execute(
            schema.tags.insert().values(
                {
                    **{c.name: None for c in schema.tags.columns if c.nullable},
                    "id": row.target_key[0],
                    "label": "squatter",
                }
            )
        )
    engine.dispose()
    with pytest.raises(RecordsError, match=r"already at the destination"):
        execute(plan, src, dst, tmp_path / "l.db", monkeypatch, fast=True)


# -- the COPY text format ---------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [b"", b"plain", b"tab\there", b"new\nline", b"cr\rhere", b"back\\slash\\N"],
)
def test_escape_and_unescape_are_inverse(text: bytes) -> None:
    field = copy_escape(text)
    assert b"\t" not in field
    assert b"\n" not in field
    assert copy_unescape(field) == text
    assert copy_unescape(b"\\N") is None


def test_array_text_quotes_what_is_not_an_integer() -> None:
    assert array_text([1, -2]) == "{1,-2}"
    assert array_text(['a"b', "c\\d", b"\x01"]) == '{"a\\"b","c\\\\d","\\\\x01"}'


def test_codec_round_trips_through_the_server(pg_database: Callable[[], str]) -> None:
    """Values dumped as COPY fields load as the same values after a server round trip."""
    import uuid

    import psycopg

    url = sa.make_url(pg_database())
    with psycopg.connect(
        host=url.query["host"],
        port=url.query["port"],
        user="postgres",
        dbname=url.database,
    ) as conn:
        conn.execute(
            "CREATE TABLE odd (id bigint PRIMARY KEY, doc jsonb, u uuid, t text, "
            "b boolean, d bytea, n numeric)"
        )
        cols = ["id", "doc", "u", "t", "b", "d", "n"]
        codec = CopyCodec(conn, "odd", cols)
        import decimal

        values = [
            [
                1,
                {"a": [1, "x\ty"]},
                uuid.UUID(int=7),
                "tab\there\n\\N",
                True,
                b"\x00\\",
                decimal.Decimal("1.50"),
            ],
            [2, None, None, None, None, None, None],
        ]
        with (
            conn.cursor() as cur,
            cur.copy(f"COPY odd ({', '.join(cols)}) FROM STDIN") as copy,
        ):
            for v in values:
                copy.write(
                    b"\t".join(codec.dump(i, x) for i, x in enumerate(v)) + b"\n"
                )
        apply_copy_settings(conn)
        lines = list(copy_lines(conn, "odd", cols, order_by="id", keys=[1, 2]))
        back = [
            [codec.load(i, f) for i, f in enumerate(line[:-1].split(b"\t"))]
            for line in lines
        ]
        assert back == values
        assert codec.loader(0)(b"42") == 42
        assert codec.dumper(0)(42) == b"42"
    with (
        psycopg.connect(
            host=url.query["host"],
            port=url.query["port"],
            user="postgres",
            dbname=url.database,
        ) as conn,
        pytest.raises(RecordsError, match="no columns"),
    ):
        CopyCodec(conn, "odd", ["nope"])


def test_fingerprint_value() -> None:
    f = TextFingerprint(
        table="t", columns=("a", "b"), filtered=True, sha256="0" * 64, rows=3
    )
    assert TextFingerprint.from_dict(f.to_dict()) == f


def test_a_stage_stopped_mid_stream_releases_the_source_and_resumes(
    pg_pair: tuple[str, str], tmp_path: Path
) -> None:
    """An error while a table streams must end the source's COPY (else closing it hangs)."""
    import threading

    src, dst = pg_pair
    plan = make_plan(src, dst)
    ledger = tmp_path / "l.db"

    class Stop(Exception):
        pass

    def hook(event: str, stage: str, n: int) -> None:
        if event == "batch" and stage == plan.stages[-1].name:
            raise Stop

    outcome: list[BaseException | None] = []

    def first() -> None:
        try:
            with Ledger(ledger) as lg:
                execute_records(
                    plan, lg, source=src, destination=dst, batch_size=1, hook=hook
                )
            outcome.append(None)
        except BaseException as e:
            outcome.append(e)

    worker = threading.Thread(target=first, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "execute_records hung after an error mid-stream"
    assert isinstance(outcome[0], Stop)
    with Ledger(ledger) as lg:
        result = execute_records(plan, lg, source=src, destination=dst)
    assert [c.stage for c in result.executed] == [plan.stages[-1].name]


def test_many_rows_with_a_composite_key_are_looked_up_in_batches(
    pg_database: Callable[[], str], tmp_path: Path
) -> None:
    """Composite keys go through IN lists: batches must stay under PostgreSQL's 65,535 parameters."""
    src, dst = pg_database(), pg_database()
    for url, rows_sql in (
        (
            src,
            "INSERT INTO pairs SELECT i / 100, mod(i, 100), 'x' FROM generate_series(0, 39999) i",
        ),
        (dst, None),
    ):
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TABLE pairs (a int, b int, v text, PRIMARY KEY (a, b))"
            )
            if rows_sql:
                conn.exec_driver_sql(rows_sql)
        engine.dispose()
    with open_database(src) as s, open_database(dst) as d:
        plan = plan_records(s, d)
    assert plan.fingerprints == ()  # two-column key: row by row
    with Ledger(tmp_path / "l.db") as lg:
        result = execute_records(plan, lg, source=src, destination=dst)
        assert result.executed[0].inserted == 40_000
        assert verify_records(lg, dst).ok
