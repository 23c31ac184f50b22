"""Type aliases shared by the cid package."""

from __future__ import annotations

from typing import TypeAlias

__all__ = ["Buffer"]

Buffer: TypeAlias = bytes | bytearray | memoryview
"""Any contiguous binary buffer carmigrate accepts as input."""
