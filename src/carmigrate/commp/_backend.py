"""The seam between the two implementations, and which one is active.

Implementation names:

- ``native-shani``: the compiled core with the x86-64 SHA extensions;
- ``native-armv8``: the compiled core with the ARMv8 SHA-2 instructions;
- ``native-portable``: the compiled core in plain C (any CPU);
- ``reference``: the pure-Python reference (hashlib per node).

The compiled core picks the best kernel the CPU runs (cpuid on x86-64,
``getauxval(AT_HWCAP)`` on Linux/ARM). The environment variable
``CARMIGRATE_COMMP`` overrides the choice at import time: ``reference``
forces the reference, ``native`` requires the compiled core (import fails
without it), a full name such as ``native-portable`` requires that kernel,
and ``auto`` or unset picks the best available.

When ``auto`` finds no compiled core, nothing is printed at import: the
first commP computed with the reference logs one warning under
``carmigrate.commp`` (a library never configures handlers; the CLI shows
warnings), and ``carmigrate --version`` / ``carmigrate doctor`` say which
implementation is active and measure it.
"""

from __future__ import annotations

import logging
import os
from typing import Final, Protocol

from carmigrate.commp._loader import NATIVE, NATIVE_ERROR
from carmigrate.commp._native_engine import NativeEngine
from carmigrate.commp._reference import ReferenceEngine
from carmigrate.errors import PieceError

__all__ = [
    "ENV_VAR",
    "IMPLEMENTATION",
    "REFERENCE",
    "Engine",
    "available_implementations",
    "new_engine",
    "resolve_implementation",
]

ENV_VAR: Final = "CARMIGRATE_COMMP"
REFERENCE: Final = "reference"

_KERNELS: Final[dict[str, int]] = (
    {f"native-{name}": kid for name, kid in NATIVE.kernels()}
    if NATIVE is not None
    else {}
)


class Engine(Protocol):
    """What a PieceHasher needs of an implementation's tree state."""

    def update(self, data: memoryview) -> None:
        """Absorb payload bytes."""
        ...

    def root(self, height: int) -> bytes:
        """Root of the tree of ``height`` over the bytes so far (no state change)."""
        ...

    def copy(self) -> Engine:
        """An independent copy."""
        ...


def available_implementations() -> tuple[str, ...]:
    """The implementations this installation can run, fastest first.

    Always ends with ``"reference"``; the ``native-*`` names appear only when
    the compiled core was built and the CPU runs that kernel.
    """
    return (*_KERNELS, REFERENCE)


def _select() -> str:
    wanted = os.environ.get(ENV_VAR, "").strip().lower()
    best_native = next(iter(_KERNELS), None)
    if wanted in {"", "auto"}:
        if best_native is not None:
            return best_native
        return REFERENCE
    if wanted == REFERENCE:
        return REFERENCE
    if wanted == "native":
        if best_native is None:
            msg = (
                f"{ENV_VAR}=native requires the compiled commP core, which is not "
                f"available: {NATIVE_ERROR or 'not built'}"
            )
            raise ImportError(msg)
        return best_native
    if wanted in _KERNELS:
        return wanted
    msg = (
        f"{ENV_VAR}={wanted!r} is not available here; choose one of auto, native, "
        f"{', '.join(available_implementations())}"
    )
    raise ImportError(msg)


IMPLEMENTATION: Final[str] = _select()
"""The implementation used when none is named (see the module docstring)."""


def resolve_implementation(name: str | None) -> str:
    """Validate an implementation name; ``None`` means ``IMPLEMENTATION``.

    ``"native"`` means the best native kernel.

    Raises:
        PieceError: If the implementation is not available here.
    """
    if name is None:
        return IMPLEMENTATION
    if name == "native":
        best = next(iter(_KERNELS), None)
        if best is None:
            msg = f"the compiled commP core is not available: {NATIVE_ERROR or 'not built'}"
            raise PieceError(msg)
        return best
    if name == REFERENCE or name in _KERNELS:
        return name
    msg = (
        f"commP implementation {name!r} is not available here; "
        f"available: {', '.join(available_implementations())}"
    )
    raise PieceError(msg)


_log = logging.getLogger("carmigrate.commp")
_fallback_told = False


def _tell_fallback() -> None:
    """Log once that ``auto`` fell back to the reference (not when asked for)."""
    global _fallback_told  # once per process
    if _fallback_told or os.environ.get(ENV_VAR, "").strip().lower() == REFERENCE:
        return
    _fallback_told = True
    _log.warning(
        "commP uses the pure-Python reference because the compiled core is not "
        "available (%s); it gives the same results, %s. Reinstall with a C "
        "compiler to get the compiled core; `carmigrate doctor` measures both "
        "here; set %s=reference to say the reference is intended.",
        NATIVE_ERROR or "not built",
        REFERENCE_SLOWDOWN,
        ENV_VAR,
    )


REFERENCE_SLOWDOWN: Final = (
    "about 20 times slower than the compiled core (23 against 520 MB/s, one "
    "thread, on a 2-vCPU Intel Xeon with SHA-NI)"
)
"""The reference's measured slowdown, as messages state it (`carmigrate doctor` measures it here)."""


def new_engine(implementation: str, threads: int) -> Engine:
    """A fresh tree state for a resolved implementation name."""
    if implementation == REFERENCE:
        if IMPLEMENTATION == REFERENCE:
            _tell_fallback()
        return ReferenceEngine()
    assert NATIVE is not None
    return NativeEngine(NATIVE, _KERNELS[implementation], threads)
