"""``carmigrate recipe``: the real migrations (web3.storage → w3up, Filecoin backfill).

A thin front end over [carmigrate.recipes][]. Stores are anything
[open_store][carmigrate.storage.open_store] takes (a path, ``file://``,
``s3://bucket/prefix`` with the usual ``AWS_*`` environment variables, other
fsspec URLs).

Exit codes: 0 success; 1 some uploads or CARs failed (the run went on and
recorded why; run again to retry them); 2 usage errors and inputs that
cannot be processed.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from typing import TYPE_CHECKING, Any

import attrs

from carmigrate.aggregate import (
    POLICIES,
    SPADE_DEAL_SIZE,
    AggregateQueue,
    PackingConstraints,
)
from carmigrate.cli._args import positive_float, positive_int
from carmigrate.errors import CarmigrateError
from carmigrate.migrate import JsonLinesReporter, Limits
from carmigrate.recipes import (
    CLI,
    DEFAULT_LAYOUT,
    BackfillJournal,
    CliOption,
    Recipe,
    W3upLegacyJournal,
    backfill_filecoin,
    get_recipe,
    migrate_w3up_legacy,
    recipe_names,
    run_recipe,
)

if TYPE_CHECKING:
    import argparse

    from carmigrate.migrate import Reporter

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``recipe`` command group."""
    p = subparsers.add_parser(
        "recipe",
        help="the real migrations: web3.storage uploads to w3up, Filecoin backfill",
        description="Recipes built on the migration engine, one per real migration.",
    )
    cmds = p.add_subparsers(dest="recipe_command", metavar="RECIPE", required=True)
    _add_w3up(cmds)
    _add_backfill(cmds)
    _add_report(cmds)
    hand_written = {"w3up-legacy", "filecoin-backfill", "filecoin-report"}
    for name in recipe_names():
        if name not in hand_written:
            _add_generated(cmds, get_recipe(name))


# ----------------------------------------------------------------------
# recipes of the registry: the command is generated from the options class


def _flag(field: attrs.Attribute[Any], opt: CliOption) -> str:
    return opt.flag or "--" + field.name.replace("_", "-")


