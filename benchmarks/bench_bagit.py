"""Benchmark bag verification: carmigrate (API and CLI) against the LoC ``bagit`` package.

One bag of many small files (100,000 by default, a few bytes each, in
folders of 1,000), made by the LoC package with SHA-256 and SHA-512
manifests. Each round verifies it three ways, each in a fresh child process
so that its peak RSS (``VmHWM``) is its own:

- ``verify_bag(folder_source(bag))``, timed inside the child;
- ``carmigrate bag verify BAG --json``, timed from outside (interpreter
  start and imports included);
- ``bagit.Bag(bag).validate()`` (one process, its default), timed inside
  the child.

Rounds are paired and the order is rotated each round; one untimed pass
first puts the files in the page cache, so every run reads them from
memory. The table gives the medians.

Usage: python benchmarks/bench_bagit.py [--quick] [--files N] [--rounds R]
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# VmHWM: the peak of the child's own address space (getrusage's ru_maxrss
# would start at the parent's memory, which Linux carries over fork and exec)
_PEAK = """
def peak_mib():
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:")) / 1024
"""

_API = (
    _PEAK
    + """
import json, sys, time
from carmigrate.bagit import folder_source, verify_bag
before = peak_mib()
t0 = time.perf_counter()
result = verify_bag(folder_source(sys.argv[1]))
elapsed = time.perf_counter() - t0
assert result.valid, result.failures[:3]
print(json.dumps({"s": elapsed, "files": result.files, "grew_mib": peak_mib() - before}))
"""
)

_LOC = (
    _PEAK
    + """
import json, logging, sys, time
import bagit
logging.getLogger("bagit").setLevel(logging.ERROR)
before = peak_mib()
t0 = time.perf_counter()
bagit.Bag(sys.argv[1]).validate()
elapsed = time.perf_counter() - t0
print(json.dumps({"s": elapsed, "grew_mib": peak_mib() - before}))
"""
)


def _make_bag(folder: Path, files: int) -> float:
    import bagit

    logging.getLogger("bagit").setLevel(logging.ERROR)
    t0 = time.perf_counter()
    for i in range(files):
        sub = folder / f"d{i // 1000:04d}"
        if i % 1000 == 0:
            sub.mkdir(parents=True)
        (sub / f"f{i:07d}.txt").write_bytes(b"%d\n" % i)
    bagit.make_bag(
        str(folder), {"External-Identifier": "bench"}, checksums=["sha256", "sha512"]
    )
    return time.perf_counter() - t0


def _child(code: str, bag: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", code, str(bag)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def _cli(bag: Path) -> dict[str, float]:
    cmd = [sys.executable, "-m", "carmigrate", "bag", "verify", str(bag), "--json"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    if out.returncode != 0:
        msg = f"carmigrate bag verify exited {out.returncode}: {out.stdout[:500]}"
        raise RuntimeError(msg)
    return {"s": elapsed}


def bench(files: int, rounds: int) -> None:
    runs = {
        "api": lambda bag: _child(_API, bag),
        "cli": _cli,
        "loc": lambda bag: _child(_LOC, bag),
    }
    with tempfile.TemporaryDirectory(prefix="cmbench-bag") as tmp:
        bag = Path(tmp) / "bag"
        made = _make_bag(bag, files)
        for path in bag.rglob("*"):  # the untimed pass: every file in the page cache
            if path.is_file():
                path.read_bytes()
        results: dict[str, list[dict[str, float]]] = {k: [] for k in runs}
        names = list(runs)
        for i in range(rounds):
            order = names[i % len(names) :] + names[: i % len(names)]
            for name in order:
                results[name].append(runs[name](bag))
    median = {k: statistics.median(r["s"] for r in v) for k, v in results.items()}
    grew = {
        k: statistics.median(r["grew_mib"] for r in v)
        for k, v in results.items()
        if "grew_mib" in v[0]
    }
    loc = median["loc"]
    every = ", ".join(
        f"{k} {' / '.join(format(r['s'], '.2f') for r in v)} s"
        for k, v in results.items()
    )
    print(
        f"A bag of {files:,} files of 2 to 7 bytes in folders of 1,000, SHA-256 and "
        f"SHA-512 manifests, made by the LoC `bagit` package in {made:.1f} s; files in "
        f"the page cache; {rounds} paired rounds, order rotated; medians (all rounds: "
        f"{every}).\n"
    )
    print("| verifier | s | files/s | memory growth | vs LoC |")
    print("|---|---:|---:|---:|---:|")
    rows = [
        ("`carmigrate.bagit.verify_bag`", "api"),
        ("`carmigrate bag verify` (process start included)", "cli"),
        ("LoC `bagit.Bag(path).validate()`", "loc"),
    ]
    for label, key in rows:
        s = median[key]
        growth = f"{grew[key]:.1f} MiB" if key in grew else "n/a"
        print(f"| {label} | {s:.2f} | {files / s:,.0f} | {growth} | {loc / s:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 files (smoke run)")
    parser.add_argument("--files", type=int, default=None, help="files in the bag")
    parser.add_argument("--rounds", type=int, default=3, help="paired rounds")
    args = parser.parse_args()
    files = args.files or (5_000 if args.quick else 100_000)
    bench(files, args.rounds)


if __name__ == "__main__":
    main()
