"""``carmigrate plan|run|status|resume|verify|rollback|report``: migrations.

A thin front end over [carmigrate.migrate][]: each command turns its
arguments into one library call and its result into text or JSON. Stores
are anything [open_store][carmigrate.storage.open_store] takes (a path,
``file://``, ``s3://bucket/prefix`` with the usual ``AWS_*`` environment
variables, other fsspec URLs).

Exit codes: 0 success; 1 the checked thing is bad (items failed, a
verification found mismatches, a rollback could not finish); 2 usage errors
and inputs that cannot be processed; 130 a run stopped by SIGINT/SIGTERM
(the ledger is consistent; ``resume`` continues).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import importlib.util
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import attrs

from carmigrate import migrate
from carmigrate.cli._args import (
    StoreOption,
    positive_float,
    positive_int,
    store_option,
)
from carmigrate.cli._output import fail
from carmigrate.digests import algorithm_names
from carmigrate.errors import CarmigrateError, PlanError

if TYPE_CHECKING:
    from concurrent.futures import Executor
    from types import FrameType

__all__ = ["register"]

_INTERRUPTED = 130
_LISTED = 20

Handler = Callable[[argparse.Namespace], int]


# ----------------------------------------------------------------------
# argument types

_DIGESTS = ", ".join(algorithm_names())


def _checks(text: str) -> tuple[str, ...]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError(
            f"name at least one check: size, car, commp or a digest ({_DIGESTS})"
        )
    try:
        return migrate.VerificationPolicy(checks=names).checks
    except PlanError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _digest_list(text: str) -> tuple[str, ...]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    try:
        return migrate.VerificationPolicy(record=names).record
    except PlanError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _stage_by(text: str) -> migrate.CohortRule:
    kind, sep, value = text.partition(":")
    try:
        if not sep and kind.isdigit():
            return migrate.CohortRule(segments=int(kind))
        if kind == "segments" and value.isdigit():
            return migrate.CohortRule(segments=int(value))
        if kind == "regex" and value:
            return migrate.CohortRule(pattern=value)
        if kind == "none" and not sep:
            return migrate.CohortRule()
    except PlanError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    raise argparse.ArgumentTypeError(
        f"expected segments:N, N, regex:PATTERN or none, got {text!r}"
    )


def _stage(text: str) -> migrate.Stage:
    name, sep, cohorts = text.partition("=")
    patterns = [c.strip() for c in cohorts.split(",") if c.strip()]
    if not sep or not name.strip() or not patterns:
        raise argparse.ArgumentTypeError(
            f"expected NAME=COHORT[,COHORT...] (fnmatch patterns), got {text!r}"
        )
    return migrate.Stage(name.strip(), tuple(patterns))


def _id_rule(text: str) -> tuple[migrate.IdKind, str | None]:
    kind, sep, value = text.partition(":")
    if kind == "keep" and not sep:
        return migrate.IdKind.KEEP, None
    if kind == "prefix" and sep:
        return migrate.IdKind.PREFIX, value
    if kind == "offset" and value.lstrip("-").isdigit():
        return migrate.IdKind.OFFSET, value
    if kind == "uuid":
        return migrate.IdKind.UUID, value or None
    raise argparse.ArgumentTypeError(
        f"expected keep, prefix:TEXT, offset:N or uuid[:NAMESPACE], got {text!r}"
    )


# ----------------------------------------------------------------------
# registration


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the migration commands to the ``carmigrate`` parser."""
    _add_plan(subparsers)
    _add_run(subparsers)
    _add_status(subparsers)
    _add_resume(subparsers)
    _add_verify(subparsers)
    _add_rollback(subparsers)
    _add_report(subparsers)


