"""Benchmark record migrations: planning at scale, and importing into PostgreSQL.

**Planning.** Two SQLite databases with one table ``users(id INTEGER
PRIMARY KEY, email TEXT UNIQUE, name TEXT, created REAL)`` and one
referencing it ``projects(id INTEGER PRIMARY KEY, owner_id REFERENCES
users, title TEXT)``: the source holds 2/3 of the rows as users and 1/3 as
projects, the destination a tenth as many users, each with the same e-mail
in other case as a source user (merged on the case-folded natural key).
Ids clash, so every id is offset. The plan reads both databases and writes
the record plan file. Issue #14's target: a plan of 1M rows with merges in
<= 30 s and bounded memory. It runs in a child process, so its peak RSS is
its own.

**Importing.** The same tables in a private PostgreSQL 15 cluster started
here (``initdb`` + ``pg_ctl`` in a temporary folder, a unix socket only, as
``postgres`` through ``runuser`` when run as root): the source database,
the destination (its users to merge into), and an empty copy of the schema.
Each round imports the source's rows twice, into fresh copies made from
templates: with ``execute_records`` (the plan made once beforehand: offset
ids, merges), and with ``pg_dump --data-only SRC | psql COPY_OF_EMPTY``,
which cannot remap ids (hence the empty copy). Rounds are paired, the order
rotated each round; the table gives the medians. Issue #14's target:
``execute_records`` at >= 0.8x the throughput of ``pg_dump | psql``.

Usage: python benchmarks/bench_records.py [--quick] [--rows N] [--only plan|import]
       [--rounds R]
``--rows`` is the number of source rows (default 1,000,000 for the plan,
200,000 for the import). Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def bench_plan(users: int) -> None:
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


# -- importing into PostgreSQL -------------------------------------------------------

PG_BIN = Path(os.environ.get("CARMIGRATE_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_PORT = 5497

PG_SCHEMA = """
CREATE TABLE users (id integer PRIMARY KEY, email text NOT NULL UNIQUE,
  name text NOT NULL, created double precision NOT NULL);
CREATE TABLE projects (id integer PRIMARY KEY,
  owner_id integer NOT NULL REFERENCES users (id), title text NOT NULL);
"""


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class Cluster:
    """A private PostgreSQL cluster in a temporary folder, on a unix socket only."""

    def __init__(self, work: str) -> None:
        self.work = work
        self.data = os.path.join(work, "data")

    def __enter__(self) -> Cluster:
        os.chmod(self.work, 0o755)
        if os.geteuid() == 0:
            shutil.chown(self.work, "postgres")
        initdb = [str(PG_BIN / "initdb"), "-D", self.data, "-U", "postgres"]
        initdb += ["--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"]
        subprocess.run(_as_postgres(initdb), check=True, capture_output=True)
        options = f"-k {self.work} -c listen_addresses='' -p {PG_PORT}"
        start = [str(PG_BIN / "pg_ctl"), "-D", self.data, "-l"]
        start += [os.path.join(self.work, "log"), "-w", "-o", options, "start"]
        subprocess.run(_as_postgres(start), check=True, capture_output=True)
        return self

    def __exit__(self, *exc: object) -> None:
        stop = [str(PG_BIN / "pg_ctl"), "-D", self.data, "-m", "fast", "stop"]
        subprocess.run(_as_postgres(stop), capture_output=True, check=False)

    def url(self, db: str) -> str:
        return f"postgresql+psycopg://postgres@/{db}?host={self.work}&port={PG_PORT}"

    def libpq(self) -> list[str]:
        return ["-h", self.work, "-p", str(PG_PORT), "-U", "postgres"]

    def sql(self, db: str, statements: str) -> None:
        import psycopg

        with psycopg.connect(
            host=self.work, port=PG_PORT, user="postgres", dbname=db, autocommit=True
        ) as conn:
            conn.execute(statements)  # type: ignore[arg-type]

    def create(self, name: str, template: str | None = None) -> None:
        how = f" TEMPLATE {template}" if template else ""
        self.sql("postgres", f"CREATE DATABASE {name}{how}")

    def drop(self, name: str) -> None:
        self.sql("postgres", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def count(self, db: str) -> int:
        import psycopg

        with psycopg.connect(
            host=self.work, port=PG_PORT, user="postgres", dbname=db
        ) as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM projects)"
            ).fetchone()
        assert row is not None
        return int(row[0])


def _populate(cluster: Cluster, users: int, projects: int) -> None:
    cluster.create("src")
    cluster.sql(
        "src",
        PG_SCHEMA
        + f"""
