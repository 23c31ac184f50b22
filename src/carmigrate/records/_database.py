"""A database opened by SQLAlchemy URL: reflection and bounded-memory row streams.

SQLAlchemy Core does the reflection and the SQL; this module adds what it
does not: triggers (read from ``sqlite_master`` or ``pg_trigger``), UUID
columns of SQLite files (declared ``UUID``, read as ``uuid.UUID`` like
PostgreSQL's), keyset pagination in primary-key order, and read-only,
single-snapshot reading.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

try:
    import sqlalchemy as sa
    from sqlalchemy.schema import sort_tables_and_constraints
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "carmigrate.records needs SQLAlchemy 2: pip install 'carmigrate[records]'"
    ) from e

from carmigrate.errors import RecordsError
from carmigrate.records._schema import (
    ColumnInfo,
    ForeignKeyInfo,
    SchemaInfo,
    TableInfo,
    TriggerInfo,
    UniqueInfo,
)

if TYPE_CHECKING:
    from collections.abc import Generator, Iterable, Iterator, Sequence

__all__ = ["DEFAULT_BATCH_SIZE", "Database", "Row", "open_database"]

DEFAULT_BATCH_SIZE: Final = 1000
"""Rows fetched per query by [Database.iter_rows][carmigrate.records.Database.iter_rows]."""

Row = dict[str, Any]
"""A row as read: every column's name mapped to its Python value."""

_TRIGGER_HEAD: Final = re.compile(
    r"\bTRIGGER\s+(?:IF\s+NOT\s+EXISTS\s+)?\S+\s+(BEFORE|AFTER|INSTEAD\s+OF)?\s*"
    r"((?:INSERT|UPDATE(?:\s+OF\s+[^O]+?)?|DELETE|TRUNCATE)"
    r"(?:\s+OR\s+(?:INSERT|UPDATE(?:\s+OF\s+[^O]+?)?|DELETE|TRUNCATE))*)\s+ON\b",
    re.IGNORECASE | re.DOTALL,
)


def _parse_trigger(name: str, table: str, sql: str) -> TriggerInfo:
    m = _TRIGGER_HEAD.search(sql)
    events: tuple[str, ...]
    if m is None:
        timing, events = "", ()
    else:
        timing = " ".join((m[1] or "BEFORE").upper().split())
        events = tuple(
            e.split()[0].upper() for e in re.split(r"\s+OR\s+", m[2], flags=re.I)
        )
    return TriggerInfo(
        name=name, table=table, timing=timing, events=events, definition=sql
    )


