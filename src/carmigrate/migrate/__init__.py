"""Migrations: plan, review, execute in stages, verify, resume, roll back, report.

The engine goes *list → diff → plan → execute → verify*, with a ledger:

- [plan][carmigrate.migrate.plan] lists both stores in key order (sorting
  externally when a store cannot), joins the listings
  ([diff][carmigrate.migrate.diff]) and writes an immutable, content-addressed
  [Plan][carmigrate.migrate.Plan]: one JSON Lines file, header first, one
  line per item, reviewable with ``less`` and summarised by
  [Plan.summary][carmigrate.migrate.Plan.summary];
- [execute][carmigrate.migrate.execute] runs the items on a thread pool or
  any ``concurrent.futures.Executor`` (Dask included), reading each object
  once into an atomic write while hashing and checking it, and records every
  outcome in a [Ledger][carmigrate.migrate.Ledger] (SQLite);
- [resume][carmigrate.migrate.resume] continues from the ledger alone,
  [verify][carmigrate.migrate.verify] re-checks the destination
  independently, [rollback][carmigrate.migrate.rollback] deletes exactly what
  one stage created, and [report][carmigrate.migrate.report] says what was
  carried and what was lost.

See the explanation page "Plans, ledgers and verification" for the model.
"""

from carmigrate.migrate import serde
from carmigrate.migrate._bags import store_bag_source, store_fetch_roots
from carmigrate.migrate._diff import DiffEntry, compare, diff
from carmigrate.migrate._events import (
    Event,
    EventKind,
    JsonLinesReporter,
    Reporter,
    TqdmReporter,
)
from carmigrate.migrate._executor import RunResult, StoreOptions, execute, resume
from carmigrate.migrate._ledger import (
    ItemRecord,
    Ledger,
    LedgerBatch,
    RunRecord,
    Transition,
)
from carmigrate.migrate._listing import (
    DEFAULT_RUN_SIZE,
    ListingEntry,
    check_sorted,
    external_sort,
    iter_sorted_listing,
    sort_listing,
    to_entries,
)
from carmigrate.migrate._model import (
    FORMAT_VERSION,
    Action,
    Check,
    CohortRule,
    IdKind,
    IdRule,
    ItemOutcome,
    ItemState,
    Limits,
    Overwrite,
    PlanHeader,
    PlanItem,
    Stage,
    StageTotal,
    TransferPolicy,
    VerificationPolicy,
)
from carmigrate.migrate._plan import Plan, load_plan, redact_url, save_plan
from carmigrate.migrate._planner import plan
from carmigrate.migrate._records import (
    MARKER_TABLE,
    STAGE_UNIT_KIND,
    RecordRollbackResult,
    RecordRunResult,
    StageCheckpoint,
    execute_records,
    record_checkpoints,
    rollback_records,
)
from carmigrate.migrate._records_verify import RecordVerifyResult, verify_records
from carmigrate.migrate._render import PlanSummary
from carmigrate.migrate._report import Report, ReportEntry, Status, report, status
from carmigrate.migrate._transfer import key_sha256
from carmigrate.migrate._units import (
    MemberRecord,
    MemberState,
    RoundPlan,
    RoundRecord,
    Unit,
    UnitRecord,
    Verdict,
)
from carmigrate.migrate._verify import RollbackResult, VerifyReport, rollback, verify

__all__ = [
    "Action",
    "Check",
    "CohortRule",
    "DEFAULT_RUN_SIZE",
    "DiffEntry",
    "Event",
    "EventKind",
    "FORMAT_VERSION",
    "IdKind",
    "IdRule",
    "ItemOutcome",
    "ItemRecord",
    "ItemState",
    "JsonLinesReporter",
    "Ledger",
    "LedgerBatch",
    "Limits",
    "ListingEntry",
    "MARKER_TABLE",
    "MemberRecord",
    "MemberState",
    "Overwrite",
    "Plan",
    "PlanHeader",
    "PlanItem",
    "PlanSummary",
    "RecordRollbackResult",
    "RecordRunResult",
    "RecordVerifyResult",
    "Report",
    "ReportEntry",
    "Reporter",
    "RollbackResult",
    "RoundPlan",
    "RoundRecord",
    "RunRecord",
    "RunResult",
    "STAGE_UNIT_KIND",
    "Stage",
    "StageCheckpoint",
    "StageTotal",
    "Status",
    "StoreOptions",
    "TqdmReporter",
    "TransferPolicy",
    "Transition",
    "Unit",
    "UnitRecord",
    "Verdict",
    "VerificationPolicy",
    "VerifyReport",
    "check_sorted",
    "compare",
    "diff",
    "execute",
    "execute_records",
    "external_sort",
    "iter_sorted_listing",
    "key_sha256",
    "load_plan",
    "plan",
    "record_checkpoints",
    "redact_url",
    "report",
    "resume",
    "rollback",
    "rollback_records",
    "save_plan",
    "serde",
    "sort_listing",
    "status",
    "store_bag_source",
    "store_fetch_roots",
    "to_entries",
    "verify",
    "verify_records",
]
