"""Generated docs (pictures, the CLI reference) must be current."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def test_aggregate_layout_picture_is_current() -> None:
    """docs/explanation/aggregate-layout.svg equals what the packing policies produce now."""
    spec = importlib.util.spec_from_file_location(
        "draw_aggregate_layout", ROOT / "scripts" / "draw_aggregate_layout.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    committed = (ROOT / "docs" / "explanation" / "aggregate-layout.svg").read_text()

    assert committed == module.render(), "run scripts/draw_aggregate_layout.py"


def test_cli_reference_is_current(tmp_path) -> None:
    """docs/reference/cli.md equals the help the parser gives now.

    Rendered in a fresh interpreter: recipes that tests register in this one
    are not part of carmigrate's command line.
    """
    import subprocess
    import sys

    out = tmp_path / "cli.md"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_cli_reference.py"), str(out)],
        check=True,
        capture_output=True,
    )

    committed = (ROOT / "docs" / "reference" / "cli.md").read_text()

    assert committed == out.read_text(), "run scripts/gen_cli_reference.py"


def test_index_links_every_tutorial_how_to_and_explanation() -> None:
    """docs/index.md is the way in: every tutorial, how-to and explanation page is linked."""
    index = (ROOT / "docs" / "index.md").read_text()
    for folder in ("tutorial", "how-to", "explanation"):
        for page in sorted((ROOT / "docs" / folder).glob("*.md")):
            assert f"({folder}/{page.name})" in index, f"{folder}/{page.name}"