INSERT INTO users SELECT i + 1, 'user' || i || '@example.org', 'user ' || i, i
  FROM generate_series(0, {users - 1}) i;
INSERT INTO projects SELECT i + 1, i % {users} + 1, 'project ' || i
  FROM generate_series(0, {projects - 1}) i;
""",
    )
    # every tenth source user is here already, its e-mail in upper case
    cluster.create("dst_template")
    cluster.sql(
        "dst_template",
        PG_SCHEMA
        + f"""
INSERT INTO users SELECT i + 1, 'USER' || i * 10 || '@EXAMPLE.ORG', 'user ' || i * 10, 1
  FROM generate_series(0, {users // 10 - 1}) i;
""",
    )
    cluster.create("empty_template")
    cluster.sql("empty_template", PG_SCHEMA)
    for db in ("src", "dst_template", "empty_template"):
        cluster.sql(db, "VACUUM ANALYZE")


def _run_carmigrate(cluster: Cluster, plan: object, name: str, tmp: str) -> float:
    from carmigrate.migrate import Ledger, execute_records

    cluster.create(name, "dst_template")
    ledger = os.path.join(tmp, f"{name}.ledger")
    t0 = time.perf_counter()
    with Ledger(ledger) as lg:
        execute_records(
            plan,  # type: ignore[arg-type]
            lg,
            source=cluster.url("src"),
            destination=cluster.url(name),
        )
    elapsed = time.perf_counter() - t0
    os.remove(ledger)
    return elapsed


def _run_pg_dump(cluster: Cluster, name: str) -> float:
    cluster.create(name, "empty_template")
    t0 = time.perf_counter()
    dump = subprocess.Popen(
        [str(PG_BIN / "pg_dump"), "--data-only", *cluster.libpq(), "src"],
        stdout=subprocess.PIPE,
    )
    psql = [str(PG_BIN / "psql"), "-q", "-v", "ON_ERROR_STOP=1", *cluster.libpq()]
    load = subprocess.run(
        [*psql, name], stdin=dump.stdout, stdout=subprocess.DEVNULL, check=False
    )
    assert dump.stdout is not None
    dump.stdout.close()
    if dump.wait() or load.returncode:
        msg = f"pg_dump | psql failed ({dump.returncode}, {load.returncode})"
        raise RuntimeError(msg)
    return time.perf_counter() - t0


def bench_import(rows: int, rounds: int) -> None:
    if not (PG_BIN / "initdb").exists():
        print(f"PostgreSQL 15 is not installed ({PG_BIN}/initdb missing): skipped.")
        return
    from carmigrate.records import load_mapping, open_database, plan_records

    projects = rows // 3
    users = rows - projects
    with tempfile.TemporaryDirectory(prefix="cmbench") as tmp, Cluster(tmp) as cluster:
        t0 = time.perf_counter()
        _populate(cluster, users, projects)
        made = time.perf_counter() - t0
        mapping = os.path.join(tmp, "mapping.toml")
        with open(mapping, "w") as f:
            f.write(MAPPING)
        t0 = time.perf_counter()
        with (
            open_database(cluster.url("src")) as s,
            open_database(cluster.url("dst_template")) as d,
        ):
            plan = plan_records(s, d, load_mapping(mapping))
        t_plan = time.perf_counter() - t0
        assert plan.ok
        # the plan's id (the digest of its encoding) is computed once per
        # plan object; a plan loaded from its file takes it from its header
        t0 = time.perf_counter()
        _ = plan.id
        t_id = time.perf_counter() - t0
        from carmigrate.records import load_record_plan, save_record_plan

        saved = os.path.join(tmp, "plan.jsonl")
        save_record_plan(plan, saved)
        t0 = time.perf_counter()
        load_record_plan(saved)
        t_load = time.perf_counter() - t0
        merged = plan.summary().count("merge")
        inserted = plan.summary().count("insert")
        times: dict[str, list[float]] = {"carmigrate": [], "pg_dump": []}
        for i in range(rounds):
            order = ["carmigrate", "pg_dump"]
            if i % 2:
                order.reverse()
            for how in order:
                name = f"{how}_{i}".replace("pg_dump", "pgdump")
                if how == "carmigrate":
                    times[how].append(_run_carmigrate(cluster, plan, name, tmp))
                    want = users // 10 + inserted
                else:
                    times[how].append(_run_pg_dump(cluster, name))
                    want = rows
                have = cluster.count(name)
                if have != want:
                    msg = f"{name}: {have} rows, expected {want}"
                    raise RuntimeError(msg)
                cluster.drop(name)
        extra = (t_id, t_load)
    cm = statistics.median(times["carmigrate"])
    t_id, t_load = extra
    pd = statistics.median(times["pg_dump"])
    print(
        f"{rows:,} source rows ({users:,} users, {projects:,} projects), "
        f"{users // 10:,} destination users to merge into; PostgreSQL 15 on a unix "
        f"socket; databases made in {made:.1f} s; {rounds} paired rounds, order "
        "rotated; medians (all rounds: "
        + ", ".join(
            f"{k} {' / '.join(f'{t:.1f}' for t in v)} s" for k, v in times.items()
        )
        + ").\n"
    )
    print("| import | rows | inserted | s | rows/s | vs pg_dump \\| psql |")
    print("|---|---:|---:|---:|---:|---:|")
    print(
        f"| `pg_dump --data-only \\| psql` (no remapping) | {rows:,} | {rows:,} | {pd:.1f} | {rows / pd:,.0f} | 1.00x |"
    )
    print(
        f"| `execute_records` (offset ids, {merged:,} merges) | {rows:,} | {inserted:,} | "
        f"{cm:.1f} | {rows / cm:,.0f} | {pd / cm:.2f}x |"
    )
    print(
        f"| `load_record_plan` + `execute_records` (as `records run`) | {rows:,} | "
        f"{inserted:,} | {t_load + cm:.1f} | {rows / (t_load + cm):,.0f} | "
        f"{pd / (t_load + cm):.2f}x |"
    )
    print(
        f"| `plan_records` + `execute_records` (plan id included) | {rows:,} | "
        f"{inserted:,} | {t_plan + t_id + cm:.1f} | {rows / (t_plan + t_id + cm):,.0f} | "
        f"{pd / (t_plan + t_id + cm):.2f}x |"
    )
    print(
        f"\nplan {t_plan:.1f} s, its id {t_id:.1f} s, loading the saved plan {t_load:.1f} s"
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == CHILD:
        child(int(sys.argv[2]), *sys.argv[3:7])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30,000 rows (smoke run)")
    parser.add_argument("--rows", type=int, default=None, help="source rows")
    parser.add_argument("--only", choices=("plan", "import"), default=None)
    parser.add_argument("--rounds", type=int, default=3, help="import rounds")
    args = parser.parse_args()
    if args.only in (None, "plan"):
        rows = args.rows or (30_000 if args.quick else 1_000_000)
        if args.only is None:
            print("### Planning\n")
        bench_plan(rows - rows // 3)
    if args.only in (None, "import"):
        rows = args.rows or (30_000 if args.quick else 200_000)
        if args.only is None:
            print("\n### Importing into PostgreSQL\n")
        bench_import(rows, 1 if args.quick and args.rounds == 3 else args.rounds)


if __name__ == "__main__":
    main()