def _add_plan(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "plan",
        help="list two stores and write a migration plan",
        description=(
            "List SOURCE and DESTINATION, decide what happens to every key (copy, "
            "skip, compare, conflict, extra) and write the plan to OUTPUT (JSON "
            "Lines: a header line, then one line per item). Nothing is read or "
            "written in either store. A key K under the source URL lands at the "
            "destination URL + K. Prints the plan's summary. Exit 2 if a store "
            "cannot be listed or an option is invalid."
        ),
    )
    p.add_argument(
        "source",
        metavar="SOURCE",
        help="source store: a path, file://, s3://bucket/prefix (AWS_* environment "
        "variables honoured, e.g. AWS_ENDPOINT_URL), or another fsspec URL",
    )
    p.add_argument("destination", metavar="DESTINATION", help="destination store")
    p.add_argument(
        "-o", "--output", required=True, metavar="PLAN", help="plan file to write"
    )
    p.add_argument(
        "--verify",
        type=_checks,
        metavar="CHECKS",
        help="comma-separated checks: size, car, commp, and any digest the source "
        f"may vouch for ({_DIGESTS}); size is always added; default: size,md5,sha256,car",
    )
    p.add_argument(
        "--record",
        type=_digest_list,
        metavar="DIGESTS",
        help="comma-separated digests to compute and record for every object, "
        "vouched for or not (e.g. sha512,adler32); sha256 is always recorded",
    )
    p.add_argument(
        "--car-pattern",
        metavar="REGEX",
        help=r"keys treated as CARs (block check, commP); default '(?i)\.car$'",
    )
    p.add_argument(
        "--prefix", default="", help="only keys starting with this (inside the URLs)"
    )
    p.add_argument(
        "--stage-by",
        type=_stage_by,
        metavar="RULE",
        help="how an item's cohort is found in its key: segments:N (its first N "
        "folders), regex:PATTERN (group 'cohort', group 1 or the match) or none "
        "(default: none, one cohort)",
    )
    p.add_argument(
        "--stage",
        dest="stages",
        type=_stage,
        action="append",
        default=[],
        metavar="NAME=COHORTS",
        help="a stage: its name and comma-separated cohort patterns (fnmatch); "
        "repeat for more stages, in order; items no stage claims go to a last "
        "stage 'rest' (default: one stage 'all')",
    )
    p.add_argument(
        "--id-rule",
        type=_id_rule,
        metavar="RULE",
        help="new ids for the destination: keep, prefix:TEXT, offset:N or "
        "uuid[:NAMESPACE] (default keep); the id map is part of the plan",
    )
    p.add_argument(
        "--id-pattern",
        metavar="REGEX",
        help="where the id is in a key (group 'id', group 1 or the match; default "
        "the whole key)",
    )
    p.add_argument(
        "--rewrite-key",
        action="store_true",
        help="also put the new id into the destination key",
    )
    p.add_argument(
        "--overwrite",
        choices=[o.value for o in migrate.Overwrite],
        default=migrate.Overwrite.NEVER.value,
        help="replace destination objects that differ (default: never, they are "
        "recorded as conflicts)",
    )
    p.add_argument(
        "--server-side-copy",
        action="store_true",
        help="let the destination copy objects itself when it can (checked by "
        "reading the destination afterwards)",
    )
    _add_limits(p, plan=True)
    _add_store_options(p)
    p.add_argument(
        "--json",
        action="store_true",
        help="print the summary as one JSON object",
    )
    p.set_defaults(handler=_plan)


def _add_limits(p: argparse.ArgumentParser, *, plan: bool) -> None:
    default = " (default: the plan's)" if not plan else ""
    p.add_argument(
        "--concurrency",
        type=positive_int,
        metavar="N",
        help=f"items in flight at once{default or ' (default 8)'}",
    )
    p.add_argument(
        "--items-per-second",
        type=positive_float,
        metavar="R",
        help=f"start at most R items per second{default}",
    )
    p.add_argument(
        "--bytes-per-second",
        type=positive_float,
        metavar="R",
        help=f"start at most R bytes per second{default}",
    )
    if not plan:
        p.add_argument(
            "--max-items",
            type=positive_int,
            metavar="N",
            help="stop cleanly after starting N items (a canary run)",
        )
        p.add_argument(
            "--max-seconds",
            type=positive_float,
            metavar="S",
            help="stop starting items after S seconds",
        )


def _add_execution(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ledger", required=True, metavar="LEDGER", help="the ledger (SQLite file)"
    )
    p.add_argument(
        "--stage",
        dest="stages",
        action="append",
        metavar="S",
        help="run only this stage (repeatable; default: every stage, in order)",
    )
    _add_limits(p, plan=False)
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="also retry items that failed permanently before",
    )
    _add_store_options(p)
    _add_dask(p)
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar on standard error (default: when it is a "
        "terminal and tqdm is installed)",
    )
    p.add_argument(
        "--events",
        metavar="FILE",
        help="append every event of the run to FILE as JSON lines",
    )
    p.add_argument(
        "--json", action="store_true", help="print the outcome as one JSON object"
    )


