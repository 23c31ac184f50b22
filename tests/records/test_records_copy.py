"""Bulk loading through PostgreSQL ``COPY``: used on PostgreSQL, same result as ``executemany``.

The executor chooses ``COPY`` at one seam (``_can_copy``) and writes every
batch of decoded rows through another (``_copy_rows``); from a PostgreSQL
source, tables without destination triggers are streamed as ``COPY`` text
instead (``_StageRun._copy_fast``, chosen by ``_StageRun._fast_tables``).
The tests count the calls there and compare runs with each seam turned off.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import schema
import sqlalchemy as sa
from records_helpers import PG_BIN, build

from carmigrate.migrate import (
    MARKER_TABLE,
    Ledger,
    _records,
    execute_records,
    rollback_records,
)
from carmigrate.records import (
    RecordPlan,
    RowAction,
    open_database,
    parse_mapping,
    plan_records,
    row_digest,
)
from pg_cluster import pg_dump_lines


@pytest.fixture
def pg(pg_database: Callable[[], str]) -> Callable[[], str]:
    """A maker of empty PostgreSQL databases on the session cluster."""
    return pg_database


EXECUTABLE = schema.EXECUTABLE


def make_plan(src: str, dst: str) -> RecordPlan:
    import tomllib

    mapping = parse_mapping(tomllib.loads(schema.MAPPING_TOML + EXECUTABLE))
    with open_database(src) as s, open_database(dst) as d:
        plan = plan_records(s, d, mapping)
    assert plan.ok
    return plan


def digests(url: str) -> dict[str, list[str]]:
    with open_database(url) as db:
        return {
            t.name: sorted(row_digest(r) for r in db.iter_rows(t.name))
            for t in schema.metadata.sorted_tables
        }


def pg_dump(url: str) -> list[str]:
    """``pg_dump --data-only`` (COPY format), its data lines sorted, the marker table left out."""
    lines = pg_dump_lines(url, "--data-only", f"--exclude-table={MARKER_TABLE}")
    # comments and pg_dump's per-run "\\restrict <random key>" lines aside
    return sorted(
        line
        for line in lines
        if line and not line.startswith(("--", "\\restrict", "\\unrestrict"))
    )


class Counter:
    """Wraps ``_copy_rows``: counts the batches and rows that went through COPY."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, int]] = []
        self.original = _records._copy_rows

    def __call__(self, conn: Any, table: sa.Table, rows: Any) -> None:
        self.batches.append((table.name, len(rows)))
        self.original(conn, table, rows)


def run(
    plan: RecordPlan,
    src: str,
    dst: str,
    ledger: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    copy: bool,
    fast: bool = False,
) -> tuple[Counter, Any]:
    counter = Counter()
    with monkeypatch.context() as m:
        m.setattr(_records, "_copy_rows", counter)
        if not copy:
            m.setattr(_records, "_can_copy", lambda conn: False)
        if not fast:
            m.setattr(_records._StageRun, "_fast_tables", lambda self, t: set())
        with Ledger(ledger) as lg:
            result = execute_records(
                plan, lg, source=src, destination=dst, batch_size=2
            )
    return counter, result


def test_copy_is_used_on_postgresql_and_equals_executemany(
    pg: Callable[[], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not (PG_BIN / "pg_dump").exists():
        pytest.skip("pg_dump is not installed")
    src = build(pg(), schema.SOURCE)
    with_copy = build(pg(), schema.DEST)
    with_many = build(pg(), schema.DEST)
    plan = make_plan(src, with_copy)
    assert pg_dump(with_copy) == pg_dump(with_many)

    counter, result = run(
        plan, src, with_copy, tmp_path / "copy.db", monkeypatch, copy=True
    )
    inserts = {
        t.name: len(plan.rows_of(t.name, RowAction.INSERT))
        for t in schema.metadata.sorted_tables
    }
    # every inserted row went through COPY, two rows a batch
    copied: dict[str, int] = {}
    for table, n in counter.batches:
        assert 1 <= n <= 2
        copied[table] = copied.get(table, 0) + n
    assert copied == {t: n for t, n in inserts.items() if n}
    assert sum(c.inserted for c in result.executed) == sum(inserts.values())
    # the trigger fired under COPY too, and its rows were adopted as before
    assert result.executed[0].adopted == 2

    none, reference = run(
        plan, src, with_many, tmp_path / "many.db", monkeypatch, copy=False
    )
    assert none.batches == []
    assert [
        (c.stage, c.inserted, c.merged, c.trigger_rows, c.adopted, c.updated)
        for c in result.executed
    ] == [
        (c.stage, c.inserted, c.merged, c.trigger_rows, c.adopted, c.updated)
        for c in reference.executed
    ]
    assert digests(with_copy) == digests(with_many)
    assert pg_dump(with_copy) == pg_dump(with_many)


def test_copy_converts_values_as_insert_does(
    pg: Callable[[], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """JSON documents, JSON null, SQL NULL, UUIDs, text with COPY's special characters."""
    import uuid

    url = pg()
    meta = sa.MetaData()
    sa.Table(
        "odd",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("doc", sa.JSON),
        sa.Column("u", sa.UUID),
        sa.Column("text", sa.Text),
        sa.Column("flag", sa.Boolean),
        sa.Column("data", sa.LargeBinary),
    )
    engine = sa.create_engine(url)
    meta.create_all(engine)
    engine.dispose()
    rows = [
        {
            "id": 1,
            "doc": {"a": [1, "x\ty"], "b": None},
            "u": uuid.UUID(int=7),
            "text": "tab\there\nnewline \\N back\\slash",
            "flag": True,
            "data": b"\x00\x01\\",
        },
        {"id": 2, "doc": None, "u": None, "text": None, "flag": None, "data": None},
        {"id": 3, "doc": [1, 2], "u": None, "text": "", "flag": False, "data": b""},
    ]
    results = {}
    for how in ("copy", "insert"):
        dst = _records._Destination(url)
        try:
            table = dst.tables["odd"]
            with dst.engine.begin() as conn:
                conn.execute(table.delete())
                if how == "copy":
                    assert _records._can_copy(conn)
                    _records._copy_rows(conn, table, rows)
                else:
                    conn.execute(table.insert(), rows)
                results[how] = [
                    (*r, str(r.doc_type))
                    for r in conn.execute(
                        sa.select(
                            table,
                            sa.func.json_typeof(table.c.doc).label("doc_type"),
                        ).order_by(table.c.id)
                    )
                ]
        finally:
            dst.close()
    assert results["copy"] == results["insert"]
    # None in a JSON column is the JSON null (SQLAlchemy's default), not SQL NULL
    assert results["copy"][1][-1] == "null"


def test_sqlite_keeps_executemany(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = build(f"sqlite:///{tmp_path}/src.sqlite", schema.SOURCE)
    dst = build(f"sqlite:///{tmp_path}/dst.sqlite", schema.DEST)
    plan = make_plan(src, dst)
    counter, result = run(plan, src, dst, tmp_path / "l.db", monkeypatch, copy=True)
    assert counter.batches == []
    assert [c.state for c in result.executed] == ["committed"] * 2


def test_rollback_after_copy(
    pg: Callable[[], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = build(pg(), schema.SOURCE)
    dst = build(pg(), schema.DEST)
    plan = make_plan(src, dst)
    before = digests(dst)
    counter, _ = run(plan, src, dst, tmp_path / "l.db", monkeypatch, copy=True)
    assert counter.batches
    with Ledger(tmp_path / "l.db") as ledger:
        rollback_records(ledger, dst, stage="studies")
        rollback_records(ledger, dst, stage="accounts")
    assert digests(dst) == before
