"""Loads the compiled core, if it was built, and describes its interface."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Protocol, cast

if TYPE_CHECKING:
    from carmigrate.cid import Buffer

__all__ = ["NATIVE", "NATIVE_ERROR", "NativeCore"]


class NativeCore(Protocol):
    """The functions of ``carmigrate.commp._native`` (see ``_csrc/native.c``).

    ``kernel`` arguments are ids from ``kernels()``. The hashing functions
    release the GIL.
    """

    MAX_HEIGHT: int

    def kernels(self) -> tuple[tuple[str, int], ...]:
        """Kernels this CPU runs, best first, as ``(name, id)``."""
        ...

    def node(self, kernel: int, left: Buffer, right: Buffer, /) -> bytes:
        """``H(left || right)``."""
        ...

    def subtree_root(self, kernel: int, data: Buffer, height: int, /) -> bytes:
        """Root of ``data`` zero-padded to a subtree of ``height``."""
        ...

    def chunk_roots(
        self, kernel: int, data: Buffer, log2_quads: int, threads: int, /
    ) -> bytes:
        """Roots of the consecutive ``127·2**log2_quads``-byte chunks of ``data``."""
        ...

    def hash_fd(
        self, kernel: int, fd: int, log2_quads: int, threads: int, max_chunks: int, /
    ) -> tuple[bytes, bytes, bool]:
        """Read and hash chunks from ``fd``: (roots, incomplete tail, at EOF)."""
        ...

    def fr32_pad(self, data: Buffer, /) -> bytes:
        """fr32-expand whole quads."""
        ...

    def zero_commitment(self, level: int, /) -> bytes:
        """The zero commitment of ``level`` as the core computed it."""
        ...


def _load() -> tuple[NativeCore | None, str]:
    try:
        module = importlib.import_module("carmigrate.commp._native")
    except ImportError as exc:
        return None, str(exc)
    return cast("NativeCore", module), ""


NATIVE, NATIVE_ERROR = _load()
"""The compiled core (or None) and, if it is missing, the import error."""
