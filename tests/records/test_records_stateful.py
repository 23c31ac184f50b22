"""A Hypothesis state machine over executing record plans: execute, kill, resume, roll back.

The machine drives one record plan (deployment B merged into deployment A,
the synthetic schema) against a fresh copy of deployment A per example (an
SQLite file; in the second test a database of the private PostgreSQL
cluster, fewer examples), with any interleaving of:

- ``execute``: run the plan (any batch size), possibly *killed* at a batch
  boundary, before the integrity checks, or between the destination's
  commit and the ledger's checkpoint;
- ``rollback``: roll back the last committed stage, possibly after someone
  changed one of its inserted rows (then it must refuse unless forced),
  possibly killed between the destination's commit and the ledger;
- the wrong rollbacks (a stage followed by a committed stage, a stage not
  committed, a ledger that records no plan), which must change nothing.

A model holds which stages are at the destination and what the ledger
records; after every step the destination's rows (a multiset of row digests
per table) must be the rows before plus exactly the committed stages' rows
(never half a stage), its marker table must name exactly those stages, the
ledger's checkpoints must be what the model says, and executing the plan to
its end from a copy of this state must end at the expected final database.

How a kill is modelled: ``hook`` raises ``Killed``, a ``BaseException``
(``execute_records`` catches only ``RecordsError`` and SQLAlchemy's
errors, so nothing records it as a failure). Raised at ``"batch"`` or
``"checks"``, it unwinds out of the stage's ``with conn.begin()``, which
rolls the destination transaction back: what SQLite (a hot journal rolled
back by the next opener) and PostgreSQL (an aborted backend) do when the
process dies there. Raised at ``"committed"``, the destination has
committed and the ledger has no checkpoint: what a SIGKILL there leaves.
Nothing after the kill writes anything persistent (``finally`` blocks only
close connections and release the ledger's ``flock``, which a dead process
releases too). A killed rollback is modelled the same way, by making the
ledger write after the destination's commit raise ``Killed``.
"""

from __future__ import annotations

import itertools
import math
import os
import shutil
import sqlite3
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import schema
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)
from records_helpers import PG_PORT, build

from carmigrate.errors import RecordsError, RollbackRefused
from carmigrate.migrate import (
    MARKER_TABLE,
    Ledger,
    execute_records,
    record_checkpoints,
    rollback_records,
)
from carmigrate.migrate import _records as records_module
from carmigrate.records import (
    RecordMapping,
    RecordPlan,
    RowAction,
    open_database,
    parse_mapping,
    plan_records,
    row_digest,
)

EXECUTABLE = schema.EXECUTABLE

# a column per table that a "someone else" may change (neither key nor unique)
TAMPER_COLUMNS = {
    "groups": "kind",
    "users": "email",
    "projects": "name",
    "nodes": "label",
    "files": "object_key",
    "tags": "label",
}

TABLES = [t.name for t in schema.metadata.sorted_tables]

Digests = dict[str, Counter[str]]


class Killed(BaseException):
    """The process died here (a BaseException: nothing in carmigrate catches it)."""


def mapping() -> RecordMapping:
    return parse_mapping(tomllib.loads(schema.MAPPING_TOML + EXECUTABLE))


def digests(url: str) -> Digests:
    """Every schema table's rows as a multiset of row digests."""
    with open_database(url) as db:
        return {t: Counter(row_digest(r) for r in db.iter_rows(t)) for t in TABLES}


