"""Start-up: what ``carmigrate --version``, ``--help`` and every command pay before running.

Issue #18: the command line starts in at most 0.15 s. Wall-clock time is
not asserted (machines differ and are shared); what made start-up slow is:
importing the storage backends, the migration engine, the recipes, SQL and
cloud SDKs to build a parser that needs none of them. Each test runs the
command line in a fresh interpreter and checks which modules it loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from carmigrate.cli._main import _command, build_parser

HEAVY = (
    # optional and third-party dependencies
    "azure",
    "boto3",
    "botocore",
    "cattrs",
    "dask",
    "distributed",
    "fsspec",
    "hypothesis",
    "multiformats",
    "psycopg",
    "sqlalchemy",
    "tqdm",
    # carmigrate's own heavy layers: only a command that uses them loads them
    "carmigrate.aggregate._queue",
    "carmigrate.car._reader",
    "carmigrate.migrate._executor",
    "carmigrate.migrate._ledger",
    "carmigrate.migrate._planner",
    "carmigrate.recipes",
    "carmigrate.records",
    "carmigrate.storage._azure",
    "carmigrate.storage._local",
    "carmigrate.storage._s3",
)

_PROBE = """
import json, sys
from carmigrate.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
print()
print(json.dumps(sorted(sys.modules)))
"""


def loaded_by(*argv: str) -> set[str]:
    """The modules a fresh interpreter holds after ``carmigrate ARGV``."""
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(argv=list(argv))],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


def heavy(modules: set[str]) -> list[str]:
    return sorted(
        m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--version"],
        ["--help"],
        ["car", "--help"],
        ["plan", "--help"],
        ["aggregate", "build", "--help"],
        ["records", "--help"],
        ["job", "--help"],
    ],
    ids=" ".join,
)
def test_start_up_loads_nothing_heavy(argv: list[str]) -> None:
    """Building the parser (and --version) imports no backend, engine or SDK."""
    assert heavy(loaded_by(*argv)) == []


def test_the_probe_sees_heavy_imports() -> None:
    """A command that runs the engine does load it (the check above can fail)."""
    modules = loaded_by("recipe", "--help")
    assert "carmigrate.recipes" in modules


def test_import_carmigrate_cli_is_light() -> None:
    """``import carmigrate.cli`` loads no command group's library either."""
    code = "import json, sys, carmigrate.cli; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    modules = set(json.loads(out.stdout))
    assert heavy(modules) == []
    assert not {"carmigrate.car", "carmigrate.migrate", "carmigrate.storage"} & modules


def test_top_level_help_is_the_full_parsers() -> None:
    """The start-up parser lists every command with the full parser's help text."""
    assert build_parser("").format_help() == build_parser().format_help()


def test_recipe_help_lists_every_recipe() -> None:
    """``carmigrate recipe --help`` still builds every recipe's command."""
    # the recipes the package registers (not those other tests registered here)
    names = subprocess.run(
        [
            sys.executable,
            "-c",
            "from carmigrate.recipes import recipe_names; print(*recipe_names())",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "owncloud" in names
    out = subprocess.run(
        [sys.executable, "-m", "carmigrate", "recipe", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in [*names, "filecoin-report", "bag-coverage"]:
        assert f"    {name}" in out


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        ([], ""),
        (["--version"], ""),
        (["-v", "-q", "recipe", "w3up-legacy"], "recipe"),
        (["-vv", "plan", "--help"], "plan"),
        (["--", "recipe"], "recipe"),
        (["--"], ""),
    ],
)
def test_command_word(argv: list[str], command: str) -> None:
    """The command is the first word that is not a (value-less) global option."""
    assert _command(argv) == command
