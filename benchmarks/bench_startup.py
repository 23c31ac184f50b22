#!/usr/bin/env python3
"""Benchmark the command line's start-up: ``carmigrate --version`` and ``--help``.

Every command pays this before it does anything: the interpreter, the
imports, and building the argument parser (issue #18: at most 0.15 s).
Each command runs as a subprocess, wall-clock time, against ``python -c
pass`` as the floor (the interpreter alone).

Two bytecode settings, since they differ by a factor of about two:

- *bytecode cached*: compiled modules are kept in a temporary folder
  (``PYTHONPYCACHEPREFIX``), warmed by one untimed run: what an installed
  package gives;
- *compiled each run*: ``PYTHONDONTWRITEBYTECODE=1`` and no cache for
  carmigrate's sources, as in a source checkout run that way (the standard
  library and installed dependencies keep their own caches).

Rounds are paired: each round runs every command once, in an order rotated
from round to round, so a busy neighbour slows all of them alike. Medians
and bests over the rounds.

Usage: ``python benchmarks/bench_startup.py [--quick] [--rounds N]``. Prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _carmigrate() -> list[str]:
    """The installed ``carmigrate`` script next to this interpreter, or ``-m``."""
    script = Path(sys.executable).with_name("carmigrate")
    if script.exists():
        return [str(script)]
    found = shutil.which("carmigrate")
    return [found] if found else [sys.executable, "-m", "carmigrate"]


def _sources_cached() -> bool:
    """Whether carmigrate's sources have ``__pycache__`` folders beside them."""
    import carmigrate

    return any(Path(carmigrate.__file__).parent.rglob("__pycache__"))


def _time(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def bench(rounds: int) -> None:
    cli = _carmigrate()
    commands = {
        "`python -c pass` (floor)": [sys.executable, "-c", "pass"],
        "`carmigrate --version`": [*cli, "--version"],
        "`carmigrate --help`": [*cli, "--help"],
    }
    base = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONPYCACHE")}
    base.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory() as cache:
        settings = {
            "bytecode cached": {**base, "PYTHONPYCACHEPREFIX": cache},
            "compiled each run": {**base, "PYTHONDONTWRITEBYTECODE": "1"},
        }
        runs = [(s, name) for s in settings for name in commands]
        for s, name in runs:  # warm the cache (and the page cache)
            _time(commands[name], settings[s])
        times: dict[tuple[str, str], list[float]] = {run: [] for run in runs}
        for r in range(rounds):
            k = r % len(runs)
            for s, name in runs[k:] + runs[:k]:
                times[s, name].append(_time(commands[name], settings[s]))
    print(
        f"{rounds} paired rounds, order rotated; wall-clock seconds per run "
        f"({' '.join(cli)})."
    )
    if _sources_cached():
        print(
            "Note: carmigrate's sources have __pycache__ folders, so the "
            "'compiled each run' rows read bytecode too."
        )
    print()
    print("| command | bytecode | median s | best s | median over the floor s |")
    print("| --- | --- | ---: | ---: | ---: |")
    for s in settings:
        floor = statistics.median(times[s, "`python -c pass` (floor)"])
        for name in commands:
            t = times[s, name]
            med = statistics.median(t)
            print(
                f"| {name} | {s} | {med:.3f} | {min(t):.3f} | "
                f"{'-' if 'floor' in name else f'{med - floor:.3f}'} |"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 rounds (smoke run)")
    ap.add_argument("--rounds", type=int, default=None, help="paired rounds (15)")
    args = ap.parse_args()
    bench(args.rounds or (3 if args.quick else 15))


if __name__ == "__main__":
    main()
