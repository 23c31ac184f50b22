"""A package's names, loaded from their modules on first use (PEP 562).

Importing a package whose ``__init__`` uses [lazy_names][carmigrate._lazy.lazy_names]
costs nothing until one of its names is used, so the command line starts
fast whatever the packages hold. Type checkers and documentation tools read
the package's ``if TYPE_CHECKING:`` imports instead.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["lazy_names"]


def lazy_names(
    package: str, sources: Mapping[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package whose names load on first use.

    Args:
        package: The package's ``__name__``.
        sources: Each name the package exports → the module defining it (a
            name equal to ``<package>.<name>`` is that submodule itself).

    Returns:
        ``(__getattr__, __dir__)``: the first loads a name from its module
        and keeps it in the package's namespace (later uses are plain
        lookups); an unknown name raises ``AttributeError``.
    """

    def __getattr__(name: str) -> object:
        source = sources.get(name)
        if source is None:
            msg = f"module {package!r} has no attribute {name!r}"
            raise AttributeError(msg)
        module = importlib.import_module(source)
        value = module if source == f"{package}.{name}" else getattr(module, name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *sources})

    return __getattr__, __dir__
