"""Write docs/reference/cli.md from the argparse definitions.

Every command's ``--help`` text, in command order. Run it after changing the
command line; a test checks that the committed page is current.

    python scripts/gen_cli_reference.py [OUT]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from carmigrate.cli._main import build_parser

OUT = Path(__file__).resolve().parent.parent / "docs" / "reference" / "cli.md"

INTRO = """# Command line

`carmigrate` is a thin front end over the library: every command calls public functions and prints text or, with `--json`, one JSON object per line.
It is installed as a console script and also runs as `python -m carmigrate`.

Exit codes: **0** success; **1** the thing checked is bad (a CAR that fails verification, a proof that does not hold, a migration item that failed); **2** usage errors and inputs that cannot be processed; **130** a `run` or `resume` stopped by Ctrl-C or SIGTERM (the ledger stays consistent and `resume` continues).

This page is generated from the argument parser by `scripts/gen_cli_reference.py`.
"""


def _walk(
    parser: argparse.ArgumentParser, path: list[str]
) -> list[tuple[list[str], str]]:
    out = [(path, parser.format_help())]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.extend(_walk(sub, [*path, name]))
    return out


def render() -> str:
    """The page text (deterministic: a fixed terminal width)."""
    os.environ["COLUMNS"] = "88"
    parts = [INTRO]
    for path, text in _walk(build_parser(), ["carmigrate"]):
        depth = min(len(path) + 1, 5)
        parts.append(
            f"\n{'#' * depth} `{' '.join(path)}`\n\n```text\n{text.rstrip()}\n```\n"
        )
    return "".join(parts)


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    out.write_text(render())
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