def markers(url: str, plan_id: str) -> set[str]:
    """The stages the destination's marker table records for the plan."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(MARKER_TABLE):
                return set()
            rows = conn.execute(
                sa.text(f"SELECT stage FROM {MARKER_TABLE} WHERE plan_id = :p"),
                {"p": plan_id},
            ).all()
        return {str(r[0]) for r in rows}
    finally:
        engine.dispose()


def sqlite_copy(src: Path, dst: Path) -> None:
    """A consistent copy of an SQLite file (the backup API, journal or WAL alike)."""
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)
    a.close()
    b.close()


class Backend:
    """Where destinations live: new databases and copies of one."""

    def new(self) -> str:
        raise NotImplementedError

    def copy(self, url: str) -> str:
        raise NotImplementedError

    def drop(self, url: str) -> None:
        raise NotImplementedError


class SqliteBackend(Backend):
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.names = itertools.count()

    def new(self) -> str:
        return f"sqlite:///{self.folder}/db{next(self.names)}.sqlite"

    def copy(self, url: str) -> str:
        new = self.new()
        sqlite_copy(Path(sa.make_url(url).database or ""), self._path(new))
        return new

    def drop(self, url: str) -> None:
        self._path(url).unlink(missing_ok=True)

    @staticmethod
    def _path(url: str) -> Path:
        return Path(sa.make_url(url).database or "")


class PostgresBackend(Backend):
    """Databases of the private cluster; a copy is ``CREATE DATABASE … TEMPLATE``."""

    def __init__(self, socket: str) -> None:
        self.socket = socket
        self.admin = sa.create_engine(
            f"postgresql+psycopg://postgres@/postgres?host={socket}&port={PG_PORT}",
            isolation_level="AUTOCOMMIT",
        )
        self.names = itertools.count()
        self.made: set[str] = set()

    def _create(self, template: str | None) -> str:
        name = f"stm{os.getpid()}_{next(self.names)}"
        extra = "" if template is None else f" TEMPLATE {template}"
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}{extra}")
        self.made.add(name)
        return (
            f"postgresql+psycopg://postgres@/{name}?host={self.socket}&port={PG_PORT}"
        )

    def new(self) -> str:
        return self._create(None)

    def copy(self, url: str) -> str:
        return self._create(sa.make_url(url).database)

    def drop(self, url: str) -> None:
        name = sa.make_url(url).database
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.made.discard(str(name))

    def close(self) -> None:
        for name in sorted(self.made):
            with self.admin.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.admin.dispose()


@dataclass
class World:
    """What every example shares: the source, the destination's template, the plan."""

    folder: Path
    backend: Backend
    source: str
    template: str
    plan: RecordPlan
    before: Digests
    # stage -> table -> [(destination key, planned row)]
    stage_rows: dict[str, dict[str, list[tuple[tuple[Any, ...], dict[str, Any]]]]]
    stage_digests: dict[str, Digests] = field(default_factory=dict)

    def batches(self, stage: str, batch_size: int) -> int:
        return sum(
            math.ceil(len(rows) / batch_size)
            for rows in self.stage_rows[stage].values()
        )

    def expected(self, committed: set[str]) -> Digests:
        out = {t: Counter(c) for t, c in self.before.items()}
        for s in committed:
            for t, c in self.stage_digests[s].items():
                out[t].update(c)
        return out


def make_world(folder: Path, backend: Backend) -> World:
    source = build(backend.new(), schema.SOURCE)
    template = build(backend.new(), schema.DEST)
    with open_database(source) as src, open_database(template) as dst:
        plan = plan_records(src, dst, mapping())
    assert plan.ok
    stage_rows: dict[str, dict[str, list[tuple[tuple[Any, ...], dict[str, Any]]]]] = {}
    with open_database(source) as src:
        info = src.reflect()
        for stage in plan.stages:
            per: dict[str, list[tuple[tuple[Any, ...], dict[str, Any]]]] = {}
            for t in stage.tables:
                inserts = {r.key: r for r in plan.rows_of(t, RowAction.INSERT)}
                if not inserts:
                    continue
                pk = info.table(t).primary_key
                rows = []
                for srow in src.iter_rows(t, keys=list(inserts)):
                    r = inserts[tuple(srow[c] for c in pk)]
                    assert r.target_key is not None
                    rows.append((tuple(r.target_key), {**srow, **r.changes}))
                assert len(rows) == len(inserts)
                per[t] = rows
            stage_rows[stage.name] = per
    world = World(
        folder=folder,
        backend=backend,
        source=source,
        template=template,
        plan=plan,
        before=digests(template),
        stage_rows=stage_rows,
    )
    world.stage_digests = {
        s: {t: Counter(row_digest(r) for _, r in rows) for t, rows in per.items()}
        for s, per in stage_rows.items()
    }
    # both stages insert rows, and every stage table is in the schema
    assert all(world.batches(s.name, 1000) for s in plan.stages)
    return world


@contextmanager
def killed_after_rollback_commit(stage: str) -> Iterator[list[bool]]:
    """Kill a rollback of ``stage`` after its destination commit, before the ledger."""
    original = records_module._record
    fired = [False]

    def record(ledger: Any, payload: Any) -> None:
        if payload["stage"] == stage and payload["state"] == "rolled-back":
            fired[0] = True
            raise Killed
        original(ledger, payload)

    with mock.patch.object(records_module, "_record", record):
        yield fired


