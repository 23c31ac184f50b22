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

from typing import TYPE_CHECKING

from carmigrate._lazy import lazy_names

if TYPE_CHECKING:
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
    from carmigrate.migrate._verify import (
        RollbackResult,
        VerifyReport,
        rollback,
        verify,
    )

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

# Names load from their submodules on first use (PEP 562): importing this
# package costs nothing until one is used, so the command line starts fast.
_SOURCES: dict[str, str] = {
    "Action": "carmigrate.migrate._model",
    "Check": "carmigrate.migrate._model",
    "CohortRule": "carmigrate.migrate._model",
    "DEFAULT_RUN_SIZE": "carmigrate.migrate._listing",
    "DiffEntry": "carmigrate.migrate._diff",
    "Event": "carmigrate.migrate._events",
    "EventKind": "carmigrate.migrate._events",
    "FORMAT_VERSION": "carmigrate.migrate._model",
    "IdKind": "carmigrate.migrate._model",
    "IdRule": "carmigrate.migrate._model",
    "ItemOutcome": "carmigrate.migrate._model",
    "ItemRecord": "carmigrate.migrate._ledger",
    "ItemState": "carmigrate.migrate._model",
    "JsonLinesReporter": "carmigrate.migrate._events",
    "Ledger": "carmigrate.migrate._ledger",
    "LedgerBatch": "carmigrate.migrate._ledger",
    "Limits": "carmigrate.migrate._model",
    "ListingEntry": "carmigrate.migrate._listing",
    "MARKER_TABLE": "carmigrate.migrate._records",
    "MemberRecord": "carmigrate.migrate._units",
    "MemberState": "carmigrate.migrate._units",
    "Overwrite": "carmigrate.migrate._model",
    "Plan": "carmigrate.migrate._plan",
    "PlanHeader": "carmigrate.migrate._model",
    "PlanItem": "carmigrate.migrate._model",
    "PlanSummary": "carmigrate.migrate._render",
    "RecordRollbackResult": "carmigrate.migrate._records",
    "RecordRunResult": "carmigrate.migrate._records",
    "RecordVerifyResult": "carmigrate.migrate._records_verify",
    "Report": "carmigrate.migrate._report",
    "ReportEntry": "carmigrate.migrate._report",
    "Reporter": "carmigrate.migrate._events",
    "RollbackResult": "carmigrate.migrate._verify",
    "RoundPlan": "carmigrate.migrate._units",
    "RoundRecord": "carmigrate.migrate._units",
    "RunRecord": "carmigrate.migrate._ledger",
    "RunResult": "carmigrate.migrate._executor",
    "STAGE_UNIT_KIND": "carmigrate.migrate._records",
    "Stage": "carmigrate.migrate._model",
    "StageCheckpoint": "carmigrate.migrate._records",
    "StageTotal": "carmigrate.migrate._model",
    "Status": "carmigrate.migrate._report",
    "StoreOptions": "carmigrate.migrate._executor",
    "TqdmReporter": "carmigrate.migrate._events",
    "TransferPolicy": "carmigrate.migrate._model",
    "Transition": "carmigrate.migrate._ledger",
    "Unit": "carmigrate.migrate._units",
    "UnitRecord": "carmigrate.migrate._units",
    "Verdict": "carmigrate.migrate._units",
    "VerificationPolicy": "carmigrate.migrate._model",
    "VerifyReport": "carmigrate.migrate._verify",
    "check_sorted": "carmigrate.migrate._listing",
    "compare": "carmigrate.migrate._diff",
    "diff": "carmigrate.migrate._diff",
    "execute": "carmigrate.migrate._executor",
    "execute_records": "carmigrate.migrate._records",
    "external_sort": "carmigrate.migrate._listing",
    "iter_sorted_listing": "carmigrate.migrate._listing",
    "key_sha256": "carmigrate.migrate._transfer",
    "load_plan": "carmigrate.migrate._plan",
    "plan": "carmigrate.migrate._planner",
    "record_checkpoints": "carmigrate.migrate._records",
    "redact_url": "carmigrate.migrate._plan",
    "report": "carmigrate.migrate._report",
    "resume": "carmigrate.migrate._executor",
    "rollback": "carmigrate.migrate._verify",
    "rollback_records": "carmigrate.migrate._records",
    "save_plan": "carmigrate.migrate._plan",
    "serde": "carmigrate.migrate.serde",
    "sort_listing": "carmigrate.migrate._listing",
    "status": "carmigrate.migrate._report",
    "store_bag_source": "carmigrate.migrate._bags",
    "store_fetch_roots": "carmigrate.migrate._bags",
    "to_entries": "carmigrate.migrate._listing",
    "verify": "carmigrate.migrate._verify",
    "verify_records": "carmigrate.migrate._records_verify",
}


if not TYPE_CHECKING:  # type checkers see the imports above instead
    __getattr__, __dir__ = lazy_names(__name__, _SOURCES)
