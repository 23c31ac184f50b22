"""The public surface: exports are sorted, complete, documented and in the docs."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import griffe
import pytest

import carmigrate

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "reference"

PUBLIC_MODULES = sorted(
    ["carmigrate.errors", "carmigrate.digests"]
    + [
        f"carmigrate.{m.name}"
        for m in pkgutil.iter_modules(carmigrate.__path__)
        if m.ispkg and not m.name.startswith("_")
    ]
)


def _documented_targets() -> set[str]:
    text = "\n".join(p.read_text() for p in DOCS.glob("*.md"))
    return set(re.findall(r"^::: (carmigrate[\w.]*)", text, flags=re.MULTILINE))


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_sorted_and_complete(name: str) -> None:
    """__all__ is sorted, has no duplicates, and lists only existing names."""
    module = importlib.import_module(name)
    exported = list(module.__all__)

    assert exported == sorted(set(exported))
    for attr in exported:
        assert hasattr(module, attr), f"{name}.{attr} is in __all__ but missing"


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_public_name_has_a_docstring(name: str) -> None:
    """Every exported name (classes, functions, constants) carries a docstring."""
    package = griffe.load(name, search_paths=[str(ROOT / "src")])
    module = importlib.import_module(name)
    missing = []
    for attr in module.__all__:
        try:
            obj = package[attr]
        except KeyError:
            missing.append(attr)
            continue
        target = obj.final_target if obj.is_alias else obj
        if not (target.docstring and target.docstring.value.strip()):
            missing.append(attr)

    assert missing == []


@pytest.mark.parametrize("name", [m for m in PUBLIC_MODULES if m != "carmigrate.cli"])
def test_every_public_name_is_on_a_reference_page(name: str) -> None:
    """Each exported name appears in a `::: name` directive under docs/reference."""
    module = importlib.import_module(name)
    targets = _documented_targets()
    if name in targets:  # the whole module is rendered
        return

    missing = [a for a in module.__all__ if f"{name}.{a}" not in targets]

    assert missing == []


def test_import_carmigrate_is_light() -> None:
    """`import carmigrate` does not pull in heavy optional dependencies."""
    import subprocess
    import sys

    code = (
        "import sys, carmigrate, carmigrate.cid, carmigrate.errors; "
        "heavy = {'boto3', 'botocore', 'fsspec', 'dask', 'distributed', 'hypothesis', "
        "'tqdm', 'multiformats'}; print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert out.stdout.strip() == "[]"
