"""``carmigrate records``: plan moving rows between databases, review the plan, export its ID map.

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
