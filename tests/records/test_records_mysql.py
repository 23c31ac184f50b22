"""The records layer on MySQL (MariaDB through PyMySQL): plan, execute, verify, resume, roll back.

A private MariaDB server is started for the session in a temporary folder,
on a unix socket only (``--skip-networking``), as the PostgreSQL cluster
is. ``CARMIGRATE_SKIP_MYSQL=1`` skips these tests; otherwise a server that
cannot start fails them (scripts/install-system-deps installs
``mariadb-server``).

The schema is small and MySQL's own: users with a case-folded e-mail as
natural key, projects that reference them, a JSON column, clashing integer
ids between the two databases. MySQL has no deferrable constraints and
its triggers cannot change their own table, so the synthetic schema of the
other records tests does not apply here.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from carmigrate.migrate import (
    Ledger,
    execute_records,
    rollback_records,
    verify_records,
)
from carmigrate.records import open_database, parse_mapping, plan_records

MARIADBD = Path("/usr/sbin/mariadbd")
INSTALL_DB = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
_names = itertools.count()

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
margin = 100

[[ids]]
table = "projects"
rule = "offset"
margin = 100

[[natural_keys]]
table = "users"
columns = ["email"]
casefold = true

[[policies]]
kind = "case_variant"
policy = "merge"
"""


@pytest.fixture(scope="session")
def mysql_socket() -> Iterator[str]:
    if os.environ.get("CARMIGRATE_SKIP_MYSQL") == "1":
        pytest.skip("CARMIGRATE_SKIP_MYSQL=1: MySQL tests skipped")
    if not MARIADBD.exists():
        pytest.fail(
            f"MariaDB is not installed ({MARIADBD} missing): run "
            "scripts/install-system-deps, or set CARMIGRATE_SKIP_MYSQL=1"
        )
    pytest.importorskip("pymysql")
    work = tempfile.mkdtemp(prefix="cmmy")
    data, sock = f"{work}/data", f"{work}/sock"
    user = ["--user=root"] if os.geteuid() == 0 else []
    init = subprocess.run(
        [
            INSTALL_DB,
            "--no-defaults",
            f"--datadir={data}",
            *user,
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ],
        capture_output=True,
        text=True,
    )
    if init.returncode:
        pytest.fail(f"mariadb-install-db failed:\n{init.stdout}\n{init.stderr}")
    server = subprocess.Popen(
        [
            str(MARIADBD),
            "--no-defaults",
            f"--datadir={data}",
            f"--socket={sock}",
            "--skip-networking",
            f"--pid-file={work}/pid",
            f"--log-error={work}/err",
            *user,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not os.path.exists(sock):
            if server.poll() is not None or time.monotonic() > deadline:
                log = Path(f"{work}/err").read_text(errors="replace")
                pytest.fail(f"mariadbd did not start:\n{log[-2000:]}")
            time.sleep(0.1)
        yield sock
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:  # pragma: no cover - a stuck server
            server.kill()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def mysql_database(mysql_socket: str) -> Iterator[Callable[[], str]]:
    admin = sa.create_engine(
        f"mysql+pymysql://root@localhost/mysql?unix_socket={mysql_socket}"
    )
    made: list[str] = []

    def make() -> str:
        name = f"my{next(_names)}"
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        made.append(name)
        return f"mysql+pymysql://root@localhost/{name}?unix_socket={mysql_socket}"

    yield make
    with admin.begin() as conn:
        for name in made:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
    admin.dispose()


metadata = sa.MetaData()
users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("email", sa.String(120), nullable=False, unique=True),
    sa.Column("name", sa.String(80), nullable=False),
)
projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("owner_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("title", sa.String(80), nullable=False),
    sa.Column("meta", sa.JSON, nullable=False),
)


def build(url: str, people: list[tuple[str, str]], work: list[tuple[int, str]]) -> str:
    engine = sa.create_engine(url)
    try:
        metadata.create_all(engine)
        with engine.begin() as conn:
            for email, name in people:
                conn.execute(users.insert().values(email=email, name=name))
            for owner, title in work:
                conn.execute(
                    projects.insert().values(
                        owner_id=owner, title=title, meta={"title": title, "n": [1, 2]}
                    )
                )
    finally:
        engine.dispose()
    return url


def rows(url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                t.name: [tuple(r) for r in conn.execute(sa.select(t).order_by(t.c.id))]
                for t in (users, projects)
            }
    finally:
        engine.dispose()


@pytest.mark.parametrize("source_engine", ["mysql", "sqlite"])
def test_merge_into_mysql_then_verify_resume_and_roll_back(
    source_engine: str,
    mysql_database: Callable[[], str],
    tmp_path: Path,
) -> None:
    people = [("ann@example.org", "ann"), ("bob@example.org", "bob")]
    work = [(1, "survey"), (2, "atlas"), (2, "mesh")]
    if source_engine == "mysql":
        src = build(mysql_database(), people, work)
    else:
        src = build(f"sqlite:///{tmp_path}/src.db", people, work)
    # the destination has its own users; BOB is the source's bob in other case
    dst = build(
        mysql_database(),
        [("carl@example.org", "carl"), ("BOB@example.org", "bob (dst)")],
        [(1, "carl's")],
    )
    before = rows(dst)
    with open_database(dst) as d:
        # MariaDB's JSON is LONGTEXT with a JSON_VALID check: reflected as JSON
        meta = next(
            c for c in d.reflect().table("projects").columns if c.name == "meta"
        )
        assert meta.type == "JSON"
    with open_database(src) as s, open_database(dst) as d:
        plan = plan_records(s, d, parse_mapping(tomllib.loads(MAPPING)))
    assert plan.ok
    summary = plan.summary()
    assert summary.count("merge") == 1  # bob
    assert summary.count("insert") == 4  # ann and three projects
    ledger = tmp_path / "l.db"
    with Ledger(ledger) as lg:
        result = execute_records(plan, lg, source=src, destination=dst)
        assert [c.state for c in result.executed] == ["committed", "committed"]
        # again: every stage is committed, nothing runs
        again = execute_records(plan, lg, source=src, destination=dst)
        assert again.executed == ()
        assert set(again.already) == {"accounts", "work"}
        assert verify_records(lg, dst).ok
    after = rows(dst)
    ann = next(u for u in after["users"] if u[1] == "ann@example.org")
    bob = next(u for u in after["users"] if u[1] == "BOB@example.org")
    assert ann[0] > 100  # offset past the destination's maximum
    titles = {p[2]: p for p in after["projects"]}
    assert titles["survey"][1] == ann[0]
    assert titles["atlas"][1] == bob[0]  # merged into the existing bob
    assert titles["mesh"][3] == {"title": "mesh", "n": [1, 2]}
    assert len(after["users"]) == 3
    with Ledger(ledger) as lg:
        rollback_records(lg, dst, stage="work")
        rollback_records(lg, dst, stage="accounts")
    assert rows(dst) == before
