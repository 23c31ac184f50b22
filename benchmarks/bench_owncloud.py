"""Benchmark the owncloud recipe against ``rclone copy`` of the same data directory.

A generated ownCloud 10 instance (the tables of
``tests/recipes/owncloud_instance.py``: ``oc_storages``, ``oc_filecache``
with checksums as ownCloud writes them, …) with ``--users`` users of
``--files`` small files each (1-8 KiB, in folders of 100) in a SQLite
database and a local data directory.

Each round, in paired order rotated per round, into a fresh local folder:

- **carmigrate (API)**: ``run_recipe(OWNCLOUD, …)`` of every user, layout
  ``spaces``: every file read once, its SHA-1, MD5 and Adler-32 compared
  with the database's, written durably (fsync), then the metadata records,
  the read-back fidelity check and the ID map;
- **carmigrate (CLI)**: the same through ``carmigrate recipe owncloud``,
  as an administrator runs it (the interpreter's start-up included);
- **rclone**: ``rclone copy --checksum --transfers 4`` of the data
  directory (bytes only: no ids, etags, metadata, checks against the
  database or fsync).

Usage: python benchmarks/bench_owncloud.py [--quick] [--users U] [--files F] [--rounds R]
Prints a Markdown table: median and best seconds, files/s and MB/s.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "recipes"))

import owncloud_instance as gen  # noqa: E402

from carmigrate.recipes import OWNCLOUD, OwncloudOptions, run_recipe  # noqa: E402
from carmigrate.storage import LocalStore  # noqa: E402

INSTANCE = "ocbench00001"


def make_instance(root: Path, users: int, files: int) -> tuple[str, Path, int, int]:
    """Write the instance; its db URL, data directory, file count and bytes."""
    rng = random.Random(7)
    root.mkdir(parents=True)
    data = root / "data"
    db = sqlite3.connect(root / "owncloud.db")
    db.executescript(gen.DDL)
    mime = {}
    for m in gen.MIMETYPES:
        mime[m] = db.execute(
            "INSERT INTO oc_mimetypes (mimetype) VALUES (?)", (m,)
        ).lastrowid
    total = count = 0
    rows: list[tuple[object, ...]] = []
    fileid = 0

    def row(storage: int, path: str, parent: int, content: bytes | None) -> int:
        nonlocal fileid
        fileid += 1
        is_dir = content is None
        mt = gen.DIRECTORY if is_dir else "text/plain"
        size = 0 if content is None else len(content)
        rows.append(
            (
                fileid,
                storage,
                path,
                hashlib.md5(path.encode()).hexdigest(),
                parent,
                path.rsplit("/", 1)[-1],
                mime[mt],
                mime[mt.split("/")[0]],
                size,
                gen.MTIME,
                gen.MTIME,
                hashlib.md5(f"{path}{size}".encode()).hexdigest(),
                31 if is_dir else 27,
                None if content is None else gen.checksum_column(content),
            )
        )
        return fileid

    for u in range(users):
        user = f"user{u:03d}"
        storage = int(
            db.execute(
                "INSERT INTO oc_storages (id, available) VALUES (?, 1)",
                (f"home::{user}",),
            ).lastrowid
            or 0
        )
        top = row(storage, "", -1, None)
        files_id = row(storage, "files", top, None)
        folder_id = files_id
        for n in range(files):
            if n % 100 == 0:
                folder = f"files/d{n // 100:04d}"
                folder_id = row(storage, folder, files_id, None)
                (data / user / folder).mkdir(parents=True)
            content = rng.randbytes(rng.randint(1024, 8192))
            path = f"{folder}/f{n:06d}.txt"
            row(storage, path, folder_id, content)
            (data / user / path).write_bytes(content)
            total += len(content)
            count += 1
    db.executemany(
        "INSERT INTO oc_filecache (fileid, storage, path, path_hash, parent, name, mimetype,"
        " mimepart, size, mtime, storage_mtime, etag, permissions, checksum)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        rows,
    )
    db.commit()
    db.close()
    return f"sqlite:///{root / 'owncloud.db'}", data, count, total


def run_api(db: str, data: Path, target: Path, work: Path, users: int) -> None:
    o = OwncloudOptions(
        db=db,
        data=str(data),
        to=LocalStore(target, create=True),
        instance_id=INSTANCE,
        users=tuple(f"user{u:03d}" for u in range(users)),
    )
    result = run_recipe(OWNCLOUD, o, work)
    assert result.complete, result.to_markdown()


def run_cli(db: str, data: Path, target: Path, work: Path, users: int) -> None:
    argv = [
        str(Path(sys.executable).with_name("carmigrate")),
        "recipe",
        "owncloud",
        "--db",
        db,
        "--data",
        str(data),
        "--to",
        str(target),
        "--instance-id",
        INSTANCE,
        "--work",
        str(work),
    ]
    for u in range(users):
        argv += ["--user", f"user{u:03d}"]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)


def run_rclone(data: Path, target: Path) -> None:
    subprocess.run(
        [
            "rclone",
            "copy",
            "--checksum",
            "--transfers",
            "4",
            "-q",
            str(data),
            str(target),
        ],
        check=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    a = parser.parse_args()
    if a.quick:
        a.users, a.files, a.rounds = 2, 500, 1
    base = Path(tempfile.mkdtemp(prefix="bench-owncloud-", dir=HERE / ".data"))
    try:
        db, data, count, size = make_instance(base / "oc", a.users, a.files)
        sides = {
            "carmigrate recipe owncloud (API)": lambda t, w: run_api(
                db, data, t, w, a.users
            ),
            "carmigrate recipe owncloud (CLI)": lambda t, w: run_cli(
                db, data, t, w, a.users
            ),
            "rclone copy --checksum --transfers 4": lambda t, w: run_rclone(data, t),
        }
        times: dict[str, list[float]] = {k: [] for k in sides}
        names = list(sides)
        for r in range(a.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                target, work = base / "target", base / "work"
                shutil.rmtree(target, ignore_errors=True)
                shutil.rmtree(work, ignore_errors=True)
                os.sync()
                t0 = time.perf_counter()
                sides[name](target, work)
                times[name].append(time.perf_counter() - t0)
        print(
            f"{a.users} users x {a.files} files = {count:,} files, "
            f"{size / 1e6:.1f} MB; {a.rounds} paired rounds, order rotated; local → local"
        )
        print()
        print(
            "| what | median s | best s | files/s (median) | MB/s (median) | vs rclone |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        ref = statistics.median(times[names[-1]])
        for name in names:
            med, best = statistics.median(times[name]), min(times[name])
            print(
                f"| {name} | {med:.2f} | {best:.2f} | {count / med:,.0f} "
                f"| {size / 1e6 / med:.1f} | {ref / med:.2f}x |"
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
