"""The ledger: one SQLite file that knows where every item of one plan stands."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import json
import logging
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, NamedTuple, final

import attrs

from carmigrate.errors import PlanError
from carmigrate.migrate import serde
from carmigrate.migrate._model import (
    Action,
    ItemOutcome,
    ItemState,
    Overwrite,
    PlanHeader,
    PlanItem,
)
from carmigrate.migrate._schema import (
    ColumnKind,
    FlatColumn,
    Record,
    column,
    flat_columns,
    make_line_to_row,
    make_row_decoder,
    to_column,
)
from carmigrate.migrate._units import UNIT_TABLES, UnitsMixin

if TYPE_CHECKING:
    from types import TracebackType

    from carmigrate.migrate._plan import Plan

__all__ = [
    "SCHEMA_VERSION",
    "ItemRecord",
    "Ledger",
    "LedgerBatch",
    "RunRecord",
    "Transition",
    "outcome_fields",
]

SCHEMA_VERSION: Final = 2
"""Version of the ledger's schema. 1: carmigrate 0.1 (``md5``/``sha256``
columns); 2: digests as JSON objects (``plan_digests``, ``digests``). Older
ledgers are upgraded in place when opened for writing."""
_ATTACH_CHUNK: Final = 100_000
_log = logging.getLogger(__name__)

_S = ItemState
# For each target state, the states an item may come from.
_ALLOWED_FROM: Final[Mapping[ItemState, frozenset[ItemState]]] = {
    _S.PENDING: frozenset({_S.WARMING, _S.COPYING, _S.FAILED, _S.PENDING}),
    _S.WARMING: frozenset({_S.PENDING, _S.FAILED, _S.WARMING, _S.COPYING}),
    _S.COPYING: frozenset({_S.PENDING, _S.WARMING, _S.FAILED, _S.COPYING}),
    _S.COPIED: frozenset({_S.COPYING}),
    _S.VERIFIED: frozenset({_S.COPYING, _S.COPIED, _S.UNVERIFIABLE, _S.VERIFIED}),
    _S.UNVERIFIABLE: frozenset({_S.COPYING, _S.COPIED, _S.UNVERIFIABLE}),
    _S.FAILED: frozenset(
        {
            _S.PENDING,
            _S.WARMING,
            _S.COPYING,
            _S.COPIED,
            _S.VERIFIED,
            _S.UNVERIFIABLE,
            _S.FAILED,
        }
    ),
    _S.SKIPPED: frozenset({_S.PENDING}),
    _S.CONFLICT: frozenset({_S.PENDING, _S.COPYING, _S.FAILED}),
    _S.ROLLED_BACK: frozenset({_S.VERIFIED, _S.UNVERIFIABLE, _S.COPIED, _S.FAILED}),
    _S.UNMIGRATABLE: frozenset(),  # set when the plan is attached, never changed
}

_SUCCESS: Final = frozenset({_S.VERIFIED, _S.UNVERIFIABLE, _S.COPIED})


@attrs.frozen(kw_only=True)
class ItemRecord(ItemOutcome):
    """One item as the ledger knows it: the planned item and what happened.

    The outcome fields (``reason``, ``digests``, ``created``, ...) are those
    of [ItemOutcome][carmigrate.migrate.ItemOutcome]; this class adds the
    item, its state and the ledger's bookkeeping. The ledger's ``items``
    table is derived from this declaration.

    Attributes:
        seq: Position in the plan (0-based).
        item: The planned item.
        state: Where it stands.
        attempts: Attempts made (retries of transient errors included).
        started: When the last attempt started (Unix time).
        finished: When the item reached its current state.
        updated: When the record last changed.
        run: The run that last changed it.
    """

    seq: int = column(kind=ColumnKind.INT, sql="INTEGER PRIMARY KEY")
    item: PlanItem = column(kind=ColumnKind.NESTED, type=PlanItem)
    state: ItemState = column(kind=ColumnKind.ENUM, sql="TEXT NOT NULL", type=ItemState)
    attempts: int = column(
        kind=ColumnKind.INT, sql="INTEGER NOT NULL DEFAULT 0", default=0
    )
    started: float | None = column(kind=ColumnKind.REAL, sql="REAL", default=None)
    finished: float | None = column(kind=ColumnKind.REAL, sql="REAL", default=None)
    updated: float | None = column(kind=ColumnKind.REAL, sql="REAL", default=None)
    run: int | None = column(kind=ColumnKind.INT, sql="INTEGER", default=None)


# Everything about the items table is derived from the declarations of
# ItemRecord, ItemOutcome and PlanItem.
_COLUMNS: Final[tuple[FlatColumn, ...]] = flat_columns(ItemRecord)
_ITEM_COLUMNS: Final = ", ".join(c.name for c in _COLUMNS)
_SEQ: Final = [c.name for c in _COLUMNS].index("seq")
_PLAN_COLUMNS: Final = flat_columns(PlanItem)
_OUTCOME_COLUMNS: Final = flat_columns(ItemOutcome)
_SETTABLE: Final[Mapping[str, FlatColumn]] = {
    **{c.name: c for c in _OUTCOME_COLUMNS},
    **{c.attr: c for c in _OUTCOME_COLUMNS},
    **{c.attr: c for c in _COLUMNS if c.attr in ("started", "finished")},
}
_record_of: Final = make_row_decoder(ItemRecord)
_line_to_row: Final = make_line_to_row(PlanItem)
_ATTACH_SQL: Final = (
    "INSERT INTO items (seq, "  # noqa: S608 - column names come from the declarations
    + ", ".join(c.name for c in _PLAN_COLUMNS)
    + ", state, updated) VALUES ("
    + ", ".join("?" * (len(_PLAN_COLUMNS) + 3))
    + ")"
)


def _items_table(name: str = "items") -> str:
    cols = ",\n    ".join(f"{c.name} {c.sql}" for c in _COLUMNS)
    return f"CREATE TABLE IF NOT EXISTS {name} (\n    {cols}\n);\n"


def outcome_fields(outcome: ItemOutcome, state: ItemState | None) -> dict[str, Any]:
    """The fields a recorded outcome sets in the ledger, by each field's declared rule.

    ``ALWAYS`` fields are always set; ``IF_SET`` fields when they hold a
    value; ``ON_SUCCESS`` fields with every successful state (``VERIFIED``,
    ``UNVERIFIABLE``, ``COPIED``) and otherwise only when they hold one.
    """
    success = state in _SUCCESS
    out: dict[str, Any] = {}
    for c in _OUTCOME_COLUMNS:
        value = getattr(outcome, c.attr)
        rule = c.record
        if rule is Record.ALWAYS or (rule is Record.ON_SUCCESS and success) or value:
            out[c.attr] = value
    return out


_TABLES: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL,
    time REAL NOT NULL,
    run INTEGER,
    state TEXT NOT NULL,
    reason TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL,
    stages TEXT,
    limits TEXT,
    stop_reason TEXT,
    items INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0
);
"""
_TRIGGER: Final = """
CREATE TRIGGER IF NOT EXISTS items_journal AFTER UPDATE OF state ON items
BEGIN
    INSERT INTO history (seq, time, run, state, reason)
    VALUES (new.seq, new.updated, new.run, new.state, new.reason);
END;
"""
_SCHEMA: Final = _TABLES + _items_table() + _TRIGGER + UNIT_TABLES

