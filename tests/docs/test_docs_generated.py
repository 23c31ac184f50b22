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


def test_cli_reference_is_current() -> None:
    """docs/reference/cli.md equals the help the parser gives now."""
    spec = importlib.util.spec_from_file_location(
        "gen_cli_reference", ROOT / "scripts" / "gen_cli_reference.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    committed = (ROOT / "docs" / "reference" / "cli.md").read_text()

    assert committed == module.render(), "run scripts/gen_cli_reference.py"
