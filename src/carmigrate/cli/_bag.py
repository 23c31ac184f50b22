"""The ``carmigrate bag`` commands: verify."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import TYPE_CHECKING

from carmigrate.cli._output import fail
from carmigrate.errors import CarmigrateError

if TYPE_CHECKING:
    from carmigrate.storage import Store

    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["register"]


def register(subparsers: Subparsers) -> None:
    from carmigrate.bagit import RULES

    """Add the ``bag`` command group to the top-level parser."""
    bag = subparsers.add_parser(
        "bag",
        help="verify BagIt bags in any store",
        description="Verify BagIt bags (RFC 8493) with the rules a storage service applies.",
    )
    sub = bag.add_subparsers(dest="bag_command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "verify",
        help="check every rule and every file of a bag; exit 0 only if it is valid",
        description="Check a bag against every rule (" + ", ".join(RULES) + ") and "
        "report every failure at once. Exit 0 when the bag is valid, 1 when a rule "
        "fails, 2 when the bag cannot be read at all.",
    )
    p.add_argument(
        "bag",
        metavar="BAG_URL",
        help="the bag's folder: a path or any store URL (s3://bucket/space/id/v1, ...)",
    )
    p.add_argument(
        "--replica-of",
        metavar="URL",
        help="the bag this one replicates: its tag manifest must be the same",
    )
    p.add_argument(
        "--external-identifier",
        metavar="ID",
        help="the External-Identifier bag-info.txt must carry",
    )
    p.add_argument(
        "--fetch-root",
        metavar="URL_PREFIX=STORE_URL",
        action="append",
        default=[],
        type=_fetch_root,
        help="read fetch.txt URLs starting with URL_PREFIX from the store at "
        "STORE_URL (the rest of the URL is the key); may be repeated",
    )
    p.add_argument(
        "--allowed-fetch-prefix",
        metavar="URL",
        help="every fetch.txt URL must lie under this URL (the bag's own space)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object: {"valid", "algorithm", "files", "bytes", "failures"}',
    )
    p.set_defaults(handler=_verify)


def _fetch_root(text: str) -> tuple[str, str]:
    prefix, sep, url = text.partition("=")
    if not sep or not prefix or not url:
        raise argparse.ArgumentTypeError(f"expected URL_PREFIX=STORE_URL, got {text!r}")
    return prefix, url


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


def _verify(args: argparse.Namespace) -> int:
    from carmigrate.bagit import verify_bag
    from carmigrate.migrate import store_bag_source, store_fetch_roots
    from carmigrate.storage import open_store

    try:
        with contextlib.ExitStack() as stack:

            def opened(url: str) -> Store:
                store = open_store(url)
                stack.callback(store.close)
                return store

            result = verify_bag(
                store_bag_source(opened(args.bag)),
                replica_of=None
                if args.replica_of is None
                else store_bag_source(opened(args.replica_of)),
                external_identifier=args.external_identifier,
                fetch_roots=store_fetch_roots(
                    {prefix: opened(url) for prefix, url in args.fetch_root}
                ),
                allowed_fetch_prefix=args.allowed_fetch_prefix,
            )
    except (CarmigrateError, OSError, ValueError) as e:
        if isinstance(e, BrokenPipeError):
            raise
        return fail(args, str(e), kind=type(e).__name__, command="bag verify")
    if args.json:
        _out(json.dumps(result.to_dict()))
    elif result.valid:
        _out(
            f"valid: {result.files} payload files, {result.bytes} bytes, "
            f"checked with {result.algorithm}"
        )
    else:
        for f in result.failures:
            _out(f"{f.rule}: {f.message}")
        rules = result.rules_failed()
        _out(
            f"INVALID: {len(result.failures)} failures of {len(rules)} rules "
            f"({', '.join(rules)})"
        )
    return 0 if result.valid else 1