# No index covers ``state``: every state change would have to update it (a
# third of the cost of a commit). Queries by state walk the items in seq
# order (of one stage, through items_stage), which the executor does once per
# run anyway. The indexed columns never change after attach.
_INDEXES: Final = """
CREATE INDEX IF NOT EXISTS items_stage ON items (stage, seq);
CREATE INDEX IF NOT EXISTS items_cohort ON items (cohort);
CREATE INDEX IF NOT EXISTS items_dkey ON items (destination_key);
CREATE INDEX IF NOT EXISTS items_skey ON items (source_key);
"""


APPLICATION_ID: Final = 0x636D6967
"""SQLite's ``application_id`` of a carmigrate ledger (``"cmig"``), set when it is created."""


def _refuse_hard_links(path: str) -> None:
    """Refuse a ledger file that has more than one name (hard links).

    Raises:
        PlanError: The file has several hard links.
    """
    try:
        links = os.stat(path).st_nlink
    except FileNotFoundError:
        return
    if links > 1:
        raise PlanError(
            f"ledger {path!r} has {links} hard links; open a ledger by one name only "
            "(SQLite keeps its write-ahead log next to the name, and two names to one "
            "file would let two runs write it at once)"
        )


_CREATE: Final = (
    "BEGIN IMMEDIATE;"  # noqa: S608 - constants only
    + _SCHEMA
    + f";PRAGMA application_id={APPLICATION_ID};"
    + "INSERT INTO meta (key, value) VALUES "
    + f"('schema_version', '{SCHEMA_VERSION}');"
    + "COMMIT;"
)
"""A new ledger in one transaction: its tables, application id and schema version."""


