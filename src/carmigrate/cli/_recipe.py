"""``carmigrate recipe``: the real migrations (web3.storage → w3up, Filecoin backfill, BagIt backfill).

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

from carmigrate.aggregate import AggregateQueue, InclusionProof
from carmigrate.cid import CID
from carmigrate.cli._args import positive_float, positive_int
from carmigrate.cli._output import fail
from carmigrate.commp import PieceInfo
from carmigrate.errors import CarmigrateError, FormatError
from carmigrate.migrate import JsonLinesReporter, Limits, Verdict
from carmigrate.recipes import (
    CLI,
    CliOption,
    Recipe,
    bag_coverage,
    get_recipe,
    owncloud_inventory,
    recipe_names,
    run_recipe,
    work_ledger,
)
from carmigrate.storage import open_store

if TYPE_CHECKING:
    import argparse

    from carmigrate.migrate import Reporter, UnitRecord

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``recipe`` command group."""
    p = subparsers.add_parser(
        "recipe",
        help="the real migrations: web3.storage uploads to w3up, Filecoin backfill",
        description="Recipes built on the migration engine, one per real migration.",
    )
    cmds = p.add_subparsers(dest="recipe_command", metavar="RECIPE", required=True)
    _add_report(cmds)
    _add_coverage(cmds)
    _add_owncloud(cmds)
    hand_written = {"filecoin-report", "bag-coverage"}
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
        if isinstance(field.default, bool) and opt.parse is None and not opt.positional:
            kwargs.pop("metavar", None)
            switch = "store_false" if field.default else "store_true"
            p.add_argument(_flag(field, opt), action=switch, **kwargs)
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
        return fail(args, str(e), kind=type(e).__name__)
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
            return fail(args, str(e), kind=type(e).__name__)
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


def _add_queue(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--queue", required=True, metavar="DB", help="the aggregate queue (SQLite file)"
    )
    p.add_argument(
        "--work", required=True, metavar="DIR", help="the backfill's work folder"
    )


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


