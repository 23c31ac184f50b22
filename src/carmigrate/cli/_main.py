"""Argument parsing and dispatch for the ``carmigrate`` command."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence

from carmigrate._version import __version__
from carmigrate.errors import CarmigrateError

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


_GROUPS = ("_car", "_commp", "_aggregate", "_migrate", "_recipe")
"""Command modules, in help order; each has ``register(subparsers)``."""


def _registrars() -> list[
    Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]
]:
    regs = []
    for name in _GROUPS:
        if importlib.util.find_spec(f"carmigrate.cli.{name}") is None:
            continue  # a command group not installed in this build
        module = importlib.import_module(f"carmigrate.cli.{name}")
        regs.append(module.register)
    return regs


def build_parser() -> argparse.ArgumentParser:
    """Build the full argument parser (every command group registered)."""
    parser = argparse.ArgumentParser(
        prog="carmigrate",
        description="Move content-addressed data between stores, verify it, "
        "and pack it into Filecoin deals.",
    )
    parser.add_argument(
        "--version", action="version", version=f"carmigrate {__version__}"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in _registrars():
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``).

    Returns:
        The process exit code. A [CarmigrateError][carmigrate.errors.CarmigrateError]
        that escapes a command is printed as ``carmigrate: error: …`` and
        gives exit code 2, as does input nested too deeply to decode;
        Ctrl-C gives one line and exit code 130.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except CarmigrateError as exc:
        print(f"carmigrate: error: {exc}", file=sys.stderr)
        return 2
    except RecursionError:
        # json and DAG-CBOR decoders recurse: input nested thousands deep
        print(
            "carmigrate: error: the input is nested too deeply to be read",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("carmigrate: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # pragma: no cover - e.g. piped into head
        return 0
