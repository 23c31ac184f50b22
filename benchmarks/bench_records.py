"""Benchmark planning record migrations: ID rules and natural-key merges at scale.

Two SQLite databases with one table ``users(id INTEGER PRIMARY KEY, email
TEXT UNIQUE, name TEXT, created REAL)`` and one referencing it
``projects(id INTEGER PRIMARY KEY, owner_id REFERENCES users, title TEXT)``:
the source holds N users and N/2 projects, the destination N/10 users, a
tenth of them with the same e-mail in other case as a source user (merged
on the case-folded natural key). Ids clash, so every id is offset. The plan
reads both databases and writes the record plan file.

Issue #14's target: a plan of 1M rows with merges in <= 30 s and bounded
memory. Each measurement runs in a child process, so its peak RSS is its
own.

Usage: python benchmarks/bench_records.py [--quick] [--rows N]
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time

CHILD = "--child"

MAPPING = """
version = 1

[[contexts]]
name = "accounts"
tables = ["users"]

[[contexts]]
name = "work"
tables = ["projects"]

[[ids]]
table = "users"
rule = "offset"
margin = 1000

[[ids]]
table = "projects"
rule = "offset"
margin = 1000

[[natural_keys]]
table = "users"
columns = ["email"]
casefold = true

[[policies]]
kind = "case_variant"
policy = "merge"
"""


def _make(path: str, users: int, projects: int, *, dest: bool) -> None:
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, "
        "name TEXT NOT NULL, created REAL NOT NULL);"
        "CREATE TABLE projects (id INTEGER PRIMARY KEY, owner_id INTEGER NOT NULL "
        "REFERENCES users(id), title TEXT NOT NULL);"
    )
    if dest:
        # every tenth source user exists here, its e-mail in upper case
        rows = (
            (i + 1, f"USER{i * 10}@EXAMPLE.ORG", f"user {i * 10}", 1.0)
            for i in range(users)
        )
    else:
        rows = (
            (i + 1, f"user{i}@example.org", f"user {i}", float(i)) for i in range(users)
        )
    db.executemany("INSERT INTO users VALUES (?, ?, ?, ?)", rows)
    db.executemany(
        "INSERT INTO projects VALUES (?, ?, ?)",
        ((i + 1, i % users + 1, f"project {i}") for i in range(projects)),
    )
    db.commit()
    db.close()


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(rows: int, src: str, dst: str, mapping: str, out: str) -> None:
    from carmigrate.records import (
        load_mapping,
        open_database,
        plan_records,
        save_record_plan,
    )

    t0 = time.perf_counter()
    with (
        open_database(f"sqlite:///{src}") as s,
        open_database(f"sqlite:///{dst}") as d,
    ):
        plan = plan_records(s, d, load_mapping(mapping))
    t_plan = time.perf_counter() - t0
    save_record_plan(plan, out)
    total = time.perf_counter() - t0
    merged = plan.summary().count("merge")
    print(
        json.dumps(
            {
                "plan_s": t_plan,
                "total_s": total,
                "rows": len(plan.rows),
                "merged": merged,
                "ok": plan.ok,
                "rss_mib": _rss_mib(),
                "file_mib": os.path.getsize(out) / 2**20,
            }
        )
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == CHILD:
        child(int(sys.argv[2]), *sys.argv[3:7])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 rows (smoke run)")
    parser.add_argument("--rows", type=int, default=None, help="source users")
    args = parser.parse_args()
    users = args.rows or (20_000 if args.quick else 666_667)
    projects = users // 2
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "src.db"), os.path.join(tmp, "dst.db")
        mapping = os.path.join(tmp, "mapping.toml")
        with open(mapping, "w") as f:
            f.write(MAPPING)
        t0 = time.perf_counter()
        _make(src, users, projects, dest=False)
        _make(dst, users // 10, 0, dest=True)
        made = time.perf_counter() - t0
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                CHILD,
                str(users),
                src,
                dst,
                mapping,
                os.path.join(tmp, "plan.jsonl"),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"{users + projects:,} source rows ({users:,} users, {projects:,} projects), "
        f"{users // 10:,} destination users; databases made in {made:.1f} s.\n"
    )
    print("| plan | rows | merged | plan s | + file s | peak RSS | plan file |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(
        f"| records, offset ids + case-folded e-mail merges | {r['rows']:,} | "
        f"{r['merged']:,} | {r['plan_s']:.1f} | {r['total_s'] - r['plan_s']:.1f} | "
        f"{r['rss_mib']:.0f} MiB | {r['file_mib']:.0f} MiB |"
    )


if __name__ == "__main__":
    main()