def _add_generated(
    cmds: argparse._SubParsersAction[argparse.ArgumentParser], recipe: Recipe[Any]
) -> None:
    p = cmds.add_parser(
        recipe.name,
        help=recipe.summary,
        description=recipe.description or recipe.summary,
    )
    for field in attrs.fields(recipe.options):
        opt = field.metadata.get(CLI)
        if not isinstance(opt, CliOption):
            continue
        kwargs: dict[str, Any] = {"help": opt.help, "dest": f"opt_{field.name}"}
        if opt.metavar is not None:
            kwargs["metavar"] = opt.metavar
        if opt.choices is not None:
            kwargs["choices"] = opt.choices
        required = field.default is attrs.NOTHING
        if field.default is False and opt.parse is None and not opt.positional:
            kwargs.pop("metavar", None)
            p.add_argument(_flag(field, opt), action="store_true", **kwargs)
            continue
        if opt.parse is not None:
            kwargs["type"] = opt.parse
        if opt.positional:
            kwargs.pop("dest")
            if opt.repeat:
                kwargs["nargs"] = "+" if required else "*"
            p.add_argument(f"opt_{field.name}", **kwargs)
            continue
        if opt.repeat:
            kwargs["action"] = "append"
        if required:
            kwargs["required"] = True
        p.add_argument(_flag(field, opt), **kwargs)
    p.add_argument(
        "--work",
        required=True,
        metavar="DIR",
        help="the work folder (work ledger, rounds' plans and ledgers, outputs)",
    )
    _add_limits(p)
    p.add_argument(
        "--tenant-items-per-second",
        type=positive_float,
        metavar="R",
        help="start at most R items per second per tenant",
    )
    p.add_argument(
        "--tenant-bytes-per-second",
        type=positive_float,
        metavar="R",
        help="start at most R bytes per second per tenant",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan summary; execute and write nothing",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=functools.partial(_run_generated, recipe))


def _run_generated(recipe: Recipe[Any], args: argparse.Namespace) -> int:
    values: dict[str, Any] = {}
    for field in attrs.fields(recipe.options):
        if not isinstance(field.metadata.get(CLI), CliOption):
            continue
        value = getattr(args, f"opt_{field.name}", None)
        if value is None:
            continue  # the option's default
        values[field.name] = tuple(value) if isinstance(value, list) else value
    try:
        options = recipe.options(**values)
    except (TypeError, ValueError, CarmigrateError) as e:
        print(f"carmigrate recipe {recipe.name}: error: {e}", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        try:
            result = run_recipe(
                recipe,
                options,
                args.work,
                limits=_limits(args),
                reporters=_reporters(stack, args),
                dry_run=args.dry_run,
            )
        except (CarmigrateError, OSError, ValueError) as e:
            print(f"carmigrate recipe {recipe.name}: error: {e}", file=sys.stderr)
            return 2
    _print(args, result.to_dict(), result.to_markdown())
    return 1 if (result.failed or result.missing) and not args.dry_run else 0


def _add_limits(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--concurrency",
        type=positive_int,
        default=8,
        metavar="N",
        help="items in flight at once (default 8)",
    )
    p.add_argument(
        "--items-per-second",
        type=positive_float,
        metavar="R",
        help="start at most R items per second, over everything",
    )
    p.add_argument(
        "--bytes-per-second",
        type=positive_float,
        metavar="R",
        help="start at most R bytes per second, over everything",
    )
    p.add_argument(
        "--max-items",
        type=positive_int,
        metavar="N",
        help="stop cleanly after starting N items in a plan (run again to continue)",
    )
    p.add_argument(
        "--max-seconds",
        type=positive_float,
        metavar="S",
        help="stop starting items of a plan after S seconds (run again to continue)",
    )
    p.add_argument(
        "--events",
        metavar="FILE",
        help="append every engine event to FILE as JSON lines",
    )


def _add_w3up(cmds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = cmds.add_parser(
        "w3up-legacy",
        help="migrate web3.storage legacy uploads to w3up",
        description=(
            "Read the legacy upload listing (JSON lines: cid, name, created, dagSize, "
            "optional tenant, and backupUrls or shards), find every shard CAR in the "
            "destination or the legacy buckets (in the order given), copy the missing "
            "ones and verify all of them (size, sha256, every block; commP with "
            "--commp), and write the w3up records of every upload whose shards all "
            "verified to WORK/records.jsonl and a space-export CAR per tenant to "
            "WORK/exports/. Run again with the same WORK to continue or to retry "
            "the failures. Exit 1 if uploads failed."
        ),
    )
    p.add_argument("listing", metavar="LISTING", help="the legacy listing ('-': stdin)")
    p.add_argument(
        "--bucket",
        dest="buckets",
        action="append",
        required=True,
        metavar="URL",
        help="a legacy bucket (repeat for several; searched in order)",
    )
    p.add_argument(
        "--destination", required=True, metavar="URL", help="the destination bucket"
    )
    p.add_argument(
        "--work",
        required=True,
        metavar="DIR",
        help="the work folder (journal, plans, ledgers, outputs)",
    )
    p.add_argument(
        "--layout",
        default=DEFAULT_LAYOUT,
        help="destination key of a shard, with {cid} for its CAR CID (default: %(default)s)",
    )
    p.add_argument(
        "--commp",
        action="store_true",
        help="also compute PieceCIDs (and MD5) in the same read, for the Filecoin backfill",
    )
    _add_limits(p)
    p.add_argument(
        "--tenant-items-per-second",
        type=positive_float,
        metavar="R",
        help="start at most R items per second per tenant",
    )
    p.add_argument(
        "--tenant-bytes-per-second",
        type=positive_float,
        metavar="R",
        help="start at most R bytes per second per tenant",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan summary; execute and write nothing",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_w3up)


def _add_queue(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--queue", required=True, metavar="DB", help="the aggregate queue (SQLite file)"
    )
    p.add_argument(
        "--work", required=True, metavar="DIR", help="the backfill's work folder"
    )


def _add_backfill(cmds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = cmds.add_parser(
        "filecoin-backfill",
        help="PieceCIDs of existing CARs into the aggregate queue, aggregates, manifests",
        description=(
            "Take the verified CARs of migration ledgers (their PieceCIDs when the "
            "run computed commP, nothing read again) and/or every CAR of a bucket "
            "(read once: every block verified and commP computed), offer them to the "
            "aggregate queue, build aggregates with the chosen policy and write a "
            "deal manifest per aggregate to WORK/manifests/. Run again to continue; "
            "CARs already offered are not read again. Exit 1 if CARs failed."
        ),
    )
    _add_queue(p)
    p.add_argument(
        "--ledger",
        dest="ledgers",
        action="append",
        default=[],
        metavar="PATH",
        help="a migration ledger whose verified CARs to take (repeatable)",
    )
    p.add_argument(
        "--w3up-work",
        metavar="DIR",
        help="take the ledgers of a 'recipe w3up-legacy' work folder",
    )
    p.add_argument("--bucket", metavar="URL", help="a bucket whose CARs to scan")
    p.add_argument(
        "--prefix", default="", help="only keys of --bucket with this prefix"
    )
    p.add_argument(
        "--car-pattern",
        default=r"(?i)\.car$",
        metavar="REGEX",
        help=r"keys of --bucket that are CARs (default '(?i)\.car$')",
    )
    p.add_argument(
        "--deal-size",
        type=positive_int,
        default=SPADE_DEAL_SIZE,
        metavar="N",
        help="padded deal size (default 32 GiB, Spade's)",
    )
    p.add_argument(
        "--policy",
        choices=sorted(POLICIES),
        default="largest_first",
        help="packing policy (default %(default)s)",
    )
    p.add_argument(
        "--max-age",
        type=float,
        metavar="S",
        help="build a partly full aggregate once its oldest piece waited S seconds "
        "(0: build whatever is buffered now)",
    )
    p.add_argument(
        "--max-pieces",
        type=positive_int,
        metavar="N",
        help="pieces per aggregate at most",
    )
    p.add_argument(
        "--isolate-tenants",
        action="store_true",
        help="never mix tenants in one aggregate",
    )
    p.add_argument(
        "--url-template",
        metavar="T",
        help="URL a provider fetches a CAR from, with {link} (CAR CID) and {key}",
    )
    p.add_argument(
        "--no-build",
        dest="build",
        action="store_false",
        help="only offer; do not build aggregates",
    )
    _add_limits(p)
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="count and plan the scans; run, offer and write nothing",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_backfill)


def _add_report(cmds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = cmds.add_parser(
        "filecoin-report",
        help="per CAR: CAR CID -> PieceCID -> aggregate -> inclusion proof",
        description=(
            "Print every CAR of a backfill (or the CAR CIDs given) with its PieceCID, "
            "its aggregate and its inclusion proof, checking each proof against its "
            "aggregate. Exit 1 if a CAR CID is unknown or a proof does not hold."
        ),
    )
    _add_queue(p)
    p.add_argument("links", nargs="*", metavar="CAR_CID", help="only these CARs")
    p.add_argument("--json", action="store_true", help="one JSON object per CAR")
    p.set_defaults(handler=_report)


def _limits(args: argparse.Namespace) -> Limits:
    return Limits(
        concurrency=args.concurrency,
        items_per_second=args.items_per_second,
        bytes_per_second=args.bytes_per_second,
        max_items=args.max_items,
        max_seconds=args.max_seconds,
        tenant_items_per_second=getattr(args, "tenant_items_per_second", None),
        tenant_bytes_per_second=getattr(args, "tenant_bytes_per_second", None),
    )


def _reporters(stack: contextlib.ExitStack, args: argparse.Namespace) -> list[Reporter]:
    if not args.events:
        return []
    return [stack.enter_context(contextlib.closing(JsonLinesReporter(args.events)))]


def _print(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    if args.json:
        print(json.dumps(data, ensure_ascii=False, sort_keys=True))
    else:
        print(text, end="")


def _w3up(args: argparse.Namespace) -> int:
    listing: Any = sys.stdin if args.listing == "-" else args.listing
    with contextlib.ExitStack() as stack:
        result = migrate_w3up_legacy(
            listing,
            args.buckets,
            args.destination,
            args.work,
            layout=args.layout,
            commp=args.commp,
            limits=_limits(args),
            reporters=_reporters(stack, args),
            dry_run=args.dry_run,
        )
    _print(args, result.to_dict(), result.to_markdown())
    return 1 if result.uploads_failed and not args.dry_run else 0


def _queue(args: argparse.Namespace) -> AggregateQueue:
    constraints = PackingConstraints(
        deal_size=args.deal_size,
        max_pieces=args.max_pieces,
        isolate_tenants=args.isolate_tenants,
        max_age=args.max_age,
    )
    return AggregateQueue(args.queue, constraints=constraints, policy=args.policy)


def _backfill(args: argparse.Namespace) -> int:
    ledgers = list(args.ledgers)
    if args.w3up_work:
        with W3upLegacyJournal(args.w3up_work) as journal:
            ledgers += journal.ledgers()
    with contextlib.ExitStack() as stack:
        queue = stack.enter_context(_queue(args))
        result = backfill_filecoin(
            queue,
            args.work,
            ledgers=ledgers,
            bucket=args.bucket,
            prefix=args.prefix,
            car_pattern=args.car_pattern,
            url_template=args.url_template,
            build=args.build,
            limits=_limits(args),
            reporters=_reporters(stack, args),
            dry_run=args.dry_run,
        )
    _print(args, result.to_dict(), result.to_markdown())
    return 1 if result.failed and not args.dry_run else 0


def _report(args: argparse.Namespace) -> int:
    bad = 0
    with (
        AggregateQueue(args.queue) as queue,
        BackfillJournal(args.work, queue) as journal,
    ):
        if args.links:
            entries = []
            for link in args.links:
                entry = journal.lookup(link)
                if entry is None:
                    print(f"carmigrate: {link}: not in this backfill", file=sys.stderr)
                    bad += 1
                else:
                    entries.append(entry)
        else:
            entries = list(journal.entries())
        if not args.json:
            print("| CAR CID | PieceCID | status | aggregate | offset | proof |")
            print("|---|---|---|---|---:|---|")
        for entry in entries:
            check = "-"
            if entry.proof is not None:
                try:
                    entry.verify_proof()
                    check = "ok"
                except Exception as exc:  # reported, exit code 1
                    check = f"FAILS: {exc}"
                    bad += 1
            if args.json:
                data = entry.to_dict()
                data["proof_check"] = check
                print(json.dumps(data, ensure_ascii=False, sort_keys=True))
            else:
                print(
                    f"| {entry.link or entry.key} | {entry.piece_cid or '-'} | "
                    f"{entry.status} | {entry.aggregate_cid or '-'} | "
                    f"{'-' if entry.offset is None else entry.offset} | {check} |"
                )
    return 1 if bad else 0
