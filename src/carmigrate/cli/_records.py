"""``carmigrate records``: plan moving rows between databases, run, resume and roll back the plan.

``carmigrate.records`` (and SQLAlchemy) are imported only when a
``records`` command runs, so other commands do not pay for them.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from carmigrate.cli._output import fail

if TYPE_CHECKING:
    import argparse

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``records`` command group."""
    group = subparsers.add_parser(
        "records",
        help="plan moving database rows (ID maps, merges, dependency order)",
        description=(
            "Plan moving rows from one database to another with ID rules, merges on "
            "natural keys and pre-flight findings, as a reviewable plan file; show a "
            "plan; export its ID map. Needs carmigrate[records] (SQLAlchemy, psycopg)."
        ),
    )
    cmds = group.add_subparsers(
        dest="records_command", metavar="COMMAND", required=True
    )

    p = cmds.add_parser(
        "plan",
        help="plan moving SRC_URL's rows into DST_URL; write the plan, read nothing else",
        description=(
            "Reflect both databases, apply the mapping file (contexts, ID rules, natural "
            "keys, implicit references, finding policies) and write the record plan. "
            "Writes nothing to either database. Exit 0 when the plan has no conflicts, "
            "1 when findings whose policy is 'fail' left rows in conflict (the plan is "
            "written either way, to review), 2 on bad input."
        ),
    )
    p.add_argument("source", metavar="SRC_URL", help="SQLAlchemy URL of the source")
    p.add_argument(
        "destination", metavar="DST_URL", help="SQLAlchemy URL of the destination"
    )
    p.add_argument("--mapping", metavar="TOML", help="the mapping file")
    p.add_argument(
        "-o", "--output", required=True, metavar="PLAN", help="record plan to write"
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(handler=_plan)

    p = cmds.add_parser("show", help="summarise a record plan")
    p.add_argument("plan", metavar="PLAN", help="a record plan file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_show)

    p = cmds.add_parser(
        "id-map",
        help="write a record plan's ID map (old id -> new id per table) as JSON Lines or CSV",
    )
    p.add_argument("plan", metavar="PLAN", help="a record plan file")
    p.add_argument(
        "--format", choices=("jsonl", "csv"), default="jsonl", help="default: jsonl"
    )
    p.add_argument(
        "-o", "--output", default="-", metavar="FILE", help="default: standard output"
    )
    p.add_argument(
        "--json", action="store_true", help="print what was written as one JSON object"
    )
    p.set_defaults(handler=_id_map)

    p = cmds.add_parser(
        "run",
        help="execute a record plan stage by stage, or resume it (committed stages are skipped)",
        description=(
            "Execute the record plan: each stage one transaction at the destination, "
            "checked (row counts, digests, foreign keys, unique keys) before it commits, "
            "its checkpoint written to the destination and the ledger. Run it again to "
            "resume after an interruption. Exit 0 when every stage is committed, 1 when "
            "an integrity check failed (that stage was rolled back), 2 on bad input."
        ),
    )
    p.add_argument("plan", metavar="PLAN", help="a record plan file")
    p.add_argument("--ledger", required=True, help="the ledger (SQLite file)")
    p.add_argument(
        "--source", metavar="URL", help="the source's URL (default: the plan's)"
    )
    p.add_argument(
        "--destination",
        metavar="URL",
        help="the destination's URL (default: the plan's)",
    )
    p.add_argument(
        "--batch-size", type=int, default=1000, metavar="N", help="rows per batch"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_run)

    p = cmds.add_parser("status", help="the checkpoint of every stage in a ledger")
    p.add_argument("--ledger", required=True, help="the ledger")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_status)

    p = cmds.add_parser(
        "verify",
        help="re-read every row the committed stages wrote and compare it with their checkpoints",
        description=(
            "Read again every row the committed stages inserted (and those destination "
            "triggers made for them) and compare each with the digest its stage's "
            "checkpoint recorded; reads only. Exit 0 when all match and the ledger "
            "agrees with the destination, 1 otherwise."
        ),
    )
    p.add_argument("--ledger", required=True, help="the ledger")
    p.add_argument(
        "--destination", required=True, metavar="URL", help="the destination's URL"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_verify)

    p = cmds.add_parser(
        "rollback",
        help="undo the last committed stage: delete its rows, restore what it changed",
        description=(
            "Delete exactly the rows the stage inserted (and those destination triggers "
            "made for it), in reverse dependency order, and restore the rows it changed; "
            "refused if any of them changed since (use --force to roll back anyway). "
            "Only the last committed stage can be rolled back."
        ),
    )
    p.add_argument("--ledger", required=True, help="the ledger")
    p.add_argument("--stage", required=True, help="the stage")
    p.add_argument(
        "--destination", required=True, metavar="URL", help="the destination's URL"
    )
    p.add_argument(
        "--force", action="store_true", help="roll back rows that changed since, too"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_rollback)


def _checkpoint(c: Any) -> dict[str, Any]:
    return {
        "stage": c.stage,
        "state": c.state,
        "inserted": c.inserted,
        "merged": c.merged,
        "trigger_rows": c.trigger_rows,
        "adopted": c.adopted,
        "updated": c.updated,
        "repaired": c.repaired,
        "problems": list(c.problems),
    }


def _records() -> Any:
    try:
        import carmigrate.records as records
    except ImportError as e:
        raise _Missing(str(e)) from e
    return records


class _Missing(Exception):
    pass


def _summary(plan: Any) -> dict[str, Any]:
    data: dict[str, Any] = plan.summary().to_dict()
    data["plan_id"] = plan.id
    data["ok"] = plan.ok
    data["conflicts"] = len(plan.conflicts)
    return data


def _guard(args: argparse.Namespace, fn: Any) -> int:
    from carmigrate.errors import CarmigrateError

    try:
        code: int = fn()
    except _Missing as e:
        return fail(
            args, f"{e} (pip install 'carmigrate[records]')", kind="ImportError"
        )
    except (CarmigrateError, OSError, ValueError) as e:
        return fail(args, str(e), kind=type(e).__name__)
    return code


def _plan(args: argparse.Namespace) -> int:
    def run() -> int:
        records = _records()
        mapping = (
            records.load_mapping(args.mapping)
            if args.mapping
            else records.RecordMapping()
        )
        with (
            records.open_database(args.source) as src,
            records.open_database(args.destination) as dst,
        ):
            plan = records.plan_records(src, dst, mapping)
        records.save_record_plan(plan, args.output)
        if args.json:
            print(json.dumps({**_summary(plan), "path": args.output}, sort_keys=True))
        else:
            print(plan.summary().to_markdown())
            print(f"Record plan written to {args.output}.")
            if not plan.ok:
                print(
                    f"{len(plan.conflicts)} rows are in conflict (findings whose policy "
                    "is 'fail'): review them, change the policies, and plan again."
                )
        return 0 if plan.ok else 1

    return _guard(args, run)


def _show(args: argparse.Namespace) -> int:
    def run() -> int:
        plan = _records().load_record_plan(args.plan)
        if args.json:
            print(json.dumps(_summary(plan), sort_keys=True))
        else:
            print(plan.summary().to_markdown())
        return 0 if plan.ok else 1

    return _guard(args, run)


def _id_map(args: argparse.Namespace) -> int:
    def run() -> int:
        records = _records()
        plan = records.load_record_plan(args.plan)
        to_stdout = args.output == "-"
        if to_stdout and args.json:
            return fail(args, "--json needs -o FILE (the ID map itself goes to -)")
        out = sys.stdout if to_stdout else args.output
        count = records.write_id_map(plan, out, format=args.format)
        if args.json:
            print(
                json.dumps(
                    {"path": args.output, "format": args.format, "entries": count},
                    sort_keys=True,
                )
            )
        elif not to_stdout:
            print(f"wrote {count} ID map entries to {args.output} ({args.format})")
        return 0

    return _guard(args, run)


def _run(args: argparse.Namespace) -> int:
    def run() -> int:
        from carmigrate.errors import RecordsIntegrityError
        from carmigrate.migrate import Ledger, execute_records

        plan = _records().load_record_plan(args.plan)
        with Ledger(args.ledger) as ledger:
            try:
                result = execute_records(
                    plan,
                    ledger,
                    source=args.source or plan.source,
                    destination=args.destination or plan.destination,
                    batch_size=args.batch_size,
                )
            except RecordsIntegrityError as e:
                if args.json:
                    print(
                        json.dumps(
                            {
                                "plan_id": plan.id,
                                "failed_stage": e.stage,
                                "problems": list(e.problems),
                            },
                            sort_keys=True,
                        )
                    )
                else:
                    print(
                        f"stage {e.stage!r} failed its integrity checks, rolled back:"
                    )
                    for problem in e.problems:
                        print(f"  {problem}")
                return 1
        if args.json:
            print(
                json.dumps(
                    {
                        "plan_id": result.plan_id,
                        "executed": [_checkpoint(c) for c in result.executed],
                        "already": list(result.already),
                        "repaired": list(result.repaired),
                    },
                    sort_keys=True,
                )
            )
        else:
            for name in result.already:
                print(f"stage {name}: committed before (skipped)")
            for c in result.executed:
                print(
                    f"stage {c.stage}: {c.state}; {c.inserted} inserted, {c.merged} "
                    f"merged, {c.trigger_rows} trigger rows kept, {c.adopted} adopted"
                    + (" (repaired the ledger)" if c.repaired else "")
                )
        return 0

    return _guard(args, run)


def _status(args: argparse.Namespace) -> int:
    def run() -> int:
        from carmigrate.cli._migrate import _open_ledger
        from carmigrate.migrate import record_checkpoints

        with _open_ledger(args.ledger, readonly=True) as ledger:
            checkpoints = record_checkpoints(ledger)
        if args.json:
            print(json.dumps({"stages": [_checkpoint(c) for c in checkpoints]}))
        elif not checkpoints:
            print("no stage has run yet")
        else:
            for c in checkpoints:
                print(
                    f"stage {c.stage}: {c.state}; {c.inserted} inserted, {c.merged} merged"
                )
        return 0

    return _guard(args, run)


def _verify(args: argparse.Namespace) -> int:
    def run() -> int:
        from carmigrate.cli._migrate import _open_ledger
        from carmigrate.migrate import verify_records

        with _open_ledger(args.ledger, readonly=True) as ledger:
            result = verify_records(ledger, args.destination)
        if args.json:
            print(
                json.dumps(
                    {
                        "ok": result.ok,
                        "stages": list(result.stages),
                        "checked": result.checked,
                        "mismatches": list(result.mismatches),
                        "disagreements": list(result.disagreements),
                    },
                    sort_keys=True,
                )
            )
        else:
            print(
                f"checked {result.checked} rows of {len(result.stages)} committed "
                f"stages: {len(result.mismatches)} differ"
            )
            for m in result.mismatches[:20]:
                print(f"  {m}")
            for name in result.disagreements:
                print(f"  the ledger and the destination disagree on stage {name}")
        return 0 if result.ok else 1

    return _guard(args, run)


def _rollback(args: argparse.Namespace) -> int:
    def run() -> int:
        from carmigrate.errors import RollbackRefused
        from carmigrate.migrate import Ledger, rollback_records

        with Ledger(args.ledger) as ledger:
            try:
                result = rollback_records(
                    ledger, args.destination, stage=args.stage, force=args.force
                )
            except RollbackRefused as e:
                return fail(args, str(e), code=1, kind="RollbackRefused")
        if args.json:
            print(
                json.dumps(
                    {
                        "stage": result.stage,
                        "deleted": result.deleted,
                        "restored": result.restored,
                        "changed": list(result.changed),
                    },
                    sort_keys=True,
                )
            )
        else:
            print(
                f"stage {result.stage} rolled back: {result.deleted} rows deleted, "
                f"{result.restored} restored"
                + (
                    f", {len(result.changed)} had changed since"
                    if result.changed
                    else ""
                )
            )
        return 0

    return _guard(args, run)
