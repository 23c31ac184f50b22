"""Every ```python block in the tutorials and how-to guides runs as written.

Blocks of one page run in order in one namespace, in a fresh temporary
directory, so a page can create the files its later blocks use.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent.parent / "docs"
PAGES = sorted(p for d in ("tutorial", "how-to") for p in (DOCS / d).glob("*.md"))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_page_examples_run(
    page: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The page's Python examples execute without error."""
    blocks = BLOCK.findall(page.read_text())
    namespace: dict[str, object] = {"__name__": "__docs__"}
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        for n, code in enumerate(blocks):
            exec(compile(code, f"{page.name}[block {n}]", "exec"), namespace)
    finally:
        os.chdir(cwd)
    capsys.readouterr()