class RecordsMachine(RuleBasedStateMachine):
    def __init__(self, world: World, counter: Iterator[int]) -> None:
        super().__init__()
        self.world = world
        self.plan = world.plan
        self.order = [s.name for s in self.plan.stages]
        n = next(counter)
        self.dst = world.backend.copy(world.template)
        self.ledger_path = world.folder / f"ledger{n}.db"
        self.scratch = world.folder / f"scratch{n}"
        # the model
        self.at_destination: set[str] = set()  # stages committed there
        self.ledger: dict[str, str] = {}  # stage -> state the ledger records
        self.bound = False  # the ledger records the plan

    # -- the model's bookkeeping --------------------------------------------------

    def sync(self) -> set[str]:
        """What every call does first: the ledger follows the marker table."""
        repaired = set()
        for s in self.at_destination:
            if self.ledger.get(s) != "committed":
                self.ledger[s] = "committed"
                repaired.add(s)
        for s, state in list(self.ledger.items()):
            if state == "committed" and s not in self.at_destination:
                self.ledger[s] = "rolled-back"
        return repaired

    def last_committed(self) -> str | None:
        done = [s for s in self.order if s in self.at_destination]
        return done[-1] if done else None

    # -- rules -------------------------------------------------------------------------

    @rule(
        batch_size=st.sampled_from([1, 2, 3, 1000]),
        kill=st.none()
        | st.tuples(
            st.integers(0, 1),
            st.sampled_from(["batch", "checks", "committed"]),
            st.integers(1, 50),
        ),
    )
    def execute(self, batch_size: int, kill: tuple[int, str, int] | None) -> None:
        target: tuple[str, str, int] | None = None
        pending = [s for s in self.order if s not in self.at_destination]
        if kill is not None and pending:
            # kill the first or the second stage this call runs
            position, event, raw = kill
            stage = pending[position % len(pending)]
            n = 1 + (raw - 1) % self.world.batches(stage, batch_size)
            # "checks" passes the stage's batch count, "committed" 0: only
            # "batch" is killed at a chosen n, the others at their one call
            target = (stage, event, n)
        fired: list[tuple[str, str, int]] = []

        def hook(event: str, stage: str, n: int) -> None:
            if (
                target is not None
                and (stage, event) == target[:2]
                and (event != "batch" or n == target[2])
            ):
                fired.append(target)
                raise Killed

        # the model's prediction
        self.bound = True
        repaired = self.sync()
        already = self.at_destination - repaired
        ran: list[str] = []
        dies = False
        for s in self.order:
            if s in self.at_destination:
                continue
            if target is not None and target[0] == s:
                dies = True
                if target[1] == "committed":
                    self.at_destination.add(s)  # the ledger never hears of it
                break
            ran.append(s)
            self.at_destination.add(s)
            self.ledger[s] = "committed"

        with Ledger(self.ledger_path) as ledger:
            if dies:
                with pytest.raises(Killed):
                    execute_records(
                        self.plan,
                        ledger,
                        source=self.world.source,
                        destination=self.dst,
                        batch_size=batch_size,
                        hook=hook,
                    )
                assert fired == [target]
                return
            result = execute_records(
                self.plan,
                ledger,
                source=self.world.source,
                destination=self.dst,
                batch_size=batch_size,
                hook=hook,
            )
        assert fired == []
        assert [c.stage for c in result.executed] == ran
        assert all(c.state == "committed" for c in result.executed)
        assert set(result.repaired) == repaired
        assert set(result.already) == already

    @rule(
        wrong_first=st.none() | st.integers(0, 1),
        tamper=st.none() | st.integers(0, 10_000),
        force=st.booleans(),
        killed=st.booleans(),
    )
    def rollback(
        self, wrong_first: int | None, tamper: int | None, force: bool, killed: bool
    ) -> None:
        """Roll back the last committed stage (after a wrong rollback, if asked)."""
        stage = self.last_committed()
        if wrong_first is not None or stage is None:
            self.wrong_rollback(wrong_first or 0)
        if stage is None:
            return
        tampered = None
        if tamper is not None:
            tampered = self.tamper(stage, tamper)
        self.sync()
        refuses = tampered is not None and not force
        with Ledger(self.ledger_path) as ledger:
            if refuses:
                with pytest.raises(RollbackRefused) as e:
                    rollback_records(ledger, self.dst, stage=stage, force=force)
                assert len(e.value.changed) == 1, e.value.changed
                assert "changed since the stage" in e.value.changed[0]
            elif killed:
                with (
                    killed_after_rollback_commit(stage) as fired,
                    pytest.raises(Killed),
                ):
                    rollback_records(ledger, self.dst, stage=stage, force=force)
                assert fired == [True]
                self.at_destination.discard(stage)  # the ledger still says committed
            else:
                result = rollback_records(ledger, self.dst, stage=stage, force=force)
                assert result.stage == stage
                assert result.deleted == sum(
                    len(rows) for rows in self.world.stage_rows[stage].values()
                )
                assert len(result.changed) == (0 if tampered is None else 1)
                self.at_destination.discard(stage)
                self.ledger[stage] = "rolled-back"
        if refuses:
            assert tampered is not None
            # the refusal changed nothing: undo the tamper, and the state is as before
            self.untamper(*tampered)

    def wrong_rollback(self, pick: int) -> None:
        """Rolling back what cannot be: refused, and nothing changes."""
        committed = [s for s in self.order if s in self.at_destination]
        other = [s for s in self.order if s not in self.at_destination]
        if not self.bound:
            stage, match = self.order[pick], "records no record plan"
        elif len(committed) >= 2:
            stage, match = committed[0], "roll those back first"
        elif other:
            stage, match = other[pick % len(other)], "not committed"
        else:  # pragma: no cover - two stages: one of the above holds
            return
        if self.bound:
            self.sync()
        with (
            Ledger(self.ledger_path) as ledger,
            pytest.raises(RecordsError, match=match),
        ):
            rollback_records(ledger, self.dst, stage=stage)

    # -- tampering ---------------------------------------------------------------------

    def tamper(self, stage: str, pick: int) -> tuple[str, tuple[Any, ...], str, Any]:
        """Someone changes one row the stage inserted; returns how to undo it."""
        candidates = [
            (t, key, row)
            for t, rows in sorted(self.world.stage_rows[stage].items())
            if t in TAMPER_COLUMNS
            for key, row in rows
        ]
        table, key, row = candidates[pick % len(candidates)]
        column = TAMPER_COLUMNS[table]
        old = row[column]
        # a different value that fits the column (kind is VARCHAR(16), which
        # PostgreSQL enforces and SQLite does not)
        self._set(table, key, column, "X" if old != "X" else "Y")
        return table, key, column, old

    def untamper(self, table: str, key: tuple[Any, ...], column: str, old: Any) -> None:
        self._set(table, key, column, old)

    def _set(self, table: str, key: tuple[Any, ...], column: str, value: Any) -> None:
        t = schema.metadata.tables[table]
        engine = sa.create_engine(self.dst)
        try:
            with engine.begin() as conn:
                done = conn.execute(
                    t.update()
                    .where(*(c == v for c, v in zip(t.primary_key, key, strict=True)))
                    .values({column: value})
                )
                assert done.rowcount == 1
        finally:
            engine.dispose()

    # -- invariants --------------------------------------------------------------------

    @invariant()
    def destination_holds_whole_stages(self) -> None:
        """Before plus exactly the committed stages' rows: never half a stage."""
        have = digests(self.dst)
        want = self.world.expected(self.at_destination)
        for t in TABLES:
            assert have[t] == want[t], (t, sorted(self.at_destination))
        assert markers(self.dst, self.plan.id) == self.at_destination

    @invariant()
    def ledger_is_as_modelled(self) -> None:
        if not self.ledger_path.exists():
            assert not self.ledger
            return
        with Ledger(self.ledger_path) as ledger:
            states = {c.stage: c.state for c in record_checkpoints(ledger)}
        assert states == self.ledger

    @invariant()
    def executing_to_the_end_reaches_the_final_state(self) -> None:
        """From a copy of this state, an uninterrupted run ends at the plan's database."""
        self.scratch.mkdir(exist_ok=True)
        ledger_path = self.scratch / "ledger.db"
        for p in self.scratch.iterdir():
            p.unlink()
        if self.ledger_path.exists():
            sqlite_copy(self.ledger_path, ledger_path)
        dst = self.world.backend.copy(self.dst)
        try:
            with Ledger(ledger_path) as ledger:
                result = execute_records(
                    self.plan, ledger, source=self.world.source, destination=dst
                )
                states = [c.state for c in record_checkpoints(ledger)]
            assert [c.stage for c in result.executed] == [
                s for s in self.order if s not in self.at_destination
            ]
            assert states == ["committed"] * len(self.order)
            assert digests(dst) == self.world.expected(set(self.order))
            assert markers(dst, self.plan.id) == set(self.order)
        finally:
            self.world.backend.drop(dst)

    def teardown(self) -> None:
        self.world.backend.drop(self.dst)
        self.ledger_path.unlink(missing_ok=True)
        shutil.rmtree(self.scratch, ignore_errors=True)


def run_machine(world: World, max_examples: int, steps: int) -> None:
    counter = iter(range(1_000_000))
    factory: Callable[[], RecordsMachine] = lambda: RecordsMachine(world, counter)  # noqa: E731
    run_state_machine_as_test(
        factory,
        settings=settings(
            max_examples=max_examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def test_execute_kill_resume_rollback_sqlite(tmp_path: Path) -> None:
    run_machine(make_world(tmp_path, SqliteBackend(tmp_path)), 20, 10)


def test_execute_kill_resume_rollback_postgresql(
    postgres_socket: str, tmp_path: Path
) -> None:
    backend = PostgresBackend(postgres_socket)
    try:
        run_machine(make_world(tmp_path, backend), 4, 8)
    finally:
        backend.close()