def _add_coverage(cmds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = cmds.add_parser(
        "bag-coverage",
        help="per bag version and provider: missing, warming, copying, verified, failed",
        description=(
            "Print every bag version of the register with its state at each provider: "
            "verified (its replica is registered), failed (with the reason), warming "
            "(objects being restored at the primary), copying, or missing. Reads the "
            "register and, with --work, the bag-backfill work folder; changes nothing. "
            "Exit 1 if a bag version failed at a provider."
        ),
    )
    p.add_argument(
        "--register", required=True, metavar="URL", help="the bag register (store URL)"
    )
    p.add_argument(
        "--work", metavar="DIR", help="the bag-backfill work folder (if it ran)"
    )
    p.add_argument(
        "--to",
        action="append",
        default=[],
        metavar="NAME[=URL]",
        help="a provider to report even where nothing was done (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_coverage)


def _coverage(args: argparse.Namespace) -> int:
    try:
        store = open_store(args.register)
        try:
            cover = bag_coverage(
                store, args.work, providers=[t.partition("=")[0] for t in args.to]
            )
        finally:
            store.close()
    except (CarmigrateError, OSError, ValueError) as e:
        return fail(args, str(e), kind=type(e).__name__)
    _print(args, cover.to_dict(), cover.to_markdown())
    return 1 if any(r.state == "failed" for r in cover.rows) else 0


def _add_owncloud(cmds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = cmds.add_parser(
        "owncloud-inventory",
        help="an ownCloud 10 instance: files, folders, versions, trash, shares per user",
        description=(
            "Count what each user of an ownCloud 10 instance has (database and data "
            "directory), and report rows without blobs, blobs without rows, sizes and "
            "checksums that differ, rows without parents and shares without files. "
            "Reads only; fixes nothing. Exit 1 if there are findings."
        ),
    )
    p.add_argument(
        "--db",
        required=True,
        metavar="URL",
        help="the ownCloud database (SQLAlchemy URL: sqlite:///…, mysql+pymysql://…)",
    )
    p.add_argument(
        "--data",
        required=True,
        metavar="URL",
        help="the data directory (a path or store URL)",
    )
    p.add_argument(
        "--users",
        action="append",
        metavar="NAME[,NAME…]",
        help="only these users (repeatable, or comma-separated); all by default",
    )
    p.add_argument(
        "--config", metavar="PATH", help="ownCloud's config.php (for the instance id)"
    )
    p.add_argument(
        "--instance-id", metavar="ID", help="the instance id, without --config"
    )
    p.add_argument(
        "--table-prefix",
        default="oc_",
        metavar="PREFIX",
        help="ownCloud's dbtableprefix (default oc_)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_owncloud)


def _owncloud(args: argparse.Namespace) -> int:
    users = None
    if args.users is not None:
        users = [u for arg in args.users for u in arg.split(",") if u]
    try:
        inventory = owncloud_inventory(
            args.db,
            args.data,
            users,
            config=args.config,
            instance_id=args.instance_id,
            table_prefix=args.table_prefix,
        )
    except (CarmigrateError, OSError, ValueError) as e:
        return fail(args, str(e), kind=type(e).__name__)
    _print(args, inventory.to_dict(), inventory.to_markdown())
    return 1 if inventory.findings else 0


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


def _report(args: argparse.Namespace) -> int:
    bad = 0
    with AggregateQueue(args.queue) as queue, work_ledger(args.work) as ledger:
        scanning = ledger.open_round() is not None
        cars = list(ledger.units(kind="car"))
        if args.links:
            by_link: dict[str, UnitRecord] = {}
            for u in cars:  # by name: a CAR in two stores is the first
                by_link.setdefault(str(u.unit.data.get("link")), u)
            cars = []
            for link in args.links:
                with contextlib.suppress(FormatError):
                    link = str(CID.decode(link))
                if link not in by_link:
                    print(f"carmigrate: {link}: not in this backfill", file=sys.stderr)
                    bad += 1
                else:
                    cars.append(by_link[link])
        if not args.json:
            print("| CAR CID | PieceCID | status | aggregate | offset | proof |")
            print("|---|---|---|---|---:|---|")
        for u in cars:
            d = u.unit.data
            entry = {**d, "unit": u.name, "status": _status(u, scanning)}
            entry["reason"] = "; ".join(u.reasons) or d.get("drop_reason")
            entry["aggregate_state"], check = None, "-"
            if d.get("aggregate"):
                try:
                    agg = queue.get(d["aggregate"])
                    entry["aggregate_state"] = agg.state.value
                    if d.get("proof"):  # against the queue's record of the aggregate
                        piece = PieceInfo.from_cid(d["piece_cid_v2"])
                        at = PieceInfo.from_cid(str(agg.piece_cid), agg.deal_size)
                        proof = InclusionProof.from_json(d["proof"])
                        proof.verify(
                            piece.root, piece.padded_size, at.root, at.padded_size
                        )
                        check = "ok"
                except (CarmigrateError, ValueError) as exc:  # reported, exit code 1
                    check = f"FAILS: {exc}"
                    bad += 1
            if args.json:
                entry["proof_check"] = check
                print(json.dumps(entry, ensure_ascii=False, sort_keys=True))
            else:
                offset = d.get("offset")
                print(
                    f"| {d.get('link') or d['key']} | {d.get('piece_cid') or '-'} | "
                    f"{entry['status']} | {d.get('aggregate_cid') or '-'} | "
                    f"{'-' if offset is None else offset} | {check} |"
                )
    return 1 if bad else 0


def _status(u: UnitRecord, scanning: bool) -> str:
    """Where a CAR of the backfill stands, in one word."""
    if u.verdict is Verdict.FAILED:
        return "failed"
    if u.unit.data.get("offered"):  # buffered, aggregated or dropped
        return str(u.unit.data.get("queue_status") or "offered")
    if u.verdict is Verdict.COMPLETE:
        return "ready"  # verified, not offered yet
    return "scanning" if scanning else "scan"
