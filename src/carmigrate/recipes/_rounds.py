"""What both recipes share: a SQLite journal with rounds of engine plans.

A recipe run works in *rounds*. A round is a set of engine plans (one per
source store), saved as plan files with one ledger each, and executed one
after the other by [execute][carmigrate.migrate.execute]. A round that did
not finish (a limit stopped it, the process died) is continued with
[resume][carmigrate.migrate.resume] by the next run, from its ledgers alone;
a finished round is never run again: the next run plans a new round for
what is still to do.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from typing import TYPE_CHECKING, Any, Final

import attrs

from carmigrate.migrate import (
    Ledger,
    Limits,
    Plan,
    RunResult,
    execute,
    load_plan,
    redact_url,
    resume,
)
from carmigrate.storage import open_store

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence
    from concurrent.futures import Executor
    from pathlib import Path

    from carmigrate.migrate import ItemRecord, Reporter
    from carmigrate.storage import Store

__all__ = [
    "RecipeJournal",
    "RoundPlan",
    "atomic_write",
    "failure_reason",
    "plan_paths",
    "run_round",
    "stores_by_url",
]

_ROUND_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS round (
    n INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL
);
CREATE TABLE IF NOT EXISTS round_plan (
    n INTEGER NOT NULL,
    k INTEGER NOT NULL,
    source TEXT NOT NULL,
    plan TEXT NOT NULL,
    ledger TEXT NOT NULL,
    PRIMARY KEY (n, k)
);
"""


@attrs.frozen
class RoundPlan:
    """One plan of a round: its source URL, plan file and ledger file."""

    n: int
    k: int
    source: str
    plan: str
    ledger: str


class RecipeJournal:
    """A recipe's SQLite journal: its own tables plus the rounds.

    With ``dry_run`` the journal is an in-memory copy of the file (if there
    is one): everything can be computed and nothing is written. With
    ``readonly`` the file is only read (it must exist).

    State: one SQLite connection.
    """

    def __init__(
        self, path: Path, schema: str, *, dry_run: bool = False, readonly: bool = False
    ) -> None:
        self.path = path
        self.dry_run = dry_run
        if readonly:
            self.db = sqlite3.connect(
                f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=60.0
            )
            return
        if dry_run:
            self.db = sqlite3.connect(":memory:", isolation_level=None)
            if path.exists():
                disk = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                try:
                    disk.backup(self.db)
                finally:
                    disk.close()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, isolation_level=None, timeout=60.0)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_ROUND_SCHEMA + schema)

    def close(self) -> None:
        """Close the connection. Idempotent."""
        with contextlib.suppress(sqlite3.ProgrammingError):
            self.db.close()

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction (rolled back if the block raises)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def open_round(self) -> int | None:
        """The round that has not finished, if any."""
        row = self.db.execute(
            "SELECT n FROM round WHERE state = 'open' ORDER BY n DESC LIMIT 1"
        ).fetchone()
        return None if row is None else int(row[0])

    def last_round(self) -> int:
        """The number of the last round (0 before the first)."""
        row = self.db.execute("SELECT MAX(n) FROM round").fetchone()
        return int(row[0] or 0)

    def add_round(
        self, db: sqlite3.Connection, n: int, plans: Sequence[RoundPlan]
    ) -> None:
        """Record round ``n`` and its plans (inside the caller's transaction)."""
        db.execute(
            "INSERT INTO round (n, state, started) VALUES (?, 'open', ?)",
            (n, time.time()),
        )
        db.executemany(
            "INSERT INTO round_plan (n, k, source, plan, ledger) VALUES (?, ?, ?, ?, ?)",
            [(p.n, p.k, p.source, p.plan, p.ledger) for p in plans],
        )

    def finish_round(self, db: sqlite3.Connection, n: int) -> None:
        """Mark round ``n`` finished (inside the caller's transaction)."""
        db.execute(
            "UPDATE round SET state = 'done', finished = ? WHERE n = ?",
            (time.time(), n),
        )

    def round_plans(self, n: int | None = None) -> list[RoundPlan]:
        """The plans of round ``n`` (of every round if ``None``), in order."""
        sql = "SELECT n, k, source, plan, ledger FROM round_plan"
        args: tuple[Any, ...] = ()
        if n is not None:
            sql += " WHERE n = ?"
            args = (n,)
        return [RoundPlan(*r) for r in self.db.execute(sql + " ORDER BY n, k", args)]


def failure_reason(rec: ItemRecord) -> str:
    """Why a CAR item failed, for a journal: the engine's reason and offset.

    The recipes' plan items carry the SHA-256 their CAR CID names; a sha256
    disagreement (which the engine words as a mismatch with the source, or
    as a source changed since the plan) then means the object is not the
    CAR its name says.
    """
    where = f" (at byte {rec.offset})" if rec.offset is not None else ""
    reason = f"{rec.reason or rec.state.value}{where}"
    if rec.item.sha256 is not None and "sha256" in reason:
        reason = f"not the bytes its CAR CID names: {reason}"
    return reason


def stores_by_url(stores: Iterable[Store]) -> dict[str, Store]:
    """The stores by the (redacted) URL a plan header records for them."""
    return {redact_url(s.url): s for s in stores}


def run_round(
    plans: Sequence[RoundPlan],
    *,
    stores: Mapping[str, Store],
    store_options: Mapping[str, Any],
    limits: Limits | None,
    executor: Executor | None,
    reporters: Sequence[Reporter],
    loaded: Mapping[str, Plan] | None = None,
) -> list[RunResult]:
    """Execute (or resume) the plans of one round, in order.

    A plan whose ledger has no plan attached yet is executed; otherwise it
    is resumed. Stores are taken from ``stores`` by URL, or opened with
    ``store_options``. Stops
    after the first run that did not end ``"done"`` (a limit or a stop
    request): the round stays open and the next run resumes it.
    """
    results: list[RunResult] = []
    opened: list[Store] = []

    def store(url: str) -> Store:
        found = stores.get(url)
        if found is None:
            found = open_store(url, **dict(store_options))
            opened.append(found)
        return found

    try:
        for rp in plans:
            plan = (loaded or {}).get(rp.plan) or load_plan(rp.plan)
            source = store(plan.header.source)
            destination = store(plan.header.destination)
            with Ledger(rp.ledger) as ledger:
                if ledger.plan_id is None:
                    result = execute(
                        plan,
                        ledger,
                        source=source,
                        destination=destination,
                        executor=executor,
                        limits=limits,
                        reporters=reporters,
                    )
                else:
                    result = resume(
                        ledger,
                        source=source,
                        destination=destination,
                        executor=executor,
                        limits=limits,
                        reporters=reporters,
                    )
            results.append(result)
            if result.stop_reason != "done":
                break
    finally:
        for s in opened:
            with contextlib.suppress(Exception):
                s.close()
    return results


def plan_paths(work: Path, n: int, k: int) -> tuple[str, str]:
    """Where plan ``k`` of round ``n`` and its ledger live under ``work``."""
    folder = work / "rounds" / f"{n:04d}"
    return str(folder / f"plan-{k}.jsonl"), str(folder / f"ledger-{k}.db")


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
