"""Which rows a record plan covers: a whole database, named contexts, or a closure."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

import attrs

from carmigrate.errors import MappingError, RecordsError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from carmigrate.records._database import Database
    from carmigrate.records._mapping import RecordMapping

__all__ = ["Scope", "Selection"]

Selection = dict[str, frozenset[tuple[Any, ...]] | None]
"""Tables in scope, each with the primary keys of its selected rows (``None``: every row)."""


@attrs.frozen
class Scope:
    """Which source rows a plan covers. Make one with the class methods.

    Attributes:
        kind: ``"database"``, ``"contexts"`` or ``"closure"``.
        contexts: For ``contexts``: the names of the mapping's contexts.
        table: For ``closure``: the seed rows' table.
        keys: For ``closure``: the seed rows' primary keys.
        stop_tables: For ``closure``: stop tables besides the mapping's.
    """

    kind: str
    contexts: tuple[str, ...] = ()
    table: str | None = None
    keys: tuple[tuple[Any, ...], ...] = ()
    stop_tables: tuple[str, ...] = ()

    @classmethod
    def database(cls) -> Scope:
        """Every row of every table."""
        return cls(kind="database")

    @classmethod
    def of_contexts(cls, *names: str) -> Scope:
        """Every row of the tables of the mapping's contexts ``names``."""
        return cls(kind="contexts", contexts=names)

    @classmethod
    def closure(
        cls, table: str, keys: Iterable[Any], *, stop_tables: Iterable[str] = ()
    ) -> Scope:
        """The seed rows and every row reached from them through foreign keys.

        From every row reached, the closure follows its foreign keys to the
        rows it references (it needs them); from every row not in a stop
        table, it also follows the foreign keys of other rows that reference
        it. So a stop table's rows (a project's owner, the users' groups)
        come along when needed but lead no further (not to the owner's
        other projects). Stop tables are the mapping's ``stop_tables`` plus
        ``stop_tables``.

        Args:
            table: The seed rows' table.
            keys: Their primary keys: values for a one-column key, tuples
                otherwise.
            stop_tables: More stop tables.
        """
        seeds = tuple(k if isinstance(k, tuple) else (k,) for k in keys)
        return cls(
            kind="closure", table=table, keys=seeds, stop_tables=tuple(stop_tables)
        )

    def select(self, db: Database, mapping: RecordMapping) -> Selection:
        """The tables and rows of ``db`` this scope covers.

        Raises:
            MappingError: A context not in the mapping.
            RecordsError: A table not in ``db``, a seed row that does not
                exist, or the database failed.
        """
        schema = db.reflect()
        if self.kind == "database":
            return {t.name: None for t in schema.tables}
        if self.kind == "contexts":
            known = {c.name: c for c in mapping.contexts}
            out: Selection = {}
            for name in self.contexts:
                if name not in known:
                    msg = f"no context {name!r} in the mapping"
                    raise MappingError(msg, path=mapping.source, key="contexts")
                for t in known[name].tables:
                    schema.table(t)
                    out[t] = None
            return out
        if self.kind != "closure" or self.table is None:
            msg = f"unknown scope kind {self.kind!r}"
            raise RecordsError(msg)
        return _closure(
            db, self.table, self.keys, {*mapping.stop_tables, *self.stop_tables}
        )


def _closure(
    db: Database, table: str, seeds: tuple[tuple[Any, ...], ...], stop: set[str]
) -> Selection:
    schema = db.reflect()
    pk_of = {t.name: t.primary_key for t in schema.tables}
    incoming = defaultdict(list)
    for t in schema.tables:
        for fk in t.foreign_keys:
            incoming[fk.referred_table].append((t.name, fk))
    seed_table = schema.table(table)
    if not seed_table.primary_key:
        msg = f"table {table!r} has no primary key to name seed rows by"
        raise RecordsError(msg, table=table)
    found: dict[str, set[tuple[Any, ...]]] = defaultdict(set)
    frontier: dict[str, set[tuple[Any, ...]]] = {table: set(seeds)}
    present = {
        tuple(r[c] for c in seed_table.primary_key)
        for r in db.iter_rows(table, keys=seeds)
    }
    missing = set(seeds) - present
    if missing:
        msg = f"no row of {table!r} has the key {sorted(missing, key=repr)[0]!r}"
        raise RecordsError(msg, table=table)
    found[table] |= set(seeds)
    while frontier:
        wanted: dict[tuple[str, tuple[str, ...]], set[tuple[Any, ...]]] = defaultdict(
            set
        )
        for name, keys in frontier.items():
            info = schema.table(name)
            for row in db.iter_rows(name, keys=keys):
                for fk in info.foreign_keys:
                    value = tuple(row[c] for c in fk.columns)
                    if None not in value:
                        wanted[fk.referred_table, fk.referred_columns].add(value)
                if name in stop:
                    continue
                for child, fk in incoming[name]:
                    value = tuple(row[c] for c in fk.referred_columns)
                    if None not in value:
                        wanted[child, fk.columns].add(value)
        frontier = defaultdict(set)
        for (name, columns), values in wanted.items():
            pk = pk_of[name]
            if not pk:
                msg = f"table {name!r} has no primary key; a closure cannot include its rows"
                raise RecordsError(msg, table=name)
            for row in db.select_in(name, columns, values):
                key = tuple(row[c] for c in pk)
                if key not in found[name]:
                    found[name].add(key)
                    frontier[name].add(key)
    return {name: frozenset(keys) for name, keys in found.items() if keys}
