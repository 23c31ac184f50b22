"""How every command reports an error: one line on stderr, and with ``--json`` a JSON object too."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, NoReturn

__all__ = ["JsonAwareParser", "fail", "json_wanted", "remember_argv"]

_ARGV: list[str] = []


def json_wanted(args: argparse.Namespace | None = None) -> bool:
    """Whether the command line asked for ``--json`` (parsed, or as given)."""
    if args is not None and getattr(args, "json", False):
        return True
    return "--json" in _ARGV


def remember_argv(argv: list[str]) -> None:
    """Keep the arguments for errors raised before they are parsed."""
    _ARGV[:] = argv


def fail(
    args: argparse.Namespace | None,
    message: str,
    *,
    code: int = 2,
    kind: str = "error",
    command: str | None = None,
    **details: Any,
) -> int:
    """Report an error the way every command does; return ``code``.

    Always one line on stderr: ``carmigrate <command>: error: <message>``.
    With ``--json``, also one JSON object on stdout, so a script reading
    stdout sees the failure: ``{"error": {"message", "type", "exit_code"}}``
    (``type`` is the error's class name, ``"usage"`` for a command line that
    does not parse, or ``"error"``), with ``details`` as further members.
    """
    name = command or _command_of(args)
    where = f"carmigrate {name}" if name else "carmigrate"
    if kind == "KeyboardInterrupt":  # not an error of the input: no "error:"
        print(f"{where}: {message}", file=sys.stderr)
    else:
        print(f"{where}: error: {message}", file=sys.stderr)
    if json_wanted(args):
        error: dict[str, Any] = {
            **details,
            "message": message,
            "type": kind,
            "exit_code": code,
        }
        if name:
            error["command"] = name
        sys.stdout.write(json.dumps({"error": error}, sort_keys=True) + "\n")
        sys.stdout.flush()
    return code


def _command_of(args: argparse.Namespace | None) -> str:
    if args is None:
        return ""
    parts = [
        str(getattr(args, attr))
        for attr in (
            "command",
            "car_command",
            "aggregate_command",
            "records_command",
            "recipe_command",
        )
        if isinstance(getattr(args, attr, None), str)
    ]
    return " ".join(parts)


class JsonAwareParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are also JSON under ``--json``."""

    def error(self, message: str) -> NoReturn:
        """Print the usage and the error (and the JSON object); exit 2."""
        if json_wanted():
            self.print_usage(sys.stderr)
            prog = self.prog.removeprefix("carmigrate").strip()
            fail(None, message, code=2, kind="usage", command=prog or None)
            raise SystemExit(2)
        super().error(message)
