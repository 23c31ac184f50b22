"""Pieces of the engine for those who extend it, not for everyday use.

In the spirit of ``trio.lowlevel``: what a migration's author needs is in
[carmigrate.migrate][]; what someone extending the engine's own values needs
(declaring a new item field, reading the ledger's schema) is here.

- [column][carmigrate.migrate.lowlevel.column] declares an attrs field of an
  item value as a ledger column and a plan-line key;
  [Column][carmigrate.migrate.lowlevel.Column],
  [ColumnKind][carmigrate.migrate.lowlevel.ColumnKind] and
  [Record][carmigrate.migrate.lowlevel.Record] say how it is stored and when
  an outcome sets it;
- [flat_columns][carmigrate.migrate.lowlevel.flat_columns] gives the
  resolved columns of a declared class (the ledger's table is
  ``flat_columns(ItemRecord)``);
- [outcome_fields][carmigrate.migrate.lowlevel.outcome_fields] maps an
  outcome to the ledger fields a recorded state change sets;
- [SCHEMA_VERSION][carmigrate.migrate.lowlevel.SCHEMA_VERSION] is the
  ledger schema this version writes (older ledgers are upgraded in place).
"""

from carmigrate.migrate._ledger import SCHEMA_VERSION, outcome_fields
from carmigrate.migrate._schema import (
    Column,
    ColumnKind,
    FlatColumn,
    Record,
    column,
    flat_columns,
)

__all__ = [
    "Column",
    "ColumnKind",
    "FlatColumn",
    "Record",
    "SCHEMA_VERSION",
    "column",
    "flat_columns",
    "outcome_fields",
]
