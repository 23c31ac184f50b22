"""Fixtures for the bagit tests: one LoC-made bag per session, copied per test."""

from __future__ import annotations

from pathlib import Path

import pytest
from bag_helpers import copy_bag, make_loc_bag


@pytest.fixture(scope="session")
def loc_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The standard bag (sha256 + sha512), made once by the LoC package: do not edit."""
    return make_loc_bag(tmp_path_factory.mktemp("loc") / "bag")


@pytest.fixture
def bag(loc_bag: Path, tmp_path: Path) -> Path:
    """A private copy of the standard bag, to break."""
    return copy_bag(loc_bag, tmp_path / "bag")
