"""The tutorial's Python snippets run, in order, in an empty folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

TUTORIAL = Path(__file__).resolve().parents[2] / "docs" / "tutorial" / "car.md"


def test_tutorial_snippets_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ```python block of docs/tutorial/car.md executes without error."""
    snippets = re.findall(
        r"^```python\n(.*?)^```", TUTORIAL.read_text(), flags=re.DOTALL | re.MULTILINE
    )
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}

    for snippet in snippets:
        exec(compile(snippet, str(TUTORIAL), "exec"), namespace)

    assert len(snippets) >= 8
    assert (tmp_path / "example-v2.car").exists()
