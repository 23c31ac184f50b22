"""Databases for the records tests: SQLite files and the private PostgreSQL 15 cluster.

The cluster (``postgres_socket``) and the maker of empty databases on it
(``pg_database``) are shared by every test folder: tests/pg_cluster.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import schema
import sqlalchemy as sa
from records_helpers import PG_PORT, build

_names = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def new_database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], str]]:
    """Make empty databases of the parametrized engine; yields a maker of URLs."""
    engines: list[sa.Engine] = []
    if request.param == "sqlite":

        def make() -> str:
            return f"sqlite:///{tmp_path}/db{next(_names)}.sqlite"

        yield make
        return
    socket = request.getfixturevalue("postgres_socket")
    admin = sa.create_engine(
        f"postgresql+psycopg://postgres@/postgres?host={socket}&port={PG_PORT}",
        isolation_level="AUTOCOMMIT",
    )
    engines.append(admin)
    made: list[str] = []

    def make_pg() -> str:
        name = f"db{next(_names)}"
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        made.append(name)
        return f"postgresql+psycopg://postgres@/{name}?host={socket}&port={PG_PORT}"

    yield make_pg
    with admin.connect() as conn:
        for name in made:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


@pytest.fixture
def pair(new_database: Callable[[], str]) -> tuple[str, str]:
    """(source URL, destination URL): deployment B and deployment A."""
    return build(new_database(), schema.SOURCE), build(new_database(), schema.DEST)
