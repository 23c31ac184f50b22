"""Benchmark the oSPARC recipe: export and import of a generated deployment's projects.

A private PostgreSQL 15 cluster (as in ``bench_records.py``) and moto's S3
server in a child process (as in ``bench_recipes.py``) hold two generated
deployments with the real osparc-simcore tables (the generator of
``tests/recipes/osparc_schema.py``): the source with ``--projects`` projects
of 3 nodes and 4 files each (``--file-kib`` KiB a file), the destination
with the same users (to merge into) and none of the projects.

Each round measures, in paired order rotated per round:

- **carmigrate**: ``export_osparc_projects`` of every project (one archive
  each: every row and byte read, checked against the rows' checksums and
  written as a verifiable CARv2), then ``import_osparc_archive`` of every
  archive into the destination (every block verified, pre-flight, lease,
  files written and checked, rows staged, planned and executed with their
  checkpoints);
- **reference**: ``pg_dump`` of the source database to a file plus
  ``rclone copy --checksum`` of the source bucket to a local folder (the
  export), then ``psql`` of that dump into an empty database plus
  ``rclone copy --checksum`` of the folder into a new bucket (the import) —
  the same rows and bytes, with no id remapping, no merge and no checks
  beyond rclone's.

Usage: python benchmarks/bench_osparc.py [--quick] [--projects N] [--file-kib K] [--rounds R]
Prints a Markdown table.
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
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "recipes"))

import osparc_schema as gen  # noqa: E402

from bench_recipes import Moto  # noqa: E402
from bench_records import PG_BIN, Cluster  # noqa: E402
from carmigrate.recipes import export_osparc_projects, import_osparc_archive  # noqa: E402


def deployments(projects: int, kib: int) -> tuple[gen.Deployment, gen.Deployment]:
    users = [(f"user{i}@example.org", f"user{i}") for i in range(max(2, projects // 5))]
    source = gen.Deployment(
        label="bench-src",
        users=users,
        projects=[
            gen.Project(
                f"p{i}",
                users[i % len(users)][0],
                ["n0", "n1", "n2"],
                [
                    gen.File(n % 3, f"f{n}.dat", os.urandom(kib * 1024))
                    for n in range(4)
                ],
            )
            for i in range(projects)
        ],
    )
    dest = gen.Deployment(label="bench-dst", users=list(users))
    return source, dest


def rclone(*args: str, env: dict[str, str]) -> None:
    # rclone cannot load a custom CA bundle for a plain-HTTP endpoint
    base = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    subprocess.run(
        ["rclone", *args, "--checksum", "--transfers", "4", "-q"],
        check=True,
        env={**base, **env},
    )


def check(url: str, projects: int, store: object) -> None:
    """Every project arrived, with as many objects as rows of files."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        have = conn.exec_driver_sql("SELECT count(*) FROM projects").scalar_one()
        files = conn.exec_driver_sql("SELECT count(*) FROM file_meta_data").scalar_one()
    engine.dispose()
    objects = sum(1 for _ in store.list())  # type: ignore[attr-defined]
    if have != projects or objects != files:
        msg = (
            f"import incomplete: {have} projects, {files} file rows, {objects} objects"
        )
        raise RuntimeError(msg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--projects", type=int, default=20)
    ap.add_argument("--file-kib", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--quick", action="store_true", help="3 projects of 64 KiB files, 1 round"
    )
    args = ap.parse_args()
    if args.quick:
        args.projects, args.file_kib, args.rounds = 3, 64, 1
    if not (PG_BIN / "initdb").exists() or shutil.which("rclone") is None:
        print("needs PostgreSQL 15 and rclone: skipped")
        return
    source, dest = deployments(args.projects, args.file_kib)
    mb = sum(len(f.data or b"") for p in source.projects for f in p.files) / 1e6
    moto = Moto()
    times: dict[str, list[float]] = {"carmigrate": [], "reference": []}
    try:
        with (
            tempfile.TemporaryDirectory(prefix="cmosparc") as tmp,
            Cluster(tmp) as cluster,
        ):
            src_bucket = moto.bucket("src")
            cluster.create("src")
            gen.create(cluster.url("src"))
            gen.populate(cluster.url("src"), source, put=src_bucket.write)
            cluster.create("dst_template")
            gen.create(cluster.url("dst_template"))
            gen.populate(cluster.url("dst_template"), dest)
            cluster.create("empty_template")
            bucket_name = src_bucket.url.split("://", 1)[1].split("/", 1)[0]
            env = {
                "RCLONE_CONFIG_M_TYPE": "s3",
                "RCLONE_CONFIG_M_PROVIDER": "Other",
                "RCLONE_CONFIG_M_ENDPOINT": moto.endpoint,
                "RCLONE_CONFIG_M_ACCESS_KEY_ID": "bench",
                "RCLONE_CONFIG_M_SECRET_ACCESS_KEY": "bench",
                "RCLONE_CONFIG_M_REGION": "us-east-1",
                "RCLONE_CONFIG_M_FORCE_PATH_STYLE": "true",
            }
            uuids = [gen.project_uuid(source, p) for p in source.projects]
            for r in range(args.rounds):
                order = ["carmigrate", "reference"]
                if r % 2:
                    order.reverse()
                for how in order:
                    work = Path(tmp) / f"{how}{r}"
                    work.mkdir()
                    if how == "carmigrate":
                        db = f"dst{r}"
                        cluster.create(db, "dst_template")
                        into = moto.bucket(f"dst{r}")
                        t0 = time.perf_counter()
                        archives = []
                        for pu in uuids:
                            out = work / f"{pu}.car"
                            export_osparc_projects(
                                cluster.url("src"), src_bucket, [pu], out
                            )
                            archives.append(out)
                        for n, a in enumerate(archives):
                            staging = f"stage{r}_{n}"
                            cluster.create(staging, "empty_template")
                            import_osparc_archive(
                                a,
                                database=cluster.url(db),
                                store=into,
                                ledger=work / f"{n}.ledger",
                                staging=cluster.url(staging),
                                namespace=uuid.uuid4(),
                            )
                        times[how].append(time.perf_counter() - t0)
                        check(cluster.url(db), len(uuids), into)
                    else:
                        db = f"ref{r}"
                        cluster.create(db, "empty_template")
                        into = moto.bucket(f"ref{r}")
                        into_name = into.url.split("://", 1)[1].split("/", 1)[0]
                        dump = work / "dump.sql"
                        t0 = time.perf_counter()
                        with open(dump, "wb") as f:
                            subprocess.run(
                                [str(PG_BIN / "pg_dump"), *cluster.libpq(), "src"],
                                stdout=f,
                                check=True,
                            )
                        rclone("copy", f"M:{bucket_name}", str(work / "files"), env=env)
                        psql = [str(PG_BIN / "psql"), "-q", "-v", "ON_ERROR_STOP=1"]
                        subprocess.run(
                            [*psql, *cluster.libpq(), db, "-f", str(dump)],
                            check=True,
                            stdout=subprocess.DEVNULL,
                        )
                        rclone("copy", str(work / "files"), f"M:{into_name}", env=env)
                        times[how].append(time.perf_counter() - t0)
    finally:
        moto.close()
    cm, ref = (
        statistics.median(times["carmigrate"]),
        statistics.median(times["reference"]),
    )
    print(
        f"{args.projects} projects of 3 nodes and 4 files of {args.file_kib} KiB "
        f"({mb:.1f} MB); {args.rounds} paired rounds, order rotated; medians "
        "(all rounds: "
        + ", ".join(
            f"{k} {' / '.join(f'{t:.1f}' for t in v)} s" for k, v in times.items()
        )
        + ").\n"
    )
    print("| export + import | s | projects/s | MB/s | x reference |")
    print("|---|---:|---:|---:|---:|")
    print(
        f"| carmigrate: export every project to a verified archive, import each "
        f"(checked, remapped, merged) | {cm:.1f} | {args.projects / cm:.2f} | "
        f"{mb / cm:.1f} | {ref / cm:.2f} |"
    )
    print(
        f"| reference: `pg_dump` + `rclone copy --checksum`, then `psql` + "
        f"`rclone copy --checksum` (no remapping) | {ref:.1f} | "
        f"{args.projects / ref:.2f} | {mb / ref:.1f} | 1.00 |"
    )


if __name__ == "__main__":
    main()