class Database:
    """A database opened for reading by SQLAlchemy URL.

    State: a SQLAlchemy engine and, once something was read, one open read
    connection. On PostgreSQL that connection holds one ``REPEATABLE READ,
    READ ONLY`` transaction, so every read through this object sees the
    same snapshot; SQLite files are opened read-only (``mode=ro``). Nothing
    is ever written through this object. Close it (or use it as a context
    manager) to end the transaction and dispose of the engine.

    Args:
        url: Any SQLAlchemy URL: ``sqlite:///path.db`` (the embedded
            default), ``postgresql+psycopg://user@/db?host=/run/pg``,
            ``mysql+pymysql://...`` when that driver is installed.
        read_only: Open SQLite files read-only and run PostgreSQL reads in a
            read-only transaction (the default). ``False`` is for test
            fixtures that build a database through the ``engine`` attribute.

    Raises:
        RecordsError: The URL is not a SQLAlchemy URL or names a driver that
            is not installed.
    """

    def __init__(self, url: str | sa.URL, *, read_only: bool = True) -> None:
        try:
            parsed = sa.make_url(url)
        except sa.exc.ArgumentError as e:
            msg = f"not a database URL: {url!r}"
            raise RecordsError(msg) from e
        self.read_only = read_only
        self.url = parsed.render_as_string(hide_password=True)
        connect_args: dict[str, Any] = {}
        if (
            read_only
            and parsed.get_backend_name() == "sqlite"
            and parsed.database not in (None, "", ":memory:")
            and not str(parsed.database).startswith("file:")
        ):
            parsed = parsed.set(
                database=f"file:{parsed.database}",
                query={**parsed.query, "mode": "ro", "uri": "true"},
            )
        try:
            self.engine: sa.Engine = sa.create_engine(parsed, connect_args=connect_args)
        except (sa.exc.ArgumentError, ImportError) as e:
            msg = f"cannot open {self.url}: {e}"
            raise RecordsError(msg) from e
        self.dialect: str = self.engine.dialect.name
        self._conn: sa.Connection | None = None
        self._metadata: sa.MetaData | None = None
        self._schema: SchemaInfo | None = None
        self._copy_ready = False

    def __repr__(self) -> str:
        return f"Database({self.url!r})"

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the read transaction and dispose of the engine; idempotent."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            self._copy_ready = False
        self.engine.dispose()

    def _connection(self) -> sa.Connection:
        if self._conn is None:
            try:
                conn = self.engine.connect()
            except sa.exc.OperationalError as e:
                msg = f"cannot connect to {self.url}: {e.orig}"
                raise RecordsError(msg, transient=True) from e
            if self.dialect == "postgresql":
                conn = conn.execution_options(
                    isolation_level="REPEATABLE READ",
                    postgresql_readonly=self.read_only,
                )
            self._conn = conn
        return self._conn

    # -- reflection -----------------------------------------------------------

    def _reflected(self) -> sa.MetaData:
        if self._metadata is None:
            metadata = sa.MetaData()
            conn = self._connection()
            if self.dialect == "sqlite":
                declared = self._sqlite_declared_types(conn)

                def column_reflect(
                    inspector: object, table: sa.Table, info: dict[str, Any]
                ) -> None:
                    if declared.get((table.name, info["name"]), "").startswith("UUID"):
                        info["type"] = sa.Uuid()

                sa.event.listen(metadata, "column_reflect", column_reflect)
            elif self.dialect == "mysql" and getattr(
                self.engine.dialect, "is_mariadb", False
            ):
                # MariaDB's JSON is LONGTEXT with a JSON_VALID check: reflect
                # it as JSON, so documents are read and written as on the
                # other engines (and digest the same)
                json_columns = self._mariadb_json_columns(conn)

                def mariadb_json(
                    inspector: object, table: sa.Table, info: dict[str, Any]
                ) -> None:
                    if (table.name, info["name"]) in json_columns:
                        info["type"] = sa.JSON()

                sa.event.listen(metadata, "column_reflect", mariadb_json)
            try:
                metadata.reflect(bind=conn)
            except sa.exc.SQLAlchemyError as e:
                msg = f"cannot reflect the schema of {self.url}: {e}"
                raise RecordsError(msg) from e
            self._metadata = metadata
        return self._metadata

    @staticmethod
    def _mariadb_json_columns(conn: sa.Connection) -> set[tuple[str, str]]:
        rows = conn.exec_driver_sql(
            "SELECT TABLE_NAME, CONSTRAINT_NAME, CHECK_CLAUSE "
            "FROM information_schema.CHECK_CONSTRAINTS "
            "WHERE CONSTRAINT_SCHEMA = DATABASE()"
        ).all()
        out: set[tuple[str, str]] = set()
        for table, name, clause in rows:
            m = re.fullmatch(r"\s*json_valid\(`([^`]+)`\)\s*", str(clause), re.I)
            if m is not None and m[1] == name:
                out.add((str(table), m[1]))
        return out

    @staticmethod
    def _sqlite_declared_types(conn: sa.Connection) -> dict[tuple[str, str], str]:
        out: dict[tuple[str, str], str] = {}
        names = conn.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
        ).scalars()
        for table in list(names):
            quoted = '"' + str(table).replace('"', '""') + '"'
            for row in conn.exec_driver_sql(f"PRAGMA table_info({quoted})"):
                out[str(table), str(row[1])] = str(row[2] or "").upper()
        return out

    def _triggers(self) -> list[TriggerInfo]:
        conn = self._connection()
        if self.dialect == "sqlite":
            rows = conn.exec_driver_sql(
                "SELECT name, tbl_name, sql FROM sqlite_master "
                "WHERE type = 'trigger' ORDER BY name"
            ).all()
        elif self.dialect == "postgresql":
            rows = conn.exec_driver_sql(
                "SELECT t.tgname, c.relname, pg_get_triggerdef(t.oid) "
                "FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE NOT t.tgisinternal AND n.nspname = current_schema() "
                "ORDER BY t.tgname"
            ).all()
        else:
            return []
        return [_parse_trigger(str(n), str(t), str(s or "")) for n, t, s in rows]

    def table(self, name: str) -> sa.Table:
        """The reflected SQLAlchemy ``Table`` called ``name``.

        Raises:
            RecordsError: The database has no such table.
        """
        metadata = self._reflected()
        try:
            return metadata.tables[name]
        except KeyError:
            msg = f"no table {name!r} in {self.url}"
            raise RecordsError(msg, table=name) from None

    def reflect(self) -> SchemaInfo:
        """The schema: tables in dependency order, keys, constraints, triggers.

        Reflected once per object (a later schema change is not seen).

        Raises:
            RecordsError: The database cannot be reached or reflected.
        """
        if self._schema is not None:
            return self._schema
        metadata = self._reflected()
        triggers: dict[str, list[TriggerInfo]] = {}
        for tr in self._triggers():
            triggers.setdefault(tr.table, []).append(tr)
        ordered = [
            t
            for t, _ in sort_tables_and_constraints(  # type: ignore[no-untyped-call]
                list(metadata.tables.values())
            )
            if t is not None
        ]
        self._schema = SchemaInfo(
            dialect=self.dialect,
            tables=tuple(_table_info(t, triggers.get(t.name, ())) for t in ordered),
        )
        return self._schema

    # -- reading --------------------------------------------------------------

    def _pk(self, table: sa.Table) -> list[sa.Column[Any]]:
        pk = list(table.primary_key.columns)
        if not pk:
            msg = (
                f"table {table.name!r} in {self.url} has no primary key; "
                "rows are streamed in primary-key order"
            )
            raise RecordsError(msg, table=table.name)
        return pk

    def iter_rows(
        self,
        table: str,
        *,
        where: sa.ColumnElement[bool] | None = None,
        keys: Iterable[tuple[Any, ...]] | None = None,
        columns: Sequence[str] | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> Iterator[Row]:
        """Rows of ``table`` in primary-key order, ``batch_size`` at a time.

        Memory is bounded by one batch: the whole table (or ``where``'s
        selection) is read by keyset pagination (``WHERE pk > last ORDER BY
        pk LIMIT n``), never by OFFSET and never all at once. With ``keys``,
        only the rows with those primary keys are read, in Python's order
        of the keys, one ``IN`` query per batch (the keys are held in
        memory, the rows are not).

        Args:
            table: The table's name.
            where: A SQLAlchemy condition on
                [table(name)][carmigrate.records.Database.table]'s columns.
            keys: Primary-key tuples to read instead of the whole table
                (combined with ``where`` if both are given).
            columns: The columns to read (the primary key is always read);
                every column by default.
            batch_size: Rows per query (at least 1).

        Raises:
            RecordsError: No such table or column, no primary key, a bad
                batch size, or the database failed.
        """
        if batch_size < 1:
            msg = f"batch_size must be at least 1, not {batch_size}"
            raise RecordsError(msg, table=table)
        t = self.table(table)
        pk = self._pk(t)
        selected = self._columns(t, columns, pk)
        conn = self._connection()
        if keys is not None:
            ordered = sorted(set(keys))
            for start in range(0, len(ordered), batch_size):
                chunk = ordered[start : start + batch_size]
                query = sa.select(*selected).where(_in(pk, chunk))
                if where is not None:
                    query = query.where(where)
                rows = [dict(r) for r in self._run(conn, query, table).mappings()]
                rows.sort(key=lambda r: tuple(r[c.name] for c in pk))
                yield from rows
            return
        last: tuple[Any, ...] | None = None
        while True:
            query = sa.select(*selected).order_by(*pk).limit(batch_size)
            if where is not None:
                query = query.where(where)
            if last is not None:
                query = query.where(
                    pk[0] > last[0] if len(pk) == 1 else sa.tuple_(*pk) > last
                )
            rows = [dict(r) for r in self._run(conn, query, table).mappings()]
            yield from rows
            if len(rows) < batch_size:
                return
            last = tuple(rows[-1][c.name] for c in pk)

    def copy_lines(
        self,
        table: str,
        columns: Sequence[str] | None = None,
        *,
        keys: Iterable[Any] | None = None,
    ) -> Generator[bytes, None, None] | None:
        """Rows of ``table`` as PostgreSQL ``COPY`` text lines in primary-key order, or ``None``.

        ``None`` unless the database is PostgreSQL through psycopg 3 and
        ``table`` has a one-column primary key. The lines are read in this
        object's snapshot with the settings of
        [COPY_SETTINGS][carmigrate.records.lowlevel.COPY_SETTINGS], so the same
        rows give the same bytes whenever they are read (see
        [carmigrate.records.lowlevel][]).

        Args:
            table: The table's name.
            columns: The columns, in field order; every column by default.
            keys: Primary-key values (not tuples) of the rows to read; the
                whole table by default.

        Raises:
            RecordsError: No such table or column, or the database failed.
        """
        from carmigrate.records._pgcopy import apply_copy_settings
        from carmigrate.records._pgcopy import copy_lines as lines

        t = self.table(table)
        pk = self._pk(t)
        if self.dialect != "postgresql" or self.engine.dialect.driver != "psycopg":
            return None
        if len(pk) != 1:
            return None
        names = [c.name for c in self._columns(t, columns, [])]
        conn = self._connection()
        driver = conn.connection.driver_connection
        assert driver is not None
        try:
            if not self._copy_ready:
                apply_copy_settings(driver)
                self._copy_ready = True
        except Exception as e:  # pragma: no cover - server gone
            msg = f"reading table {table!r} of {self.url} failed: {e}"
            raise RecordsError(msg, table=table) from e
        ordered = None if keys is None else sorted(set(keys))
        return _copy_errors(
            lines(driver, table, names, order_by=pk[0].name, keys=ordered),
            self.url,
            table,
        )

    def select_in(
        self,
        table: str,
        columns: Sequence[str],
        values: Iterable[tuple[Any, ...]],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> Iterator[Row]:
        """Rows of ``table`` whose ``columns`` equal one of the ``values`` tuples.

        One ``IN`` query per ``batch_size`` values; rows come in no
        particular order. Used to follow foreign keys and to look up keys at
        a destination.

        Raises:
            RecordsError: No such table or column, or the database failed.
        """
        t = self.table(table)
        cols = [self._column(t, c) for c in columns]
        conn = self._connection()
        pending = sorted({tuple(v) for v in values if None not in v}, key=repr)
        for start in range(0, len(pending), batch_size):
            chunk = pending[start : start + batch_size]
            query = sa.select(t).where(_in(cols, chunk))
            for r in self._run(conn, query, table).mappings():
                yield dict(r)

    def max_value(self, table: str, column: str) -> Any:
        """The largest value of ``column`` in ``table``, or ``None`` if it is empty.

        Raises:
            RecordsError: No such table or column, or the database failed.
        """
        t = self.table(table)
        query = sa.select(sa.func.max(self._column(t, column)))
        return self._run(self._connection(), query, table).scalar()

    def count(self, table: str) -> int:
        """How many rows ``table`` has.

        Raises:
            RecordsError: No such table, or the database failed.
        """
        t = self.table(table)
        query = sa.select(sa.func.count()).select_from(t)
        return int(self._run(self._connection(), query, table).scalar() or 0)

    def _column(self, t: sa.Table, name: str) -> sa.Column[Any]:
        try:
            return t.columns[name]
        except KeyError:
            msg = f"table {t.name!r} in {self.url} has no column {name!r}"
            raise RecordsError(msg, table=t.name) from None

    def _columns(
        self, t: sa.Table, names: Sequence[str] | None, pk: list[sa.Column[Any]]
    ) -> list[sa.Column[Any]]:
        if names is None:
            return list(t.columns)
        chosen = [self._column(t, n) for n in names]
        return chosen + [c for c in pk if c not in chosen]

    def _run(
        self, conn: sa.Connection, query: sa.Executable, table: str
    ) -> sa.CursorResult[Any]:
        try:
            return conn.execute(query)
        except sa.exc.SQLAlchemyError as e:
            msg = f"reading table {table!r} of {self.url} failed: {e}"
            raise RecordsError(msg, table=table) from e


def _copy_errors(
    lines: Iterator[bytes], url: str, table: str
) -> Generator[bytes, None, None]:
    import psycopg

    try:
        yield from lines
    except psycopg.Error as e:
        msg = f"reading table {table!r} of {url} failed: {e}"
        raise RecordsError(msg, table=table) from e


def _in(cols: Sequence[sa.Column[Any]], values: Sequence[tuple[Any, ...]]) -> Any:
    if len(cols) == 1:
        return cols[0].in_([v[0] for v in values])
    return sa.tuple_(*cols).in_(values)


def _table_info(t: sa.Table, triggers: Iterable[TriggerInfo]) -> TableInfo:
    columns = tuple(
        ColumnInfo(name=c.name, type=_type_name(c.type), nullable=bool(c.nullable))
        for c in t.columns
    )
    nullable = {c.name: c.nullable for c in columns}
    fks = tuple(
        ForeignKeyInfo(
            name=str(fk.name) if fk.name else None,
            columns=tuple(fk.column_keys),
            referred_table=fk.referred_table.name,
            referred_columns=tuple(e.column.name for e in fk.elements),
            deferrable=bool(fk.deferrable),
            nullable=all(nullable[c] for c in fk.column_keys),
        )
        for fk in sorted(t.foreign_key_constraints, key=_fk_order)
    )
    pk = tuple(c.name for c in t.primary_key.columns)
    seen: set[tuple[str, ...]] = set()
    unique: list[UniqueInfo] = []
    candidates: list[tuple[str | None, tuple[str, ...]]] = [
        (str(c.name) if c.name else None, tuple(col.name for col in c.columns))
        for c in t.constraints
        if isinstance(c, sa.UniqueConstraint)
    ]
    candidates += [
        (str(i.name) if i.name else None, tuple(col.name for col in i.columns))
        for i in t.indexes
        if i.unique
    ]
    for name, cols in sorted(candidates, key=lambda nc: (nc[1], nc[0] or "")):
        if cols and cols != pk and cols not in seen:
            seen.add(cols)
            unique.append(UniqueInfo(name=name, columns=cols))
    return TableInfo(
        name=t.name,
        columns=columns,
        primary_key=pk,
        foreign_keys=fks,
        unique=tuple(unique),
        triggers=tuple(triggers),
    )


def _fk_order(fk: sa.ForeignKeyConstraint) -> tuple[str, ...]:
    return (fk.referred_table.name, *fk.column_keys)


def _type_name(t: sa.types.TypeEngine[Any]) -> str:
    try:
        return str(t.compile())
    except sa.exc.SQLAlchemyError:
        return type(t).__name__.upper()


def open_database(url: str | sa.URL, *, read_only: bool = True) -> Database:
    """Open the database at ``url`` for reading; see [Database][carmigrate.records.Database].

    Nothing is connected until the first read.

    Raises:
        RecordsError: Not a SQLAlchemy URL, or its driver is not installed.
    """
    return Database(url, read_only=read_only)