def _refuse_foreign(db: sqlite3.Connection, path: str) -> None:
    """Refuse a SQLite file of another application before adding any table to it.

    Raises:
        PlanError: It has another application id, or tables and no ledger
            ``meta`` with a schema version (nothing was changed).
    """
    app = db.execute("PRAGMA application_id").fetchone()[0]
    if app not in (0, APPLICATION_ID):
        db.close()
        raise PlanError(
            f"{path!r} is a SQLite database of another application "
            f"(application id {app:#x}), not a carmigrate ledger; give a new file"
        )
    tables = {
        r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    if not tables or app == APPLICATION_ID:
        return  # empty, or made by carmigrate
    ours = (
        "meta" in tables
        and db.execute("SELECT 1 FROM meta WHERE key = 'schema_version'").fetchone()
    )
    if not ours:
        db.close()
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise PlanError(
            f"{path!r} is a SQLite database of another application (tables: {shown}), "
            "not a carmigrate ledger; carmigrate adds nothing to it: give a new file"
        )


def _schema_number(text: str, path: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise PlanError(
            f"ledger {path!r} has an unreadable schema version {text!r}"
        ) from None


def _digests_sql(md5: str, sha256: str) -> str:
    """SQL building a schema-2 digests object from schema-1 md5/sha256 columns."""
    return (
        f"CASE WHEN {md5} IS NULL AND {sha256} IS NULL THEN NULL "
        f"WHEN {md5} IS NULL THEN json_object('sha256', {sha256}) "
        f"WHEN {sha256} IS NULL THEN json_object('md5', {md5}) "
        f"ELSE json_object('md5', {md5}, 'sha256', {sha256}) END"
    )


_MIGRATIONS: Final[Mapping[int, tuple[str, ...]]] = {
    # schema 1 -> 2: the md5/sha256 pairs become digest objects (JSON objects
    # with sorted keys, as the ledger writes them)
    1: (
        "ALTER TABLE items ADD COLUMN plan_digests TEXT",
        "ALTER TABLE items ADD COLUMN digests TEXT",
        "UPDATE items SET plan_digests = "  # noqa: S608 - constant SQL
        + _digests_sql("plan_md5", "plan_sha256")
        + ", digests = "
        + _digests_sql("md5", "sha256"),
        "ALTER TABLE items DROP COLUMN plan_md5",
        "ALTER TABLE items DROP COLUMN plan_sha256",
        "ALTER TABLE items DROP COLUMN md5",
        "ALTER TABLE items DROP COLUMN sha256",
    ),
}
"""For each schema version, the statements that take a ledger to the next one."""


def _upgrade(db: sqlite3.Connection, number: int, path: str) -> None:
    """Take a ledger from schema ``number`` to ``SCHEMA_VERSION`` in one transaction.

    Raises:
        PlanError: A step failed; nothing was changed.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        # tables that are new in this version (a read-only copy lacks them)
        for statement in UNIT_TABLES.split(";"):
            if statement.strip():
                db.execute(statement)
        for version in range(number, SCHEMA_VERSION):
            for statement in _MIGRATIONS[version]:
                db.execute(statement)
        db.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'",
            (str(SCHEMA_VERSION),),
        )
        db.execute("COMMIT")
    except sqlite3.Error as e:
        db.execute("ROLLBACK")
        raise PlanError(
            f"ledger {path!r}: upgrading schema {number} to {SCHEMA_VERSION} failed "
            f"({e}); the ledger was left as it was"
        ) from e


@attrs.frozen(kw_only=True)
class Transition:
    """One recorded state change (the ledger's journal).

    Attributes:
        seq: The item.
        time: When (Unix time).
        run: The run that made it.
        state: The new state.
        reason: The reason recorded with it.
    """

    seq: int
    time: float
    run: int | None
    state: ItemState
    reason: str | None


@attrs.frozen(kw_only=True)
class RunRecord:
    """One run of ``execute``, ``resume``, ``verify`` or ``rollback``.

    Attributes:
        id: Run number (1, 2, ...).
        kind: ``"execute"``, ``"resume"``, ``"verify"`` or ``"rollback"``.
        started: Start time (Unix time).
        finished: End time, if it ended cleanly.
        stages: The stages it was asked to run (empty: all).
        limits: The limits it ran under, as plain data.
        stop_reason: Why it stopped (``"done"``, ``"max_items"``,
            ``"max_bytes"``, ``"max_seconds"``, ``"max_failures"``,
            ``"stopped"``, ``"interrupted"``, ``"waiting for restores"``).
        items: Items it finished (any outcome).
        bytes: Bytes it sent.
        failures: Items it recorded as failed.
    """

    id: int
    kind: str
    started: float
    finished: float | None
    stages: tuple[str, ...]
    limits: Mapping[str, Any] | None
    stop_reason: str | None
    items: int
    bytes: int
    failures: int


def _initial_state(action: Action, overwrite: bool) -> ItemState:
    if action is Action.COPY or action is Action.VERIFY:
        return ItemState.PENDING
    if action is Action.CONFLICT:
        return ItemState.PENDING if overwrite else ItemState.CONFLICT
    if action is Action.UNMIGRATABLE:
        return ItemState.UNMIGRATABLE
    return ItemState.SKIPPED


class _Change(NamedTuple):
    """One state change of a batch: its statement, parameters, item and new state."""

    sql: str
    params: list[Any]
    seq: int
    state: ItemState


class LedgerBatch:
    """State changes committed together in one transaction.

    Obtained from [Ledger.batch][carmigrate.migrate.Ledger.batch]. Changes
    are checked and written when the ``with`` block ends normally, in the
    order given, in one transaction; if the block raises, or a change is not
    allowed, nothing of the batch is recorded.

    State: the changes given so far.
    """

    __slots__ = ("_changes", "_ledger")

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._changes: list[_Change] = []

    def transition(
        self, seq: int, state: ItemState, *, attempts_inc: int = 0, **fields: Any
    ) -> None:
        """Add a state change to the batch (see [Ledger.transition][carmigrate.migrate.Ledger.transition]).

        Raises:
            ValueError: An unknown field (at once).
        """
        sql, params = self._ledger._statement(seq, state, attempts_inc, fields)
        self._changes.append(_Change(sql, params, seq, state))

    def __len__(self) -> int:
        return len(self._changes)


@final
class Ledger(UnitsMixin):
    """The journal of one plan's execution, in one SQLite file (WAL mode).

    The ledger records the plan (its id, header and file path) and one row
    per item with its state, attempts, failure reason and offset, the
    digests computed, whether this plan created the destination object
    (and what it wrote, for a safe rollback), the ID map and a fidelity
    record, plus a journal of every state change and of every run. Resuming
    reads the ledger, never re-lists a store.

    One process (the coordinator) writes; every state change is one
    transaction, or one per [batch][carmigrate.migrate.Ledger.batch].
    Other processes may read at the same time (``readonly=True``), for a
    status display. With ``synchronous="NORMAL"`` (the default) a committed
    change survives a killed process; a power cut may lose the last
    changes, which ``resume`` then redoes (writes are atomic and checked).
    ``"FULL"`` syncs every commit.

    State: one SQLite connection, used from the creating thread only unless
    the caller serialises access.

    Args:
        path: The ledger file (created if missing, unless ``readonly``).
        readonly: Open for reading only (another process may be writing).
        synchronous: SQLite's ``synchronous`` setting: ``"NORMAL"`` or
            ``"FULL"``.

    Raises:
        PlanError: The file is not a carmigrate ledger or is from a newer
            schema; or ``readonly`` and it does not exist.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        readonly: bool = False,
        synchronous: str = "NORMAL",
    ) -> None:
        # one path per database file: a symbolic link is resolved (SQLite keeps
        # its write-ahead log next to the path it opened, so two paths to one
        # file would each keep their own), and a file with several hard links
        # is refused when opened for writing
        self._path = os.path.realpath(os.path.abspath(os.fspath(path)))
        if os.path.isdir(self._path):
            raise PlanError(f"{os.fspath(path)!r} is a folder, not a ledger file")
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        self._readonly = readonly
        self._sql_cache: dict[tuple[ItemState, tuple[str, ...], bool], str] = {}
        self._run: int | None = None
        self._lock_fd: int | None = None
        self._header: PlanHeader | None = None
        try:
            if readonly:
                if not os.path.exists(self._path):
                    raise PlanError(f"no ledger at {self._path!r}")
                self._db = sqlite3.connect(
                    f"file:{self._path}?mode=ro",
                    uri=True,
                    isolation_level=None,
                    check_same_thread=False,
                )
            else:
                _refuse_hard_links(self._path)
                self._db = sqlite3.connect(
                    self._path, isolation_level=None, check_same_thread=False
                )
                _refuse_foreign(self._db, self._path)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute(f"PRAGMA synchronous={synchronous}")
                # measured: a fifth more single-change commits per second
                self._db.execute("PRAGMA mmap_size=268435456")
                self._db.execute("PRAGMA cache_size=-65536")
                self._db.execute("PRAGMA wal_autocheckpoint=4000")
                if self._db.execute("SELECT 1 FROM sqlite_master").fetchone() is None:
                    # a new ledger: its tables, application id and schema
                    # version in one transaction, so a process killed while
                    # creating it leaves an empty file, never a half ledger
                    # that looks like another application's database
                    self._db.executescript(_CREATE)
                else:
                    self._db.executescript(_SCHEMA)
                    if not self._db.execute("PRAGMA application_id").fetchone()[0]:
                        self._db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            self._db.execute("PRAGMA busy_timeout=10000")
        except sqlite3.DatabaseError as e:
            raise PlanError(f"{self._path!r} is not a usable ledger: {e}") from e
        self._copy_dir: str | None = None
        version = self._meta("schema_version")
        if version is None and not readonly:
            self._set_meta({"schema_version": str(SCHEMA_VERSION)})
        elif version is not None:
            number = _schema_number(version, self._path)
            if number > SCHEMA_VERSION:
                self._db.close()
                raise PlanError(
                    f"ledger {self._path!r} has schema {number}, newer than this "
                    f"carmigrate understands ({SCHEMA_VERSION}); use a newer carmigrate"
                )
            if number < SCHEMA_VERSION:
                if readonly:
                    self._read_upgraded_copy(number)
                else:
                    self.backup_path = self._backup(number)
                    _upgrade(self._db, number, self._path)
                    _log.warning(
                        "upgraded ledger %s from schema %d to %d (backup: %s)",
                        self._path,
                        number,
                        SCHEMA_VERSION,
                        self.backup_path,
                    )
        self._check_columns()

    backup_path: str | None = None
    """Where the copy made before an in-place schema upgrade was saved
    (``<ledger>.schema<N>.bak``), if this open upgraded the ledger."""

    def _backup(self, number: int) -> str:
        base = f"{self._path}.schema{number}.bak"
        target = base
        n = 1
        while os.path.exists(target):
            n += 1
            target = f"{base}.{n}"
        copy = sqlite3.connect(target)
        try:
            self._db.backup(copy)
        finally:
            copy.close()
        return target

    def _read_upgraded_copy(self, number: int) -> None:
        """Read an older ledger through an upgraded copy (the file is left as it is)."""
        self._copy_dir = tempfile.mkdtemp(prefix="carmigrate-ledger-")
        target = os.path.join(self._copy_dir, "ledger.db")
        copy = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
        try:
            self._db.backup(copy)
            _upgrade(copy, number, self._path)
        except BaseException:
            copy.close()
            raise
        self._db.close()
        self._db = copy

    def _check_columns(self) -> None:
        have = {r[1] for r in self._db.execute("PRAGMA table_info(items)")}
        want = {c.name for c in _COLUMNS}
        if have and have != want:
            raise PlanError(
                f"ledger {self._path!r}: its items table does not match schema "
                f"{SCHEMA_VERSION} (missing {sorted(want - have)}, unexpected "
                f"{sorted(have - want)}); it was not written by carmigrate"
            )

    # ------------------------------------------------------------------
    # plumbing

    def __repr__(self) -> str:
        return f"Ledger({self._path!r}, plan={self.plan_id})"

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the database (and release a run's lock). Idempotent."""
        self._unlock()
        with contextlib.suppress(sqlite3.ProgrammingError):
            self._db.close()
        if self._copy_dir is not None:
            shutil.rmtree(self._copy_dir, ignore_errors=True)
            self._copy_dir = None

    @property
    def path(self) -> str:
        """The ledger file."""
        return self._path

    def _meta(self, key: str) -> str | None:
        try:
            row = self._db.execute(
                "SELECT value FROM meta WHERE key = ?", (key,)
            ).fetchone()
        except sqlite3.DatabaseError as e:
            if "no such table" in str(e):
                raise PlanError(f"{self._path!r} is not a carmigrate ledger") from e
            raise PlanError(f"{self._path!r} is not a usable ledger: {e}") from e
        return None if row is None else str(row[0])

    def _set_meta(self, values: Mapping[str, str]) -> None:
        self._db.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            list(values.items()),
        )

    def _writable(self) -> None:
        if self._readonly:
            raise PlanError(f"ledger {self._path!r} was opened read-only")

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction (rolled back if the block raises)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # ------------------------------------------------------------------
    # the plan

    @property
    def plan_id(self) -> str | None:
        """The id of the plan this ledger records, or ``None`` before [attach][carmigrate.migrate.Ledger.attach]."""
        return self._meta("plan_id")

    @property
    def header(self) -> PlanHeader:
        """The header of the recorded plan.

        Raises:
            PlanError: No plan is attached.
        """
        if self._header is None:
            text = self._meta("plan_header")
            if text is None:
                raise PlanError(f"ledger {self._path!r} has no plan attached")
            self._header = serde.decode_header(text)
        return self._header

    @property
    def plan_path(self) -> str | None:
        """The plan file the ledger was attached from, if it came from a file."""
        return self._meta("plan_path")

    def attach(self, plan: Plan) -> None:
        """Record ``plan`` and its items (all in their initial state).

        Idempotent for the same plan: a ledger attached to plan ``X`` accepts
        ``X`` again (and notes a new plan file path) and refuses any other.
        The items are read once (from memory or the plan file) and checked
        against the header's count and SHA-256 as they are inserted; the
        whole attach is one transaction.

        Initial states: ``COPY`` and ``VERIFY`` items are ``PENDING``;
        ``CONFLICT`` items are ``PENDING`` if the transfer policy may
        overwrite, else ``CONFLICT``; ``SKIP`` and ``EXTRA`` items are
        ``SKIPPED``.

        Raises:
            PlanError: The ledger records another plan, or the items do not
                match the header (nothing recorded).
        """
        self._writable()
        current = self.plan_id
        if current is not None:
            if current != plan.id:
                raise PlanError(
                    f"ledger {self._path!r} belongs to plan {current}, not {plan.id}; "
                    "use a new ledger for a new plan"
                )
            if plan.path is not None and plan.path != self.plan_path:
                self._set_meta({"plan_path": plan.path})
            return
        header = plan.header
        overwrite = header.transfer.overwrite is Overwrite.IF_DIFFERENT
        h = hashlib.sha256()
        count = 0
        now = time.time()
        states = {a: _initial_state(a, overwrite).value for a in Action}
        actions = {a.value: a for a in Action}
        legacy = header.format_version < 2

        def rows() -> Iterator[tuple[Any, ...]]:
            nonlocal count
            loads = json.loads
            to_row = _line_to_row
            for raw in plan.lines():
                data = raw.encode("ascii")
                h.update(data)
                h.update(b"\n")
                d = loads(data)
                if legacy:
                    d = serde.upgrade_item_v1(d)
                yield (count, *to_row(d), states[actions[d["action"]]], now)
                count += 1

        db = self._db
        # Items go in by chunks of their own transactions, so a ten-million
        # item plan never needs a WAL of its whole size; the plan id is
        # recorded last, and a ledger without one holds no valid items (an
        # interrupted attach is cleared and redone).
        insert = _ATTACH_SQL
        try:
            self._clear_items()
            source = rows()
            while True:
                chunk = list(itertools.islice(source, _ATTACH_CHUNK))
                if not chunk:
                    break
                db.execute("BEGIN IMMEDIATE")
                db.executemany(insert, chunk)
                db.execute("COMMIT")
            if count != header.item_count or h.hexdigest() != header.items_digest:
                raise PlanError(
                    f"the items of plan {plan.id} do not match its header "
                    f"({count} items read, {header.item_count} expected, or a different "
                    "digest); the plan file was edited or cut"
                )
            db.execute("BEGIN IMMEDIATE")
            for statement in _INDEXES.split(";"):
                if statement.strip():
                    db.execute(statement)
            self._set_meta(
                {
                    "plan_id": plan.id,
                    "plan_header": serde.encode_header(header),
                    "attached": repr(now),
                    **({"plan_path": plan.path} if plan.path is not None else {}),
                }
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            with contextlib.suppress(sqlite3.Error):
                self._clear_items()
            raise
        self._header = header

    def _clear_items(self) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        db.execute("DELETE FROM items")
        db.execute("DELETE FROM history")
        db.execute("COMMIT")

    def check_plan(self, plan: Plan) -> None:
        """Raise ``PlanError`` unless this ledger records ``plan``."""
        current = self.plan_id
        if current != plan.id:
            raise PlanError(
                f"ledger {self._path!r} belongs to plan {current}, not {plan.id}"
                if current is not None
                else f"ledger {self._path!r} has no plan attached"
            )

    # ------------------------------------------------------------------
    # runs

    def start_run(
        self,
        kind: str,
        *,
        stages: Sequence[str] = (),
        limits: Mapping[str, Any] | None = None,
    ) -> int:
        """Record the start of a run and make it the run later changes belong to.

        Takes an exclusive lock on the database file itself until
        [finish_run][carmigrate.migrate.Ledger.finish_run] (the operating
        system drops it if the process dies), so two runs never write one
        ledger at once, whatever path, symbolic link or hard link each
        opened it by. (An ``flock``, separate from SQLite's own locks; like
        SQLite in WAL mode, it needs a local file system.)

        Raises:
            PlanError: Another run (in this or another process) holds the
                ledger.
        """
        self._writable()
        self._lock()
        cur = self._db.execute(
            "INSERT INTO runs (kind, started, stages, limits) VALUES (?, ?, ?, ?)",
            (
                kind,
                time.time(),
                json.dumps(list(stages)),
                None if limits is None else json.dumps(dict(limits), sort_keys=True),
            ),
        )
        run = cur.lastrowid
        assert run is not None
        self._run = run
        return run

    def finish_run(
        self,
        run: int,
        *,
        stop_reason: str,
        items: int = 0,
        bytes: int = 0,
        failures: int = 0,
    ) -> None:
        """Record how a run ended."""
        self._writable()
        self._db.execute(
            "UPDATE runs SET finished = ?, stop_reason = ?, items = ?, bytes = ?, "
            "failures = ? WHERE id = ?",
            (time.time(), stop_reason, items, bytes, failures, run),
        )
        if self._run == run:
            self._run = None
        self._unlock()

    def _lock(self) -> None:
        if self._lock_fd is not None:
            return
        fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise PlanError(
                f"another run is using ledger {self._path!r} (through this path or "
                "another link to the same file); wait for it or stop it first"
            ) from None
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def is_running(self) -> bool:
        """Whether a run (in any process, by any link to the file) holds this ledger now."""
        if self._lock_fd is not None:
            return True
        try:
            fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)
        return False

    def runs(self) -> list[RunRecord]:
        """Every run, oldest first."""
        rows = self._db.execute(
            "SELECT id, kind, started, finished, stages, limits, stop_reason, items, "
            "bytes, failures FROM runs ORDER BY id"
        ).fetchall()
        return [
            RunRecord(
                id=row[0],
                kind=row[1],
                started=row[2],
                finished=row[3],
                stages=tuple(json.loads(row[4] or "[]")),
                limits=None if row[5] is None else json.loads(row[5]),
                stop_reason=row[6],
                items=row[7],
                bytes=row[8],
                failures=row[9],
            )
            for row in rows
        ]

    # ------------------------------------------------------------------
    # state changes

    def _sql(self, state: ItemState, names: tuple[str, ...], inc: bool) -> str:
        key = (state, names, inc)
        sql = self._sql_cache.get(key)
        if sql is None:
            sets = ["state = ?", "updated = ?", "run = ?", "reason = ?"]
            sets += [f"{n} = ?" for n in names]
            if inc:
                sets.append("attempts = attempts + ?")
            allowed = ", ".join(
                f"'{s.value}'"
                for s in sorted(_ALLOWED_FROM[state], key=lambda s: s.value)
            )
            sql = f"UPDATE items SET {', '.join(sets)} WHERE seq = ? AND state IN ({allowed})"  # noqa: S608 - column names are constants
            self._sql_cache[key] = sql
        return sql

    def _statement(
        self, seq: int, state: ItemState, inc: int, fields: Mapping[str, Any]
    ) -> tuple[str, list[Any]]:
        reason = fields.get("reason")
        names: tuple[str, ...] = ()
        values: list[Any] = []
        if len(fields) > (1 if "reason" in fields else 0):
            cols = []
            for n, v in fields.items():
                if n == "reason":
                    continue
                c = _SETTABLE.get(n)
                if c is None:
                    raise ValueError(f"unknown ledger field {n!r}")
                cols.append((c.name, to_column(c.kind, v)))
            cols.sort()
            names = tuple(c[0] for c in cols)
            values = [c[1] for c in cols]
        params: list[Any] = [state.value, time.time(), self._run, reason, *values]
        if inc:
            params.append(inc)
        params.append(seq)
        return self._sql(state, names, bool(inc)), params

    def _refused(self, changes: Sequence[tuple[int, ItemState]]) -> PlanError:
        for seq, state in changes:
            row = self._db.execute(
                "SELECT state FROM items WHERE seq = ?", (seq,)
            ).fetchone()
            if row is None:
                return PlanError(f"the ledger has no item {seq}")
            if ItemState(row[0]) not in _ALLOWED_FROM[state]:
                return PlanError(
                    f"item {seq} is {row[0]} and cannot become {state.value}"
                )
        return PlanError("a state change was refused")

    def _apply(
        self, seq: int, state: ItemState, inc: int, fields: Mapping[str, Any]
    ) -> None:
        # One statement: the UPDATE and, through the items_journal trigger,
        # its journal row; atomic on its own, even outside a batch.
        sql, params = self._statement(seq, state, inc, fields)
        if self._db.execute(sql, params).rowcount != 1:
            raise self._refused([(seq, state)])

    def transition(
        self, seq: int, state: ItemState, *, attempts_inc: int = 0, **fields: Any
    ) -> None:
        """Move item ``seq`` to ``state`` and set ``fields``, in one transaction.

        Fields are the [ItemRecord][carmigrate.migrate.ItemRecord] attributes
        that describe an outcome (``reason``, ``offset`` as
        ``error_offset``, ``md5``, ``created``, ...). The change is added to
        the journal.

        Args:
            seq: The item.
            state: Its new state.
            attempts_inc: Added to the attempt count.
            **fields: Columns to set.

        Raises:
            PlanError: The item does not exist or may not move from its
                current state to ``state`` (nothing recorded).
            ValueError: An unknown field.
        """
        self._writable()
        self._apply(seq, state, attempts_inc, fields)

    @contextlib.contextmanager
    def batch(self) -> Iterator[LedgerBatch]:
        """Group state changes into one transaction (for throughput).

        Consecutive changes of the same shape are written with one
        ``executemany``; a batch of a thousand changes costs about a fifth of
        a thousand single ones.

        Example:
            ``with ledger.batch() as b: b.transition(1, ItemState.COPYING)``

        Raises:
            PlanError: A change in the batch is not allowed; the whole batch
                is rolled back.
        """
        self._writable()
        batch = LedgerBatch(self)
        yield batch
        changes = batch._changes
        if not changes:
            return
        db = self._db
        if len(changes) == 1:
            # one statement is its own transaction (the journal row comes
            # from a trigger, inside it): one call instead of three
            one = changes[0]
            if db.execute(one.sql, one.params).rowcount != 1:
                raise self._refused([(one.seq, one.state)])
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            i = 0
            n = len(changes)
            while i < n:
                # consecutive changes of one shape go in one executemany
                sql = changes[i].sql
                j = i + 1
                while j < n and changes[j].sql == sql:
                    j += 1
                group = changes[i:j]
                if j - i == 1:
                    count = db.execute(sql, group[0].params).rowcount
                else:
                    count = db.executemany(sql, [c.params for c in group]).rowcount
                if count != j - i:
                    db.execute("ROLLBACK")
                    raise self._refused([(c.seq, c.state) for c in group])
                i = j
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------
    # queries

    def _record(self, row: tuple[Any, ...]) -> ItemRecord:
        record: ItemRecord = _record_of(row)
        return record

    def item(self, seq: int) -> ItemRecord:
        """The record of item ``seq``.

        Raises:
            PlanError: No such item.
        """
        row = self._db.execute(
            f"SELECT {_ITEM_COLUMNS} FROM items WHERE seq = ?",  # noqa: S608 - constant columns
            (seq,),
        ).fetchone()
        if row is None:
            raise PlanError(f"the ledger has no item {seq}")
        return self._record(row)

    def find(self, key: str) -> ItemRecord | None:
        """The item whose source key (or, failing that, destination key) is ``key``."""
        row = self._db.execute(
            f"SELECT {_ITEM_COLUMNS} FROM items WHERE source_key = ? LIMIT 1",  # noqa: S608 - constant columns
            (key,),
        ).fetchone()
        if row is None:
            row = self._db.execute(
                f"SELECT {_ITEM_COLUMNS} FROM items WHERE destination_key = ? "  # noqa: S608 - column names are constants
                "ORDER BY seq LIMIT 1",
                (key,),
            ).fetchone()
        return None if row is None else self._record(row)

    @staticmethod
    def _where(
        state: ItemState | Iterable[ItemState] | None,
        stage: str | Iterable[str] | None,
        cohort: str | None,
        action: Action | Iterable[Action] | None,
    ) -> tuple[list[str], list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []

        def many(column: str, values: list[str]) -> None:
            clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
            params.extend(values)

        if state is not None:
            many(
                "state",
                [state.value]
                if isinstance(state, ItemState)
                else [s.value for s in state],
            )
        if stage is not None:
            many("stage", [stage] if isinstance(stage, str) else list(stage))
        if cohort is not None:
            clauses.append("cohort = ?")
            params.append(cohort)
        if action is not None:
            many(
                "action",
                [action.value]
                if isinstance(action, Action)
                else [a.value for a in action],
            )
        return clauses, params

    def items(
        self,
        *,
        state: ItemState | Iterable[ItemState] | None = None,
        stage: str | Iterable[str] | None = None,
        cohort: str | None = None,
        action: Action | Iterable[Action] | None = None,
        after: int = -1,
        limit: int | None = None,
        page: int = 1000,
    ) -> Iterator[ItemRecord]:
        """Items matching every given filter, in plan order.

        Streams in pages of ``page`` rows (memory stays bounded; rows changed
        while iterating may or may not be seen again).

        Args:
            state: One state or several.
            stage: One stage name or several.
            cohort: A cohort.
            action: One action or several.
            after: Only items with ``seq`` greater than this.
            limit: At most this many.
            page: Rows fetched per query.
        """
        clauses, params = self._where(state, stage, cohort, action)
        where = " AND ".join([*clauses, "seq > ?"])
        left = limit
        last = after
        while left is None or left > 0:
            n = page if left is None else min(page, left)
            rows = self._db.execute(
                f"SELECT {_ITEM_COLUMNS} FROM items WHERE {where} ORDER BY seq LIMIT ?",  # noqa: S608 - column names are constants
                [*params, last, n],
            ).fetchall()
            if not rows:
                return
            for row in rows:
                yield self._record(row)
            last = rows[-1][_SEQ]
            if left is not None:
                left -= len(rows)
            if len(rows) < n:
                return

    def counts(
        self,
        *,
        stage: str | Iterable[str] | None = None,
        cohort: str | None = None,
        action: Action | Iterable[Action] | None = None,
    ) -> dict[ItemState, int]:
        """Items per state (states with no items are left out)."""
        clauses, params = self._where(None, stage, cohort, action)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return {
            ItemState(s): n
            for s, n in self._db.execute(
                f"SELECT state, COUNT(*) FROM items {where} GROUP BY state",  # noqa: S608 - constant columns
                params,
            )
        }

    def totals(
        self, *, group_by: Sequence[str] = ("stage", "action", "state")
    ) -> list[tuple[Any, ...]]:
        """Items and bytes grouped by columns, as ``(*group values, items, bytes, bytes_moved)`` rows.

        Args:
            group_by: Any of ``stage``, ``cohort``, ``action``, ``state``.
        """
        for col in group_by:
            if col not in ("stage", "cohort", "action", "state"):
                raise ValueError(f"cannot group by {col!r}")
        cols = ", ".join(group_by)
        sql = f"SELECT {cols}{', ' if cols else ''}COUNT(*), COALESCE(SUM(size), 0), COALESCE(SUM(bytes_moved), 0) FROM items"  # noqa: S608 - column names are constants
        if cols:
            sql += f" GROUP BY {cols} ORDER BY {cols}"
        return [tuple(r) for r in self._db.execute(sql)]

    def history(
        self, seq: int | None = None, *, limit: int | None = None
    ) -> list[Transition]:
        """The journal of state changes (of one item, or all), oldest first."""
        sql = "SELECT seq, time, run, state, reason FROM history"
        params: list[Any] = []
        if seq is not None:
            sql += " WHERE seq = ?"
            params.append(seq)
        sql += " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [
            Transition(
                seq=r[0], time=r[1], run=r[2], state=ItemState(r[3]), reason=r[4]
            )
            for r in self._db.execute(sql, params)
        ]

    def id_map(self) -> Iterator[tuple[str, str]]:
        """``(source id, new id)`` of every item that carries ids, in plan order."""
        cur = self._db.execute(
            "SELECT source_id, new_id FROM items WHERE source_id IS NOT NULL "
            "AND new_id IS NOT NULL ORDER BY seq"
        )
        while rows := cur.fetchmany(1000):
            for r in rows:
                yield r[0], r[1]

    def fidelity_losses(self) -> dict[str, int]:
        """Items per kind of metadata lost (``"mtime"``, ``"metadata:<name>"``, ...)."""
        losses: dict[str, int] = {}
        for text, count in self._db.execute(
            "SELECT lost, COUNT(*) FROM items WHERE lost IS NOT NULL GROUP BY lost"
        ):
            for what in json.loads(text):
                losses[what] = losses.get(what, 0) + count
        return losses

    def stop_path(self) -> str:
        """The file whose existence asks a running ``execute`` to stop cleanly."""
        return self._path + ".stop"

    def record_leftovers(
        self,
        kind: str,
        left: Iterable[tuple[str, str]],
        *,
        keys: Iterable[str] = (),
    ) -> None:
        """Record what the latest cleanup of ``kind`` could not remove (replacing the last record).

        Args:
            kind: What was cleaned up (``"temporary file"``, ``"pending
                upload"``).
            left: ``(name, why)`` of each thing still there; empty when
                the cleanup removed everything.
            keys: Keys whose cleanup the next one must try again (see
                [leftover_keys][carmigrate.migrate.Ledger.leftover_keys]).

        Raises:
            PlanError: The ledger is read-only.
        """
        self._writable()
        with self._tx():
            self._set_meta(
                {
                    f"leftovers:{kind}": json.dumps([list(x) for x in left]),
                    f"leftover_keys:{kind}": json.dumps(sorted(set(keys))),
                }
            )

    def leftovers(self) -> tuple[tuple[str, str, str], ...]:
        """What the latest cleanups could not remove: ``(kind, name, why)``.

        Resume and verify remove the temporary files of writers a crash
        killed, and resume aborts stray uploads under the plan's keys; what
        they could not remove stays listed here (and in ``carmigrate
        status``) until a later cleanup removes it.
        """
        rows = self._db.execute(
            "SELECT key, value FROM meta WHERE key LIKE 'leftovers:%' ORDER BY key"
        ).fetchall()
        out: list[tuple[str, str, str]] = []
        for key, value in rows:
            kind = str(key).partition(":")[2]
            out += [(kind, str(name), str(why)) for name, why in json.loads(value)]
        return tuple(out)

    def leftover_keys(self, kind: str) -> tuple[str, ...]:
        """Keys whose cleanup of ``kind`` left something, to be tried again."""
        value = self._meta(f"leftover_keys:{kind}")
        return tuple(json.loads(value)) if value else ()

    def request_stop(self) -> None:
        """Ask the run using this ledger (possibly in another process) to stop cleanly.

        Creates the [stop_path][carmigrate.migrate.Ledger.stop_path] file;
        the coordinator notices it within about a second, starts nothing
        new, lets items in flight finish, records ``"stopped"`` and removes
        the file. ``resume`` continues later.
        """
        with open(self.stop_path(), "w") as f:
            f.write(str(os.getpid()))
