"""Build script: the optional compiled modules.

Everything else about the package is declared in pyproject.toml. The two
extension modules are optional: when one cannot be compiled (no compiler,
missing Python headers, ``CC=/bin/false``) the install still succeeds with a
warning, and the package uses pure Python instead:

- ``carmigrate.commp._native``, the commP core (else the pure-Python
  reference, about 20x slower as measured on a 2-vCPU Intel Xeon);
- ``carmigrate.cid._sha256``, SHA-256 of many ranges two at a time with the
  x86 SHA instructions (else ``hashlib``, one range at a time);
- ``carmigrate.storage._fastio``, a local file's writes with the GIL given
  up once per chunk rather than once per ``write(2)`` (else ``os.write``).

Set ``CARMIGRATE_BUILD_NATIVE=0`` to skip both on purpose, or
``CARMIGRATE_BUILD_NATIVE=require`` to make a failed build fatal.
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CSRC = "src/carmigrate/commp/_csrc"
SHARED = "src/carmigrate/_csrc"
MODE = os.environ.get("CARMIGRATE_BUILD_NATIVE", "auto").strip().lower()


# What each compiled module's absence costs, as measured (see setup's docstring).
FALLBACKS = {
    "carmigrate.commp._native": (
        "commP falls back to the pure-Python reference: the same results, about "
        "20x slower (23 against 520 MB/s, one thread, 2-vCPU Intel Xeon)"
    ),
    "carmigrate.cid._sha256": (
        "SHA-256 of many ranges (CAR block checks) falls back to hashlib, one "
        "range at a time"
    ),
    "carmigrate.storage._fastio": (
        "local writes fall back to os.write (the GIL is given up per write(2))"
    ),
}


def _warn(message: str, module: str | None = None) -> None:
    names = [module] if module else list(FALLBACKS)
    effects = "".join(f"\n  - {FALLBACKS.get(n, n)}" for n in names)
    text = (
        "\n"
        + "*" * 72
        + f"\nWARNING: carmigrate's compiled {'module' if module else 'modules'} "
        f"{', '.join(names)} {'was' if module else 'were'} not built:\n  {message}\nThe package works without it:{effects}\n"
        "Run `carmigrate doctor` after the install to see what is active and "
        "measure it.\n" + "*" * 72 + "\n"
    )
    sys.stderr.write(text)


class OptionalBuildExt(build_ext):
    """build_ext that turns a failed compile into a warning (unless required)."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # any failure means "no core"
            if MODE == "require":
                raise
            _warn(f"{type(exc).__name__}: {exc}")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # CompileError, LinkError, OSError...
            if MODE == "require":
                raise
            _warn(f"{type(exc).__name__}: {exc}", ext.name)


def _extensions() -> list[Extension]:
    if MODE in {"0", "no", "false", "off"}:
        _warn("CARMIGRATE_BUILD_NATIVE=0")
        return []
    unix = os.name == "posix"
    return [
        Extension(
            "carmigrate.commp._native",
            sources=[f"{CSRC}/native.c", f"{CSRC}/commp_core.c"],
            depends=[f"{CSRC}/commp_core.h", f"{SHARED}/sha256_ni.h"],
            include_dirs=[CSRC, SHARED],
            extra_compile_args=["-O3", "-std=gnu11", "-pthread"] if unix else [],
            extra_link_args=["-pthread"] if unix else [],
        ),
        Extension(
            "carmigrate.storage._fastio",
            sources=["src/carmigrate/storage/_csrc/fastio.c"],
            extra_compile_args=["-O2", "-std=gnu11"] if unix else [],
        ),
        Extension(
            "carmigrate.cid._sha256",
            sources=["src/carmigrate/cid/_csrc/sha256x2.c"],
            depends=[f"{SHARED}/sha256_ni.h"],
            include_dirs=[SHARED],
            extra_compile_args=["-O3", "-std=gnu11"] if unix else [],
        ),
    ]


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