def _add_store_options(p: argparse.ArgumentParser, *, source: bool = True) -> None:
    values = (
        "KEY is a keyword option of the store's backend (see the storage docs); "
        "VALUE is read as JSON when it is JSON (true, false, null, numbers, "
        '"quoted text", lists, objects), else taken as text; repeatable'
    )
    for side in ("source", "destination") if source else ("destination",):
        p.add_argument(
            f"--{side}-option",
            dest=f"{side}_options",
            type=store_option,
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=f"an option for opening the {side} store, e.g. "
            f"{'checksums=false' if side == 'source' else 'conditional_write=multipart'}: "
            f"{values}",
        )


def _store_options(
    args: argparse.Namespace, source: str, destination: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``--source-option``/``--destination-option`` values for these URLs.

    Raises:
        ValueError: An option the store does not take, or a value of the
            wrong type (the message names the option as written).
    """
    from carmigrate.storage import check_store_options

    out: list[dict[str, Any]] = []
    for side, url in (("source", source), ("destination", destination)):
        given: list[StoreOption] = getattr(args, f"{side}_options", [])
        options: dict[str, Any] = {}
        for opt in given:
            try:
                check_store_options(url, {opt.name: opt.value})
            except TypeError as e:
                raise ValueError(f"--{side}-option {opt.text}: {e}") from None
            options[opt.name] = opt.value
        out.append(options)
    return out[0], out[1]


def _add_dask(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="run the items on a Dask cluster (its scheduler's address, or 'local' "
        "for a LocalCluster of 2 worker processes); workers open the stores from "
        "the plan's URLs",
    )


def _add_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="execute a plan, recording every outcome in a ledger",
        description=(
            "Execute PLAN: copy and check every item (each object is read once; "
            "a write that fails a check never becomes visible) and record each "
            "outcome in LEDGER (created if missing; a ledger of another plan is "
            "refused). Running it again, or 'resume', continues where it "
            "stopped. Ctrl-C (or SIGTERM) stops cleanly: nothing new starts, "
            "items in flight finish; a second Ctrl-C aborts them (resume redoes "
            "them). Exit 0 when no item failed, 1 when some did, 2 on unusable "
            "input, 130 when stopped by a signal."
        ),
    )
    p.add_argument("plan", metavar="PLAN", help="plan file written by 'plan'")
    _add_execution(p)
    p.set_defaults(handler=_run)


def _add_resume(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "resume",
        help="continue a run from its ledger",
        description=(
            "Continue the plan recorded in LEDGER where it stopped or was killed; "
            "the ledger alone is enough (no store is listed again). Items caught "
            "mid-copy are redone from scratch, transient failures are retried. "
            "Exit codes as for 'run'."
        ),
    )
    _add_execution(p)
    p.set_defaults(handler=_resume)


def _add_status(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "status",
        help="show where a migration stands",
        description=(
            "Show the items per state and the last run of the plan in LEDGER. "
            "Reads the ledger only (safe while a run is going). With --json: "
            "{plan_id, source, destination, items, by_state: {STATE: N}, "
            "bytes_done, bytes_total, stages, running, stop_requested, last_run}."
        ),
    )
    p.add_argument("--ledger", required=True, metavar="LEDGER", help="the ledger")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_status)


def _add_verify(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "verify",
        help="re-check the destination independently",
        description=(
            "Read back every object the plan put at the destination and check it "
            "against what the ledger recorded and what the source vouches for "
            "(digests, content-addressed keys, every CAR block). Missing or "
            "different objects become FAILED ('resume' redoes them). Exit 0 if "
            "everything matches, 1 on mismatches or unreadable objects."
        ),
    )
    p.add_argument(
        "plan",
        metavar="PLAN",
        nargs="?",
        help="the plan file, to check the ledger records it (default: the "
        "ledger's plan)",
    )
    p.add_argument("--ledger", required=True, metavar="LEDGER", help="the ledger")
    p.add_argument(
        "--stage",
        dest="stages",
        action="append",
        metavar="S",
        help="verify only this stage (repeatable)",
    )
    p.add_argument(
        "--reread-source",
        action="store_true",
        help="also read every source object again and compare SHA-256",
    )
    p.add_argument(
        "--concurrency",
        type=positive_int,
        metavar="N",
        help="objects read at once (default: the plan's)",
    )
    _add_store_options(p)
    _add_dask(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_verify)


def _add_rollback(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "rollback",
        help="delete what one stage created at the destination",
        description=(
            "Delete the destination objects that the plan created in stage S and "
            "that still hold what it wrote; objects that were there before, were "
            "replaced, or changed since are kept and listed. Do not run it while "
            "a run of the same ledger is going. Exit 1 if a delete failed or "
            "items caught mid-copy need 'resume' first."
        ),
    )
    p.add_argument("--ledger", required=True, metavar="LEDGER", help="the ledger")
    p.add_argument("--stage", required=True, metavar="S", help="the stage")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="only list what would be checked and deleted",
    )
    _add_store_options(p, source=False)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_rollback)


def _add_report(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "report",
        help="print the final report of a migration",
        description=(
            "Print what the migration in LEDGER carried and what it lost: items "
            "per state and stage, bytes, failures with their reasons and "
            "offsets, conflicts, unverifiable items, metadata the destination "
            "could not keep. Reads the ledger only. Exit 1 if any item failed."
        ),
    )
    p.add_argument("--ledger", required=True, metavar="LEDGER", help="the ledger")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="canonical JSON")
    fmt.add_argument("--markdown", action="store_true", help="Markdown (the default)")
    p.set_defaults(handler=_report)


# ----------------------------------------------------------------------
# plumbing


def _errors(fn: Handler) -> Handler:
    """Report library, OS and value errors as every command does (``_output.fail``); exit 2."""

    @functools.wraps(fn)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except BrokenPipeError:
            raise  # output piped into head: main() handles it
        except (CarmigrateError, OSError, ValueError) as e:
            return fail(args, str(e), kind=type(e).__name__)

    return wrapper


def _local_path(url: str) -> str:
    """The folder a local store URL (a path or ``file://``) names."""
    if url.lower().startswith("file://"):
        return unquote(urlsplit(url).path)
    return os.path.expanduser(url)


def _open_ledger(path: str, *, readonly: bool = False) -> migrate.Ledger:
    if not os.path.exists(path):
        raise PlanError(f"no ledger at {path!r}")
    return migrate.Ledger(path, readonly=readonly)


def _limits(args: argparse.Namespace, base: migrate.Limits) -> migrate.Limits:
    changes = {
        name: getattr(args, name)
        for name in (
            "concurrency",
            "items_per_second",
            "bytes_per_second",
            "max_items",
            "max_seconds",
        )
        if getattr(args, name, None) is not None
    }
    return attrs.evolve(base, **changes) if changes else base


@contextlib.contextmanager
def _executor(address: str | None, concurrency: int) -> Iterator[Executor | None]:
    """A Dask executor for ``--dask ADDRESS`` (``None`` without)."""
    if address is None:
        yield None
        return
    try:
        distributed: Any = importlib.import_module("distributed")
    except ImportError:
        raise PlanError(
            "--dask needs the 'distributed' package (pip install carmigrate[dask])"
        ) from None
    for name in ("distributed", "tornado", "bokeh"):
        logging.getLogger(name).setLevel(logging.ERROR)
    with contextlib.ExitStack() as stack:
        if address == "local":
            cluster = stack.enter_context(
                distributed.LocalCluster(
                    n_workers=2,
                    processes=True,
                    threads_per_worker=max(1, -(-concurrency // 2)),
                    dashboard_address=":0",  # any free port: never 8787 taken
                )
            )
            client = stack.enter_context(distributed.Client(cluster))
        else:
            client = stack.enter_context(distributed.Client(address))
        yield client.get_executor()


@contextlib.contextmanager
def _reporters(args: argparse.Namespace) -> Iterator[list[migrate.Reporter]]:
    out: list[migrate.Reporter] = []
    with contextlib.ExitStack() as stack:
        progress = args.progress
        have_tqdm = importlib.util.find_spec("tqdm") is not None
        if progress is None:
            progress = have_tqdm and sys.stderr.isatty()
        elif progress and not have_tqdm:
            print(
                "carmigrate: --progress needs tqdm (pip install carmigrate[progress])",
                file=sys.stderr,
            )
            progress = False
        if progress:
            bar = migrate.TqdmReporter(file=sys.stderr)
            stack.callback(bar.close)
            out.append(bar)
        if args.events:
            out.append(stack.enter_context(migrate.JsonLinesReporter(args.events)))
        yield out


@contextlib.contextmanager
def _stop_on_signal(ledger: migrate.Ledger) -> Iterator[list[int]]:
    """SIGINT/SIGTERM ask the run to stop cleanly; a second one interrupts it.

    Yields the list of signals received. The stop request file is removed
    again if the run ended before noticing it.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signum)
        ledger.request_stop()
        print(
            "\ncarmigrate: stopping after the items in flight (again to abort them)",
            file=sys.stderr,
        )

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        if received:
            with contextlib.suppress(OSError):
                os.unlink(ledger.stop_path())


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - the loop returns


def _emit(data: object) -> None:
    print(json.dumps(data, sort_keys=True))


def _counts(counts: Mapping[migrate.ItemState, int]) -> dict[str, int]:
    return {s.value: n for s, n in sorted(counts.items(), key=lambda kv: kv[0].value)}


def _counts_line(counts: Mapping[migrate.ItemState, int]) -> str:
    return ", ".join(f"{n} {s.value}" for s, n in _sorted_states(counts)) or "no items"


def _sorted_states(
    counts: Mapping[migrate.ItemState, int],
) -> list[tuple[migrate.ItemState, int]]:
    order = {s: i for i, s in enumerate(migrate.ItemState)}
    return sorted(counts.items(), key=lambda kv: order[kv[0]])


# ----------------------------------------------------------------------
# plan


@_errors
def _plan(args: argparse.Namespace) -> int:
    verification = migrate.VerificationPolicy()
    if args.verify is not None:
        verification = attrs.evolve(verification, checks=("size", *args.verify))
    if args.record is not None:
        verification = attrs.evolve(verification, record=args.record)
    if args.car_pattern is not None:
        verification = attrs.evolve(verification, car_pattern=args.car_pattern)
    id_fields: dict[str, Any] = {
        "pattern": args.id_pattern,
        "rewrite_key": args.rewrite_key,
    }
    if args.id_rule is not None:
        kind, value = args.id_rule
        id_fields["kind"] = kind
        if kind is migrate.IdKind.PREFIX:
            id_fields["prefix"] = value
        elif kind is migrate.IdKind.OFFSET:
            id_fields["offset"] = int(value)
        elif kind is migrate.IdKind.UUID:
            id_fields["namespace"] = value
    from carmigrate.storage import is_local_url, open_store

    ids = migrate.IdRule(**id_fields)
    limits = _limits(args, migrate.Limits())
    transfer = migrate.TransferPolicy(
        overwrite=migrate.Overwrite(args.overwrite),
        server_side_copy=args.server_side_copy,
    )
    source_options, destination_options = _store_options(
        args, args.source, args.destination
    )
    with contextlib.ExitStack() as stack:
        # a source must exist; a local destination that does not is planned
        # against as empty and made by the run that writes to it
        source = open_store(args.source, **source_options)
        stack.callback(source.close)
        destination: Any
        empty: list[migrate.ListingEntry] | None = None
        if is_local_url(args.destination) and not os.path.exists(
            _local_path(args.destination)
        ):
            destination = Path(os.path.abspath(_local_path(args.destination))).as_uri()
            empty = []
        else:
            destination = open_store(args.destination, **destination_options)
            stack.callback(destination.close)
        made = migrate.plan(
            source,
            destination,
            destination_listing=empty,
            prefix=args.prefix,
            stages=args.stages,
            cohorts=args.stage_by,
            verification=verification,
            transfer=transfer,
            limits=limits,
            ids=ids,
            path=args.output,
        )
    summary = made.summary()
    if args.json:
        _emit({**migrate.serde.unstructure(summary), "path": made.path})
        return 0
    print(summary.to_markdown())
    print(f"Plan written to {made.path}. Review it, then run it:")
    print(f"  carmigrate run {args.output} --ledger LEDGER.db")
    return 0


# ----------------------------------------------------------------------
# run / resume


def _run_outcome(
    args: argparse.Namespace,
    ledger: migrate.Ledger,
    result: migrate.RunResult | None,
    received: Sequence[int],
) -> int:
    counts = ledger.counts(stage=args.stages) if result is None else dict(result.counts)
    failed = counts.get(migrate.ItemState.FAILED, 0)
    unmigratable = counts.get(migrate.ItemState.UNMIGRATABLE, 0)
    interrupted = result is None or bool(received)
    if args.json:
        data: dict[str, Any] = {
            "plan_id": ledger.plan_id,
            "interrupted": interrupted,
            "by_state": _counts(ledger.counts(stage=args.stages)),
        }
        if result is not None:
            data.update(
                run=result.run,
                stop_reason=result.stop_reason,
                complete=result.complete,
                items=result.items,
                bytes=result.bytes,
                failures=result.failures,
                seconds=round(result.seconds, 3),
            )
        _emit(data)
    else:
        if result is None:
            print(
                "interrupted: items in flight were abandoned (nothing partial is visible)"
            )
        else:
            print(
                f"run {result.run}: {result.stop_reason}; {result.items} items finished, "
                f"{_size(result.bytes)} sent, {result.failures} failed, "
                f"{result.seconds:.1f} s"
            )
        print(f"states: {_counts_line(ledger.counts(stage=args.stages))}")
        if failed:
            print("failed:")
            for rec in ledger.items(
                state=migrate.ItemState.FAILED, stage=args.stages, limit=_LISTED
            ):
                where = "" if rec.offset is None else f" (at byte {rec.offset})"
                print(f"  {rec.item.key}: {rec.reason}{where}")
            if failed > _LISTED:
                print(f"  … and {failed - _LISTED} more")
        if unmigratable:
            print(
                f"{unmigratable} source entries cannot be migrated (the report "
                "lists them with their reasons): the migration is not complete"
            )
        if interrupted or (result is not None and not result.complete):
            print(f"to continue: carmigrate resume --ledger {args.ledger}")
        print(f"report: carmigrate report --ledger {args.ledger}")
    if interrupted:
        return _INTERRUPTED
    return 1 if failed or unmigratable else 0


def _execute(
    args: argparse.Namespace,
    ledger: migrate.Ledger,
    header: migrate.PlanHeader,
    call: Callable[..., migrate.RunResult],
) -> int:
    limits = _limits(args, header.limits)
    result: migrate.RunResult | None = None
    source = header.source
    # a local source is read once: its pages are dropped from the page
    # cache as they are read (see LocalStore's cache_reads)
    local = "://" not in source or source.startswith("file://")
    given_source, given_destination = _store_options(
        args, header.source, header.destination
    )
    options = migrate.StoreOptions(
        source={"cache_reads": False, **given_source} if local else given_source,
        destination=given_destination,
    )
    with (
        _executor(args.dask, limits.concurrency) as executor,
        _reporters(args) as reporters,
        _stop_on_signal(ledger) as received,
    ):
        try:
            result = call(
                executor=executor,
                stages=args.stages,
                limits=limits,
                reporters=reporters,
                retry_failed=args.retry_failed,
                store_options=options,
            )
        except KeyboardInterrupt:
            result = None
    return _run_outcome(args, ledger, result, received)


@_errors
def _run(args: argparse.Namespace) -> int:
    plan = migrate.load_plan(args.plan)
    with migrate.Ledger(args.ledger) as ledger:
        return _execute(
            args,
            ledger,
            plan.header,
            functools.partial(migrate.execute, plan, ledger),
        )


@_errors
def _resume(args: argparse.Namespace) -> int:
    with _open_ledger(args.ledger) as ledger:
        return _execute(
            args,
            ledger,
            ledger.header,
            functools.partial(migrate.resume, ledger),
        )


# ----------------------------------------------------------------------
# status / report


@_errors
def _status(args: argparse.Namespace) -> int:
    with _open_ledger(args.ledger, readonly=True) as ledger:
        st = migrate.status(ledger)
        counts = ledger.counts()
    last = st.last_run
    if args.json:
        _emit(
            {
                "plan_id": st.plan_id,
                "source": st.source,
                "destination": st.destination,
                "items": sum(counts.values()),
                "by_state": _counts(counts),
                "bytes_done": st.bytes_done,
                "bytes_total": st.bytes_total,
                "stages": [
                    {"stage": stage, "state": state, "items": n}
                    for stage, state, n in st.stages
                ],
                "complete": st.complete,
                "open": st.open,
                "leftovers": [
                    {"kind": kind, "name": name, "why": why}
                    for kind, name, why in st.leftovers
                ],
                "running": st.running,
                "stop_requested": st.stop_requested,
                "last_run": None if last is None else migrate.serde.unstructure(last),
            }
        )
        return 0
    print(f"plan {st.plan_id}")
    print(f"  {st.source} → {st.destination}")
    share = st.bytes_done / st.bytes_total if st.bytes_total else 1.0
    print(
        f"{sum(counts.values())} items: {_counts_line(counts)}; "
        f"{_size(st.bytes_done)} of {_size(st.bytes_total)} done ({share:.0%})"
    )
    print(f"complete: {'yes' if st.complete else 'no: ' + st.open}")
    if last is not None:
        if st.running:
            end = "is running now"
        elif last.finished is None:
            end = (
                "did not record its end (the process was killed); "
                f"continue with: carmigrate resume --ledger {args.ledger}"
            )
        else:
            end = f"ended: {last.stop_reason}"
        print(f"last run: {last.id} ({last.kind}) {end}")
    if st.stop_requested:
        print("a stop was requested and is waiting to be noticed")
    if st.leftovers:
        print(
            f"{len(st.leftovers)} left at the destination that cleanup could not remove:"
        )
        for kind, name, why in st.leftovers[:_LISTED]:
            print(f"  {kind} {name}: {why}")
        if len(st.leftovers) > _LISTED:
            print(f"  … and {len(st.leftovers) - _LISTED} more")
    return 0


@_errors
def _report(args: argparse.Namespace) -> int:
    with _open_ledger(args.ledger, readonly=True) as ledger:
        rep = migrate.report(ledger)
    if args.json:
        print(rep.to_json())
    else:
        sys.stdout.write(rep.to_markdown())
    return 1 if rep.failures_count or rep.unmigratable_count else 0


# ----------------------------------------------------------------------
# verify / rollback


@_errors
def _verify(args: argparse.Namespace) -> int:
    plan = None if args.plan is None else migrate.load_plan(args.plan)
    with _open_ledger(args.ledger) as ledger:
        limits = _limits(args, ledger.header.limits)
        source, destination = _store_options(
            args, ledger.header.source, ledger.header.destination
        )
        with _executor(args.dask, limits.concurrency) as executor:
            rep = migrate.verify(
                plan,
                ledger,
                executor=executor,
                stages=args.stages,
                reread_source=args.reread_source,
                limits=limits,
                store_options=migrate.StoreOptions(
                    source=source, destination=destination
                ),
            )
    if args.json:
        _emit({**migrate.serde.unstructure(rep), "ok": rep.ok})
    else:
        print(
            f"checked {rep.checked}: {rep.verified} verified ({rep.promoted} promoted), "
            f"{rep.unverifiable} unverifiable, {len(rep.mismatches)} mismatches, "
            f"{len(rep.errors)} unreadable"
        )
        for key, reason in rep.mismatches[:_LISTED]:
            print(f"  MISMATCH {key}: {reason}")
        for key, reason in rep.errors[:_LISTED]:
            print(f"  UNREADABLE {key}: {reason}")
        if rep.mismatches:
            print(f"to redo them: carmigrate resume --ledger {args.ledger}")
    return 0 if rep.ok else 1


@_errors
def _rollback(args: argparse.Namespace) -> int:
    with _open_ledger(args.ledger) as ledger:
        _, destination = _store_options(
            args, ledger.header.source, ledger.header.destination
        )
        res = migrate.rollback(
            ledger,
            args.stage,
            dry_run=args.dry_run,
            store_options=migrate.StoreOptions(destination=destination),
        )
    if args.json:
        _emit({**migrate.serde.unstructure(res), "dry_run": args.dry_run})
    else:
        verb = "would delete" if args.dry_run else "deleted"
        print(f"stage {res.stage}: {verb} {len(res.deleted)} objects")
        for key in res.deleted[:_LISTED]:
            print(f"  {key}")
        if len(res.deleted) > _LISTED:
            print(f"  … and {len(res.deleted) - _LISTED} more")
        if res.already_gone:
            print(f"already gone: {len(res.already_gone)}")
        for key, reason in res.kept:
            print(f"  kept {key}: {reason}")
        for key in res.unresolved:
            print(f"  unresolved {key}: caught mid-copy; run 'resume' first")
        for key, reason in res.errors:
            print(f"  ERROR {key}: {reason}")
    return 1 if res.errors or res.unresolved else 0
