"""What a database holds: tables, keys, constraints and triggers, as values."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from carmigrate.errors import RecordsError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "ColumnInfo",
    "ForeignKeyInfo",
    "SchemaInfo",
    "TableInfo",
    "TriggerInfo",
    "UniqueInfo",
]


@attrs.frozen
class ColumnInfo:
    """One column as reflected.

    Attributes:
        name: The column's name.
        type: The SQL type as SQLAlchemy names it for the dialect
            (``INTEGER``, ``UUID``, ``JSON``, ``VARCHAR(80)``).
        nullable: Whether it accepts NULL.
    """

    name: str
    type: str
    nullable: bool


@attrs.frozen
class ForeignKeyInfo:
    """A foreign key: ``columns`` of the owning table reference ``referred_columns``.

    Attributes:
        name: The constraint's name, or ``None`` when the database gave none.
        columns: The referencing columns, in constraint order.
        referred_table: The referenced table.
        referred_columns: The referenced columns, paired with ``columns``.
        deferrable: Whether the constraint can be checked at commit
            (PostgreSQL ``DEFERRABLE``).
        nullable: Whether every referencing column accepts NULL.
    """

    name: str | None
    columns: tuple[str, ...]
    referred_table: str
    referred_columns: tuple[str, ...]
    deferrable: bool = False
    nullable: bool = False


@attrs.frozen
class UniqueInfo:
    """A unique constraint or unique index (the primary key is not one).

    Attributes:
        name: The constraint's or index's name, if any.
        columns: The columns whose values are unique together.
    """

    name: str | None
    columns: tuple[str, ...]


@attrs.frozen
class TriggerInfo:
    """A trigger, read from the dialect's catalog.

    Attributes:
        name: The trigger's name.
        table: The table it is on.
        timing: ``BEFORE``, ``AFTER`` or ``INSTEAD OF``.
        events: The events it fires on (``INSERT``, ``UPDATE``, ``DELETE``,
            ``TRUNCATE``), upper case.
        definition: Its SQL as the catalog gives it (``sqlite_master.sql``,
            ``pg_get_triggerdef``).
    """

    name: str
    table: str
    timing: str
    events: tuple[str, ...]
    definition: str


@attrs.frozen
class TableInfo:
    """A table: columns, primary key, foreign keys, unique constraints, triggers.

    Attributes:
        name: The table's name.
        columns: Its columns in table order.
        primary_key: The primary key's columns (empty when it has none).
        foreign_keys: Its foreign keys.
        unique: Its unique constraints and unique indexes.
        triggers: The triggers on it.
    """

    name: str
    columns: tuple[ColumnInfo, ...]
    primary_key: tuple[str, ...]
    foreign_keys: tuple[ForeignKeyInfo, ...] = ()
    unique: tuple[UniqueInfo, ...] = ()
    triggers: tuple[TriggerInfo, ...] = ()

    @property
    def column_names(self) -> tuple[str, ...]:
        """The columns' names in table order."""
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> ColumnInfo:
        """The column called ``name``.

        Raises:
            RecordsError: The table has no such column.
        """
        for c in self.columns:
            if c.name == name:
                return c
        msg = f"table {self.name!r} has no column {name!r}"
        raise RecordsError(msg, table=self.name)


@attrs.frozen
class SchemaInfo:
    """The reflected schema of one database.

    Attributes:
        dialect: SQLAlchemy's dialect name (``sqlite``, ``postgresql``, ...).
        tables: Every table, in dependency order (referenced tables first,
            cycles broken as SQLAlchemy's ``sort_tables`` breaks them).
    """

    dialect: str
    tables: tuple[TableInfo, ...]

    def __iter__(self) -> Iterator[TableInfo]:
        return iter(self.tables)

    def __contains__(self, name: object) -> bool:
        return any(t.name == name for t in self.tables)

    @property
    def triggers(self) -> tuple[TriggerInfo, ...]:
        """Every trigger of every table."""
        return tuple(tr for t in self.tables for tr in t.triggers)

    def table(self, name: str) -> TableInfo:
        """The table called ``name``.

        Raises:
            RecordsError: The database has no such table.
        """
        for t in self.tables:
            if t.name == name:
                return t
        msg = f"no table {name!r} in the {self.dialect} database"
        raise RecordsError(msg, table=name)
