"""The reference pages: no intro said twice, no private name in what they render.

Each page under ``docs/reference`` renders objects with ``::: name`` blocks
(mkdocstrings, loading the sources with griffe as the build does). A page
that renders a module's docstring must not restate it in its own words
above it, and nothing rendered may show a private name (``_select()``,
``_LINES.full``) as a default or a value, unless the block hides values.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import griffe
import pytest

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference"
PRIVATE = re.compile(r"(?<![\w.])_[A-Za-z]\w*")


def _blocks(page: Path) -> list[tuple[str, str]]:
    """``(identifier, options text)`` of each ``::: identifier`` block of a page."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if line.startswith("::: "):
            options = []
            for nxt in lines[i + 1 :]:
                if not nxt.startswith("    "):
                    break
                options.append(nxt)
            blocks.append((line[4:].strip(), "\n".join(options)))
    return blocks


@pytest.fixture(scope="module")
def package() -> Any:
    return griffe.load(
        "carmigrate",
        search_paths=[str(ROOT / "src")],
        resolve_aliases=True,
        resolve_external=False,
    )


def _lookup(package: Any, identifier: str) -> Any:
    path = identifier.removeprefix("carmigrate").lstrip(".")
    return package[path] if path else package


def _rendered(obj: Any, with_members: bool) -> list[Any]:
    """The object and, when its block shows members, its public members."""
    out = [obj]
    if with_members and obj.kind.value in ("module", "class"):
        for name, member in obj.members.items():
            if name.startswith("_"):
                continue
            if obj.kind.value == "module":
                exported = obj.exports
                if exported is not None and name not in exported:
                    continue
            try:
                if member.docstring is None:
                    continue  # mkdocstrings shows documented members only
            except griffe.AliasResolutionError:
                continue  # an import from outside the package
            out.append(member)
    return out


def _private_names(obj: Any, show_values: bool) -> list[str]:
    found = []
    kind = obj.kind.value
    if kind == "attribute" and show_values and obj.value is not None:
        found += [f"{obj.path} = {obj.value}" for _ in PRIVATE.findall(str(obj.value))]
    if kind == "function":
        for p in obj.parameters:
            if p.default is not None and PRIVATE.search(str(p.default)):
                found.append(f"{obj.path}({p.name}={p.default})")
    return found


def test_nothing_rendered_shows_a_private_name(package: Any) -> None:
    leaks: list[str] = []
    for page in sorted(REFERENCE.glob("*.md")):
        for identifier, options in _blocks(page):
            obj = _lookup(package, identifier)
            with_members = "members: false" not in options
            show_values = "show_attribute_values: false" not in options
            for each in _rendered(obj, with_members):
                leaks += [
                    f"{page.name}: {x}" for x in _private_names(each, show_values)
                ]
    assert leaks == []


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


@pytest.mark.parametrize("page", sorted(REFERENCE.glob("*.md")), ids=lambda p: p.name)
def test_a_page_does_not_restate_the_module_docstring_it_renders(
    page: Path, package: Any
) -> None:
    """The text above a rendered module docstring only points elsewhere."""
    text = page.read_text(encoding="utf-8")
    title = page.stem
    for identifier, _ in _blocks(page):
        obj = _lookup(package, identifier)
        if obj.kind.value != "module" or not obj.docstring:
            continue
        start = text.index(f"::: {identifier}")
        intro = text[:start].split("\n", 1)[-1]  # below the page's title
        intro = intro.rsplit("\n## ", 1)[-1] if "\n## " in intro else intro
        summary = _words(obj.docstring.value.split("\n\n", 1)[0])
        said = " ".join(_words(re.sub(r"\]\([^)]*\)", "]", intro)))
        # four words in a row of the module's summary line, said again above it
        for i in range(len(summary) - 3):
            phrase = " ".join(summary[i : i + 4])
            assert phrase not in said, (
                f"{title}: the text above ::: {identifier} restates its "
                f"docstring ({phrase!r})"
            )
