"""Benchmark the migration engine's core: plan/diff at scale and ledger throughput.

Scenarios (each in its own child process, so peak memory is its own):

- plan (sorted): N synthetic source entries already in key order, a
  destination holding half of them (mostly equal by MD5, some conflicting,
  some without digests), a few extras; plan streamed to a file.
  Targets: 10M entries in <= 60 s and <= 1 GiB peak RSS.
- plan (unsorted): the same listings in scrambled order, so both go through
  the external sort.
- ledger attach: inserting a plan's items into a new ledger.
- ledger state changes: one transaction per change, and batches of 1,000.
  Target: >= 20k state changes/s.
- execute: 1,000 x 1 MiB local -> local, default checks (size and SHA-256;
  MD5 is computed only when a source vouches for one), 4 threads. For
  comparison: rclone copy --checksum takes 2.1-3.1 s on this machine class.

Usage: python benchmarks/bench_migrate_core.py [--quick] [--items N]
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

CHILD = "--child"


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _scrambled(n: int):
    # a permutation of range(n): i -> (i * a + c) mod n with gcd(a, n) = 1
    import math

    a = 2654435761 % n or 1
    while math.gcd(a, n) != 1:
        a += 1
    for i in range(n):
        yield (i * a + 12345) % n


def _listings(n: int, scrambled: bool):
    from carmigrate.migrate import ListingEntry

    md5s: list = [f"{i:032x}" for i in range(1024)]
    make = tuple.__new__  # ListingEntry without its Python-level __new__
    digest_map = "digests" in ListingEntry._fields
    if digest_map:
        # this version's shape: (key, size, etag, digests, cold), a fresh
        # mapping per entry as ListingEntry.from_info makes it (the md5 place
        # of the older shape carries it, its sha256 place is dropped)
        rest: tuple = (False,)
    else:
        rest = (None, False)

    def d(i: int):
        return {"md5": md5s[i & 1023]} if digest_map else md5s[i & 1023]

    def key(i: int) -> str:
        return f"u{i // 1000:05d}/f{i:09d}.bin"

    def source():
        if scrambled:
            for i in _scrambled(n):
                yield make(
                    ListingEntry,
                    (key(i), 1000 + (i & 1023), f"e{i}", d(i), *rest),
                )
            return
        # in key order: format the user part once per thousand keys
        for u in range(-(-n // 1000)):
            pre = f"u{u:05d}/f"
            for i in range(u * 1000, min(n, u * 1000 + 1000)):
                yield make(
                    ListingEntry,
                    (
                        pre + f"{i:09d}.bin",
                        1000 + (i & 1023),
                        f"e{i}",
                        d(i),
                        *rest,
                    ),
                )

    order2 = _scrambled(n) if scrambled else range(n)

    def destination():
        for i in order2:
            r = i % 100
            if r < 40:  # equal by md5 -> SKIP
                yield make(
                    ListingEntry,
                    (key(i), 1000 + (i & 1023), None, d(i), *rest),
                )
            elif r < 45:  # different size -> CONFLICT
                yield make(ListingEntry, (key(i), 7, None, None, *rest))
            elif r < 50:  # same size, no digest -> VERIFY
                yield make(ListingEntry, (key(i), 1000 + (i & 1023), None, None, *rest))
            elif r == 99 and i % 1000 == 999:  # an extra right after it
                yield make(ListingEntry, (key(i) + "~", 1, None, None, *rest))

    return source(), destination()


def child_plan(n: int, scrambled: bool) -> dict[str, float]:
    from carmigrate.migrate import CohortRule, Stage, plan

    src, dst = _listings(n, scrambled)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "plan.jsonl")
        t0 = time.perf_counter()
        c0 = time.process_time()
        p = plan(
            "s3://source-bucket/data",
            "s3://destination-bucket/data",
            source_listing=src,
            destination_listing=dst,
            presorted=not scrambled,
            cohorts=CohortRule(segments=1),
            stages=[Stage("first", ["u0000*"])],
            path=path,
            temp_dir=tmp,
        )
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - c0
        size = os.path.getsize(path)
    return {
        "seconds": seconds,
        "cpu": cpu,
        "rss_mib": _rss_mib(),
        "items": p.header.item_count,
        "file_mib": size / 2**20,
        "rate": p.header.item_count / seconds,
    }


def _small_plan(n: int, path: str):
    from carmigrate.migrate import ListingEntry, plan

    src = (ListingEntry(f"k{i:09d}", 100, None, None, None, False) for i in range(n))
    return plan(
        "file:///src",
        "file:///dst",
        source_listing=src,
        destination_listing=(),
        presorted=True,
        path=path,
    )


def child_ledger(n: int) -> dict[str, float]:
    from carmigrate.migrate import ItemState, Ledger

    with tempfile.TemporaryDirectory() as tmp:
        p = _small_plan(n, os.path.join(tmp, "plan.jsonl"))
        ledger = Ledger(os.path.join(tmp, "ledger.db"))
        t0 = time.perf_counter()
        ledger.attach(p)
        attach = time.perf_counter() - t0
        single = min(n, 50_000)
        t0 = time.perf_counter()
        for seq in range(single):
            ledger.transition(seq, ItemState.COPYING, started=1.0)
        single_rate = single / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        batch = 1000
        done = 0
        for start in range(0, n, batch):
            with ledger.batch() as b:
                for seq in range(start, min(n, start + batch)):
                    b.transition(
                        seq,
                        ItemState.VERIFIED if seq < single else ItemState.COPYING,
                        sha256="0" * 64,
                        created=True,
                        checks=("sha256:source",),
                    )
                    done += 1
        batch_rate = done / (time.perf_counter() - t0)
        ledger.close()
    return {
        "attach_rate": n / attach,
        "single_rate": single_rate,
        "batch_rate": batch_rate,
        "items": n,
        "rss_mib": _rss_mib(),
    }


def child_execute(count: int, size: int) -> dict[str, float]:
    from carmigrate.migrate import Ledger, Limits, VerificationPolicy, execute, plan
    from carmigrate.storage import LocalStore

    with tempfile.TemporaryDirectory() as tmp:
        src = LocalStore(os.path.join(tmp, "src"))
        dst = LocalStore(os.path.join(tmp, "dst"), fsync=False)
        block = os.urandom(size)
        for i in range(count):
            with open(os.path.join(src.root, f"f{i:05d}"), "wb") as f:
                f.write(block[i:] + block[:i])
        t0 = time.perf_counter()
        p = plan(
            src, dst, verification=VerificationPolicy(checks=["size", "md5", "sha256"])
        )
        result = execute(
            p,
            Ledger(os.path.join(tmp, "l.db")),
            source=src,
            destination=dst,
            limits=Limits(concurrency=4),
        )
        seconds = time.perf_counter() - t0
        assert result.items == count, result
    return {
        "seconds": seconds,
        "files_per_s": count / seconds,
        "mib_per_s": count * size / 2**20 / seconds,
    }


def _run_child(*args: str, pythonpath: str | None = None) -> dict[str, float]:
    env = dict(os.environ)
    if pythonpath is not None:  # another version of carmigrate, for before/after
        env["PYTHONPATH"] = pythonpath
    out = subprocess.run(
        [sys.executable, __file__, CHILD, *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if out.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _compare(args: argparse.Namespace) -> None:
    """plan/diff, this carmigrate against another, round by round."""
    n = args.items or (200_000 if args.quick else 10_000_000)
    nu = args.unsorted_items or (100_000 if args.quick else 1_000_000)
    print(
        f"plan/diff before (PYTHONPATH={args.before}) and after, best of "
        f"{args.repeat} paired rounds, each round starting with the other version.\n"
    )
    print(
        "| plan/diff | version | best wall s | best CPU s | peak RSS | after / before per round (wall) |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for count, scrambled, what in ((n, "0", "sorted"), (nu, "1", "unsorted")):
        best: dict[str, dict[str, float]] = {}
        ratios: list[float] = []
        for round_no in range(args.repeat):
            order = ["before", "after"] if round_no % 2 == 0 else ["after", "before"]
            times = {}
            for version in order:
                r = _run_child(
                    "plan",
                    str(count),
                    scrambled,
                    pythonpath=args.before if version == "before" else None,
                )
                times[version] = r["seconds"]
                old = best.get(version)
                if old is None or r["seconds"] < old["seconds"]:
                    best[version] = r
            ratios.append(times["after"] / times["before"])
        for version in ("before", "after"):
            r = best[version]
            rounds = (
                f"{min(ratios):.2f}-{max(ratios):.2f}" if version == "after" else ""
            )
            print(
                f"| {count:,} {what} | {version} | {r['seconds']:.1f} | {r['cpu']:.1f} | "
                f"{r['rss_mib']:.0f} MiB | {rounds} |"
            )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == CHILD:
        kind = sys.argv[2]
        if kind == "plan":
            res = child_plan(int(sys.argv[3]), sys.argv[4] == "1")
        elif kind == "ledger":
            res = child_ledger(int(sys.argv[3]))
        else:
            res = child_execute(int(sys.argv[3]), int(sys.argv[4]))
        print(json.dumps(res))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="small sizes (a smoke run)"
    )
    parser.add_argument(
        "--items", type=int, default=None, help="listing entries for plan/diff"
    )
    parser.add_argument(
        "--unsorted-items",
        type=int,
        default=None,
        help="entries for the external-sort run",
    )
    parser.add_argument("--ledger-items", type=int, default=None)
    parser.add_argument(
        "--before",
        metavar="PATH",
        help="only compare plan/diff with another carmigrate installed at PATH "
        "(on PYTHONPATH), in paired rounds with rotated order",
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds with --before")
    args = parser.parse_args()
    if args.before:
        _compare(args)
        return
    n = args.items or (200_000 if args.quick else 10_000_000)
    nu = args.unsorted_items or (100_000 if args.quick else 10_000_000)
    nl = args.ledger_items or (20_000 if args.quick else 1_000_000)
    rows = []
    r = _run_child("plan", str(n), "0")
    ok = (
        "yes"
        if (n < 10_000_000 or (r["seconds"] <= 60 and r["rss_mib"] <= 1024))
        else "no"
    )
    rows.append(
        (
            f"plan/diff, {n:,} sorted entries",
            f"{r['seconds']:.1f} s wall, {r['cpu']:.1f} s CPU ({r['rate'] / 1e3:.0f}k items/s)",
            f"{r['rss_mib']:.0f} MiB",
            f"<= 60 s, <= 1 GiB for 10M: {ok}",
        )
    )
    r = _run_child("plan", str(nu), "1")
    rows.append(
        (
            f"plan/diff, {nu:,} unsorted entries (external sort)",
            f"{r['seconds']:.1f} s wall, {r['cpu']:.1f} s CPU ({r['rate'] / 1e3:.0f}k items/s)",
            f"{r['rss_mib']:.0f} MiB",
            "",
        )
    )
    r = _run_child("ledger", str(nl))
    rows.append(
        (
            f"ledger attach, {nl:,} items",
            f"{r['attach_rate'] / 1e3:.0f}k items/s",
            f"{r['rss_mib']:.0f} MiB",
            "",
        )
    )
    rows.append(
        (
            "ledger state changes, 1 transaction each",
            f"{r['single_rate'] / 1e3:.1f}k/s",
            "",
            f">= 20k/s: {'yes' if r['single_rate'] >= 20_000 else 'no'}",
        )
    )
    rows.append(
        (
            "ledger state changes, batches of 1,000",
            f"{r['batch_rate'] / 1e3:.1f}k/s",
            "",
            f">= 20k/s: {'yes' if r['batch_rate'] >= 20_000 else 'no'}",
        )
    )
    count = 100 if args.quick else 1000
    r = _run_child("execute", str(count), str(1 << 20))
    rows.append(
        (
            f"execute {count} x 1 MiB local->local (size+sha256, 4 threads)",
            f"{r['seconds']:.2f} s ({r['files_per_s']:.0f} files/s, {r['mib_per_s']:.0f} MiB/s)",
            "",
            "",
        )
    )
    load = os.getloadavg()[0]
    print(
        f"Machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"load average {load:.1f} at the end (CPU time is the planner's own, "
        "both threads)\n"
    )
    print("| scenario | time / rate | peak RSS | target |")
    print("|---|---|---:|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
