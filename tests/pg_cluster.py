"""A private PostgreSQL 15 cluster for the tests, and a maker of empty databases on it.

The cluster is started once per session with ``initdb`` and ``pg_ctl`` in a
temporary folder, listening only on a unix socket there (never TCP), as
``postgres`` through ``runuser`` when the tests run as root. Set
``CARMIGRATE_SKIP_POSTGRES=1`` to skip the tests that need it; otherwise a
cluster that cannot start fails them. tests/conftest.py makes the fixtures
available to every test folder (the records layer's and the recipes').
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

PG_BIN = Path(os.environ.get("CARMIGRATE_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_PORT = 5499
_names = itertools.count()


def _as_postgres(args: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return args


@pytest.fixture(scope="session")
def postgres_socket() -> Iterator[str]:
    """The folder of a private cluster's unix socket (session-scoped)."""
    if os.environ.get("CARMIGRATE_SKIP_POSTGRES") == "1":
        pytest.skip("CARMIGRATE_SKIP_POSTGRES=1: PostgreSQL tests skipped")
    if not (PG_BIN / "initdb").exists():
        pytest.fail(
            f"PostgreSQL 15 is not installed ({PG_BIN}/initdb missing): run "
            "scripts/install-system-deps, or set CARMIGRATE_SKIP_POSTGRES=1"
        )
    work = tempfile.mkdtemp(prefix="cmpg")
    os.chmod(work, 0o755)
    if os.geteuid() == 0:
        shutil.chown(work, "postgres")
    data = f"{work}/data"

    def run(args: list[str]) -> None:
        done = subprocess.run(_as_postgres(args), capture_output=True, text=True)
        if done.returncode:
            pytest.fail(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")

    run(
        [
            str(PG_BIN / "initdb"),
            "-D",
            data,
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ]
    )
    run(
        [
            str(PG_BIN / "pg_ctl"),
            "-D",
            data,
            "-l",
            f"{work}/log",
            "-w",
            "-o",
            f"-k {work} -c listen_addresses='' -p {PG_PORT} -c fsync=off",
            "start",
        ]
    )
    try:
        yield work
    finally:
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", data, "-m", "fast", "stop"]),
            capture_output=True,
            check=False,
        )
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def pg_database(postgres_socket: str) -> Iterator[Callable[[], str]]:
    """A maker of empty databases on the session's PostgreSQL cluster (dropped afterwards)."""
    admin = sa.create_engine(
        f"postgresql+psycopg://postgres@/postgres?host={postgres_socket}&port={PG_PORT}",
        isolation_level="AUTOCOMMIT",
    )
    made: list[str] = []

    def make() -> str:
        name = f"pgdb{next(_names)}"
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        made.append(name)
        return f"postgresql+psycopg://postgres@/{name}?host={postgres_socket}&port={PG_PORT}"

    yield make
    with admin.connect() as conn:
        for name in made:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


def pg_dump_lines(url: str, *options: str) -> list[str]:
    """The lines ``pg_dump`` prints for the database of ``url`` (on this cluster), with ``options``."""
    u = sa.make_url(url)
    out = subprocess.run(
        [
            str(PG_BIN / "pg_dump"),
            *options,
            "-h",
            str(u.query["host"]),
            "-p",
            str(u.query["port"]),
            "-U",
            "postgres",
            str(u.database),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.splitlines()
