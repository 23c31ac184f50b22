"""Where rows live: reflect relational databases, stream rows, and plan moving them.

Built on SQLAlchemy Core (the optional ``records`` extra: ``pip install
'carmigrate[records]'``); importing this package needs it, ``import
carmigrate`` does not.

- [open_database][carmigrate.records.open_database] opens any SQLAlchemy
  URL (SQLite files are the embedded default; PostgreSQL through
  ``postgresql+psycopg://``) for reading;
  [Database.reflect][carmigrate.records.Database.reflect] gives tables,
  primary keys, foreign keys, unique constraints and triggers, and
  [Database.iter_rows][carmigrate.records.Database.iter_rows] streams rows
  in primary-key order with bounded memory;
  [row_digest][carmigrate.records.row_digest] is the canonical per-row
  digest, the same on every engine.
- A [Scope][carmigrate.records.Scope] says which rows: a whole database,
  named contexts, or the closure of some rows through foreign keys.
- A [RecordMapping][carmigrate.records.RecordMapping] (usually a TOML file,
  [load_mapping][carmigrate.records.load_mapping]) holds contexts, ID
  rules, natural keys, implicit references, stop tables and finding
  policies.
- [plan_records][carmigrate.records.plan_records] computes a
  [RecordPlan][carmigrate.records.RecordPlan], writing nothing: each row's
  action, the ID map, the pre-flight findings, the stages (with foreign-key
  cycles broken) and a summary; it is saved and loaded as JSON Lines.

A record plan is executed (stage by stage, with checkpoints, resume and
rollback) by ``carmigrate.migrate.execute_records`` and
``carmigrate.migrate.rollback_records``.
"""

from carmigrate.records._database import (
    DEFAULT_BATCH_SIZE,
    Database,
    Row,
    open_database,
)
from carmigrate.records._export import ID_MAP_FORMATS, write_id_map
from carmigrate.records._mapping import (
    ALLOWED_POLICIES,
    MAPPING_VERSION,
    Context,
    FindingKind,
    FindingPolicy,
    JsonReference,
    KeyRule,
    KeyRuleKind,
    NaturalKey,
    RecordMapping,
    Resolution,
    TemplateReference,
    load_mapping,
    parse_mapping,
)
from carmigrate.records._plan import (
    PLAN_FORMAT,
    PLAN_VERSION,
    CycleBreak,
    Finding,
    IdMapEntry,
    ObjectKeyChange,
    RecordPlan,
    RecordStage,
    RecordSummary,
    RowAction,
    RowPlan,
    TextFingerprint,
    load_record_plan,
    save_record_plan,
)
from carmigrate.records._planner import plan_records
from carmigrate.records._refs import JsonPath, Template
from carmigrate.records._schema import (
    ColumnInfo,
    ForeignKeyInfo,
    SchemaInfo,
    TableInfo,
    TriggerInfo,
    UniqueInfo,
)
from carmigrate.records._scope import Scope, Selection
from carmigrate.records._values import (
    decode_value,
    encode_value,
    row_digest,
)

__all__ = [
    "ALLOWED_POLICIES",
    "ColumnInfo",
    "Context",
    "CycleBreak",
    "DEFAULT_BATCH_SIZE",
    "Database",
    "Finding",
    "FindingKind",
    "FindingPolicy",
    "ForeignKeyInfo",
    "ID_MAP_FORMATS",
    "IdMapEntry",
    "JsonPath",
    "JsonReference",
    "KeyRule",
    "KeyRuleKind",
    "MAPPING_VERSION",
    "NaturalKey",
    "ObjectKeyChange",
    "PLAN_FORMAT",
    "PLAN_VERSION",
    "RecordMapping",
    "RecordPlan",
    "RecordStage",
    "RecordSummary",
    "Resolution",
    "Row",
    "RowAction",
    "RowPlan",
    "SchemaInfo",
    "Scope",
    "Selection",
    "TableInfo",
    "Template",
    "TemplateReference",
    "TextFingerprint",
    "TriggerInfo",
    "UniqueInfo",
    "decode_value",
    "encode_value",
    "load_mapping",
    "load_record_plan",
    "open_database",
    "parse_mapping",
    "plan_records",
    "row_digest",
    "save_record_plan",
    "write_id_map",
]
