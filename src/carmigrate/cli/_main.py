"""Argument parsing and dispatch for the ``carmigrate`` command."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, cast

from carmigrate._version import __version__
from carmigrate.cli._output import JsonAwareParser, fail, remember_argv
from carmigrate.errors import CarmigrateError

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


_GROUPS = (
    "_car",
    "_commp",
    "_aggregate",
    "_bag",
    "_migrate",
    "_records",
    "_recipe",
    "_job",
    "_doctor",
)
"""Command modules, in help order; each has ``register(subparsers)``."""


_SLOW_GROUPS = {
    "_recipe": (
        "recipe",
        "the real migrations: web3.storage uploads to w3up, Filecoin backfill",
    ),
}
"""Groups whose parsers need heavy imports (the recipe registry): command, help.

Unless their command runs (or the full parser is asked for), only the
command's one-line help is registered, which is all ``carmigrate --help``
shows; ``tests/cli/test_startup.py`` checks it matches the full parser's.
"""

Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _stub(command: str, text: str) -> Registrar:
    def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        sub.add_parser(command, help=text)

    return register


def _registrars(command: str | None) -> list[Registrar]:
    regs = []
    for name in _GROUPS:
        if importlib.util.find_spec(f"carmigrate.cli.{name}") is None:
            continue  # a command group not installed in this build
        slow = _SLOW_GROUPS.get(name)
        if slow is not None and command is not None and command != slow[0]:
            regs.append(_stub(*slow))
            continue
        module = importlib.import_module(f"carmigrate.cli.{name}")
        regs.append(module.register)
    return regs


def _command(argv: Sequence[str]) -> str:
    """The command word in ``argv`` (``""`` if none): the global options take no values."""
    for i, arg in enumerate(argv):
        if arg == "--":
            return argv[i + 1] if i + 1 < len(argv) else ""
        if not arg.startswith("-"):
            return arg
    return ""


class _Version(argparse.Action):
    """``--version``: the version and which compiled cores are active."""

    def __call__(
        self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any
    ) -> None:
        from carmigrate.cli._doctor import cores

        active = ", ".join(f"{k} {v}" for k, v in cores().items())
        print(f"carmigrate {__version__} ({active})")  # stdout, as argparse's version
        parser.exit()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Build the argument parser.

    Args:
        command: The command about to run, if known (``""`` for none, as for
            ``carmigrate --help``). Command groups that are slow to build (the
            recipes) are then fully built only if it is theirs; the others
            list their commands with their help either way. ``None`` (the
            default) builds every group in full.
    """
    parser = JsonAwareParser(
        prog="carmigrate",
        description="Move content-addressed data between stores, verify it, "
        "and pack it into Filecoin deals.",
    )
    parser.add_argument(
        "--version",
        action=_Version,
        nargs=0,
        help="show the version and the compiled cores in use, and exit",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log what the library does to stderr (-v: progress, -vv: every retry)",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="log errors only (no warnings)"
    )
    # every subparser is a JsonAwareParser too (argparse makes them of the
    # parent's class); the command groups only need ArgumentParser's API
    sub = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", metavar="COMMAND", required=True),
    )
    for register in _registrars(command):
        register(sub)
    return parser


def _configure_logging(verbose: int, quiet: bool) -> None:
    """Send the library's log records to stderr, at the level the flags ask for."""
    level = (
        logging.ERROR
        if quiet
        else logging.DEBUG
        if verbose >= 2
        else logging.INFO
        if verbose == 1
        else logging.WARNING
    )
    root = logging.getLogger("carmigrate")
    root.setLevel(level)
    if not any(isinstance(h, _Stderr) for h in root.handlers):
        handler = _Stderr()
        handler.setFormatter(
            logging.Formatter("carmigrate: %(levelname)s: %(message)s")
        )
        root.addHandler(handler)


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record comes (tests swap it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``).

    Returns:
        The process exit code. A [CarmigrateError][carmigrate.errors.CarmigrateError]
        that escapes a command is printed as ``carmigrate <command>: error: …``
        and gives exit code 2, as does input nested too deeply to decode;
        Ctrl-C gives one line and exit code 130. With ``--json``, every error
        is also one JSON object on stdout (``{"error": {...}}``).
    """
    words = list(sys.argv[1:] if argv is None else argv)
    remember_argv(words)
    parser = build_parser(_command(words))
    args = parser.parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    handler: Handler = args.handler
    try:
        return handler(args)
    except CarmigrateError as exc:
        return fail(args, str(exc), kind=type(exc).__name__)
    except RecursionError:
        # json and DAG-CBOR decoders recurse: input nested thousands deep
        return fail(
            args, "the input is nested too deeply to be read", kind="RecursionError"
        )
    except KeyboardInterrupt:
        return fail(args, "interrupted", code=130, kind="KeyboardInterrupt")
    except BrokenPipeError:  # pragma: no cover - e.g. piped into head
        return 0
