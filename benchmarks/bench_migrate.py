"""Benchmark a verified migration against ``rclone copy --checksum``.

Two data sets of CARs with 256 KiB raw blocks under content-addressed keys
(``<car cid>.car``, as in web3.storage's carpark), generated once under
``benchmarks/.data/migrate/``:

- 1,000 CARs of 1 MiB;
- 20 CARs of 100 MiB.

Each is copied local → local, in the same run, by:

- ``rclone copy --checksum --transfers N`` (checks whole-file hashes only);
- carmigrate ``plan`` + ``execute`` at concurrency N, checking the size, the
  SHA-256 the key names and every CAR block against its CID (the object is
  read once and all checks run on that read);
- the same with commP (PieceCID) computed too.

Times include listing and planning. The table gives each tool's best time
and, for carmigrate, the range of its speed relative to rclone's in the same
round. The destination is emptied and
``sync(2)`` called between runs (not timed; see ``fresh``); every tool runs
``--repeat`` times, interleaved, each round starting with the next tool in
turn, and the best time counts. Both tools read
the source once and drop its pages from the page cache as they go (rclone
always does; carmigrate's ``LocalStore(cache_reads=False)``, which the CLI
uses for a local source), so neither leaves the source cached for the next. Neither rclone nor carmigrate
(``fsync=False`` here) syncs files to disk; ``--fsync`` adds a carmigrate row
with ``LocalStore(fsync=True)``, the default of ``open_store``.

The machine may be shared (other processes, the page cache), so figures are
noisy; compare ratios within one run.

Targets: carmigrate >= 1.0x rclone's throughput while checking every block;
>= 0.8x of that with commP as well.

Usage: python benchmarks/bench_migrate.py [--quick] [--transfers N] [--repeat R]
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DATA = ROOT / ".data" / "migrate"
BLOCK = 256 << 10
MIB = 1 << 20


def _pool() -> bytes:
    return random_bytes(64 * MIB + BLOCK)


def random_bytes(n: int) -> bytes:
    import random

    return random.Random(7).randbytes(n)


def write_car(path_dir: Path, n: int, size: int, pool: bytes) -> None:
    """A CARv1 of about ``size`` bytes of distinct raw blocks, named by its CID."""
    from carmigrate.car import CarWriter
    from carmigrate.cid import CID

    blocks = []
    for j in range(max(1, size // BLOCK)):
        start = ((n * 7919 + j * 104729) * 64) % (len(pool) - BLOCK)
        data = f"{n}:{j}:".encode() + pool[start : start + BLOCK - 16]
        blocks.append((CID.from_data(data), data))
    buf = io.BytesIO()
    with CarWriter(buf, [blocks[0][0]]) as w:
        for cid, data in blocks:
            w.write(cid, data)
    car = buf.getvalue()
    (path_dir / f"{CID.from_data(car, codec='car')}.car").write_bytes(car)


def dataset(name: str, count: int, size: int) -> Path:
    """The folder of ``count`` CARs of ``size`` bytes, generated if missing."""
    where = DATA / f"{name}-{count}x{size // MIB}MiB"
    done = where.with_name(where.name + ".complete")
    if done.exists():
        return where
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    pool = _pool()
    t0 = time.perf_counter()
    for n in range(count):
        write_car(where, n, size, pool)
    done.write_text(f"{count} x {size}\n")
    print(
        f"<!-- generated {where} in {time.perf_counter() - t0:.1f} s -->",
        file=sys.stderr,
    )
    return where


def total_bytes(where: Path) -> int:
    return sum(p.stat().st_size for p in where.glob("*.car"))


def fresh(dst: Path) -> None:
    """Delete the last run's copy and sync (not timed).

    Every run, of either tool, starts right after the same deletion. That
    matters on an ext4 without a journal (as on the machine of
    ``RESULTS.md``): it skips recently freed inodes when it allocates new
    ones, so creating a file soon after a thousand were deleted costs about
    0.8 ms instead of 40 us.
    """
    shutil.rmtree(dst, ignore_errors=True)
    os.sync()


def run_rclone(src: Path, dst: Path, transfers: int) -> float:
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as conf:
        env["RCLONE_CONFIG"] = conf.name
        cmd = [
            "rclone",
            "copy",
            "--checksum",
            "--transfers",
            str(transfers),
            "--checkers",
            str(transfers),
            "-q",
            str(src),
            str(dst),
        ]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env)
        return time.perf_counter() - t0


def run_carmigrate(
    src: Path,
    dst: Path,
    transfers: int,
    commp: bool,
    fsync: bool,
    digests: bool = False,
) -> tuple[float, float, dict[str, int]]:
    """Plan and execute in this process; returns (total s, plan s, states)."""
    from carmigrate.migrate import (
        Check,
        Ledger,
        Limits,
        VerificationPolicy,
        execute,
        plan,
    )
    from carmigrate.storage import LocalStore

    checks = [Check.SIZE, Check.SHA256, Check.CAR]
    if commp:
        checks.append(Check.COMMP)
    policy = (
        VerificationPolicy(checks=checks, record=["sha512", "adler32"])
        if digests
        else VerificationPolicy(checks=checks)
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        # read once, as the CLI does: pages dropped from the cache once read
        source = LocalStore(src, create=False, cache_reads=False)
        destination = LocalStore(dst, fsync=fsync)
        p = plan(
            source,
            destination,
            verification=policy,
            limits=Limits(concurrency=transfers),
            path=os.path.join(tmp, "plan.jsonl"),
        )
        t_plan = time.perf_counter() - t0
        with Ledger(os.path.join(tmp, "ledger.db")) as ledger:
            result = execute(p, ledger, source=source, destination=destination)
        elapsed = time.perf_counter() - t0
    states = {s.value: n for s, n in result.counts.items()}
    return elapsed, t_plan, states


def child(argv: list[str]) -> None:
    """Run one carmigrate measurement in a fresh process; print JSON."""
    src, dst, transfers, commp, fsync, digests = argv
    elapsed, t_plan, states = run_carmigrate(
        Path(src), Path(dst), int(transfers), commp == "1", fsync == "1", digests == "1"
    )
    print(json.dumps({"seconds": elapsed, "plan": t_plan, "states": states}))


def measure_carmigrate(
    src: Path,
    dst: Path,
    transfers: int,
    commp: bool,
    fsync: bool,
    digests: bool = False,
    pythonpath: str | None = None,
) -> tuple[float, float]:
    env = dict(os.environ)
    if pythonpath is not None:  # another version of carmigrate, for before/after
        env["PYTHONPATH"] = pythonpath
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--child",
            str(src),
            str(dst),
            str(transfers),
            "1" if commp else "0",
            "1" if fsync else "0",
            "1" if digests else "0",
        ],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    data = json.loads(out.stdout)
    count = len(list(src.glob("*.car")))
    if data["states"] != {"verified": count}:
        raise SystemExit(f"carmigrate did not verify everything: {data['states']}")
    return data["seconds"], data["plan"]


_HASHED: dict[Path, float] = {}


def hash_seconds(src: Path) -> float:
    """Seconds SHA-512 and Adler-32 take over every CAR of ``src``, read from memory."""
    if src not in _HASHED:
        import hashlib
        import zlib

        best = float("inf")
        files = sorted(src.glob("*.car"))
        for _ in range(2):
            spent = 0.0
            for f in files:
                data = f.read_bytes()
                t0 = time.perf_counter()
                hashlib.sha512(data).hexdigest()
                zlib.adler32(data)
                spent += time.perf_counter() - t0
            best = min(best, spent)
        _HASHED[src] = best
    return _HASHED[src]


def check_copy(src: Path, dst: Path) -> None:
    names = sorted(p.name for p in src.glob("*.car"))
    got = sorted(p.name for p in dst.glob("*.car"))
    if names != got:
        raise SystemExit(f"{dst}: {len(got)} CARs, {len(names)} expected")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data, one repeat")
    parser.add_argument(
        "--transfers", type=int, default=4, help="rclone --transfers = concurrency"
    )
    parser.add_argument("--repeat", type=int, default=2, help="runs per tool (best)")
    parser.add_argument(
        "--fsync", action="store_true", help="also time carmigrate with fsync on"
    )
    parser.add_argument(
        "--before",
        metavar="PATH",
        help="also time another carmigrate (installed at PATH, put on PYTHONPATH), "
        "for before/after tables in one run",
    )
    parser.add_argument(
        "--digests",
        action="store_true",
        help="also time carmigrate recording sha512 and adler32, against the "
        "time those two take alone over the same bytes",
    )
    args = parser.parse_args()
    if shutil.which("rclone") is None:
        raise SystemExit("rclone is not installed (make system-deps)")

    from carmigrate.commp import IMPLEMENTATION

    if args.quick:
        sets = [("small", 100, MIB), ("big", 2, 20 * MIB)]
        repeat = 1
    else:
        sets = [("small", 1000, MIB), ("big", 20, 100 * MIB)]
        repeat = args.repeat
    version = subprocess.run(
        ["rclone", "version"], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    print(
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, commP core "
        f"{IMPLEMENTATION}, rclone {version}, concurrency {args.transfers}, best of "
        f"{repeat}. The machine may be shared: numbers are noisy.\n"
    )
    # (label, commP, fsync, sha512 + adler32 recorded, PYTHONPATH)
    tools: list[tuple[str, bool, bool, bool, str | None]] = [
        ("carmigrate: size + sha256 + every CAR block", False, False, False, None),
        ("carmigrate: the same + commP", True, False, False, None),
    ]
    if args.digests:
        tools.append(
            (
                "carmigrate: size + sha256 + every block, + sha512 + adler32",
                False,
                False,
                True,
                None,
            )
        )
    if args.before:
        tools += [
            (
                "before: size + sha256 + every CAR block",
                False,
                False,
                False,
                args.before,
            ),
            ("before: the same + commP", True, False, False, args.before),
        ]
    if args.fsync:
        tools.append(
            ("carmigrate: the same + commP, fsync on", True, True, False, None)
        )
    rows = []
    for name, count, size in sets:
        src = dataset(name, count, size)
        nbytes = total_bytes(src)
        dst = DATA / "dst"
        best: dict[str, float] = {}
        plans: dict[str, float] = {}
        # rclone's time over the tool's, round by round: the machine drifts
        # between rounds, less within one
        paired: dict[str, list[float]] = {t[0]: [] for t in tools}
        entries: list[tuple[str, bool, bool, bool, str | None] | None] = [
            None,
            *tools,
        ]  # None: rclone
        for round_no in range(repeat):
            # each round starts with a different tool, so that no tool always
            # runs first or last (a run can leave memory in a state that
            # helps or hurts the next one)
            shift = round_no % len(entries)
            times: dict[str, float] = {}
            for entry in entries[shift:] + entries[:shift]:
                fresh(dst)
                if entry is None:
                    t = run_rclone(src, dst, args.transfers)
                    check_copy(src, dst)
                    times["rclone"] = t
                    best["rclone"] = min(best.get("rclone", t), t)
                    continue
                label, commp, fsync, digests, pythonpath = entry
                t, t_plan = measure_carmigrate(
                    src, dst, args.transfers, commp, fsync, digests, pythonpath
                )
                check_copy(src, dst)
                times[label] = t
                if t < best.get(label, float("inf")):
                    best[label] = t
                    plans[label] = t_plan
            for label, *_ in tools:
                paired[label].append(times["rclone"] / times[label])
        fresh(dst)
        what = f"{count} x {size // MIB} MiB"
        base = nbytes / best["rclone"]
        rows.append(
            (
                what,
                "rclone copy --checksum (whole-file MD5)",
                best["rclone"],
                base,
                None,
                "",
            )
        )
        if args.digests:
            rows.append(
                (
                    what,
                    "sha512 + adler32 alone over the same bytes, one core (hashlib, zlib)",
                    hash_seconds(src),
                    nbytes / hash_seconds(src),
                    None,
                    "",
                )
            )
        for label, *_ in tools:
            rate = nbytes / best[label]
            rows.append(
                (
                    what,
                    f"{label} (plan {plans[label]:.2f} s)",
                    best[label],
                    rate,
                    rate / base,
                    f"{min(paired[label]):.2f}-{max(paired[label]):.2f}",
                )
            )
    print("| data | tool | best s | MB/s | x rclone (best) | x rclone per round |")
    print("|---|---|---:|---:|---:|---:|")
    for what, label, seconds, rate, ratio, rounds in rows:
        if ratio is not None:
            r = f"{ratio:.2f}"
        else:
            r = "1.00" if label.startswith("rclone") else "-"
        print(
            f"| {what} | {label} | {seconds:.2f} | {rate / 1e6:.0f} | {r} | {rounds} |"
        )


if __name__ == "__main__":
    main()
