"""Units, their members' outcomes, verdicts and rounds: a migration's own bookkeeping.

A *unit* is a named group of items that is complete only when every one of
its items is verified: an upload and its shards, a bag and its files, a user
and their files, a project and its files and rows. A recipe runs in *rounds*:
each round is a set of engine plans (one per source store), each with its own
ledger; a round a limit stopped is resumed, a finished round is never run
again, and the next round plans only what is still to do.

All of it lives in a ledger file (the recipe's *work ledger*, which has no
plan of its own): the units and their members, each member's latest outcome
(copied from the round ledgers after every run), each unit's verdict, and the
rounds with their plan and ledger files. No recipe keeps a database of its
own.

A member is named by the destination key of the item that carries it, so one
member can belong to several units (a shard CAR shared by two uploads) and
its outcome is recorded once.
"""

from __future__ import annotations

import enum
import itertools
import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import attrs

from carmigrate.errors import PlanError
from carmigrate.migrate import serde
from carmigrate.migrate._model import Action, ItemState

if TYPE_CHECKING:
    import sqlite3

    from carmigrate.migrate._ledger import ItemRecord, Ledger

__all__ = [
    "MemberRecord",
    "MemberState",
    "RoundPlan",
    "RoundRecord",
    "Unit",
    "UnitRecord",
    "Verdict",
]

_PAGE: Final = 1000

UNIT_TABLES: Final = """
CREATE TABLE IF NOT EXISTS units (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    owner TEXT,
    data TEXT,
    verdict TEXT NOT NULL DEFAULT 'incomplete',
    reasons TEXT,
    updated REAL
);
CREATE TABLE IF NOT EXISTS unit_members (
    unit TEXT NOT NULL,
    member TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (unit, member)
);
CREATE INDEX IF NOT EXISTS unit_members_member ON unit_members (member);
CREATE TABLE IF NOT EXISTS members (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    reason TEXT,
    round INTEGER,
    record TEXT,
    updated REAL
);
CREATE TABLE IF NOT EXISTS rounds (
    n INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL
);
CREATE TABLE IF NOT EXISTS round_plans (
    n INTEGER NOT NULL,
    k INTEGER NOT NULL,
    source TEXT NOT NULL,
    plan TEXT NOT NULL,
    ledger TEXT NOT NULL,
    PRIMARY KEY (n, k)
);
"""


class Verdict(enum.Enum):
    """Where a unit stands.

    Attributes:
        COMPLETE: Every member is verified (and the recipe's own checks of
            the unit passed).
        INCOMPLETE: Some member is not verified yet: not planned, pending,
            or unverifiable (nothing independent was compared); the reasons
            say which.
        FAILED: Nothing is pending, and some member failed for good, was
            found nowhere, or conflicts with the destination; the reasons say
            which and why.
    """

    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    FAILED = "failed"


class MemberState(enum.Enum):
    """A member's latest outcome, from the item that carried it.

    Attributes:
        VERIFIED: Its item ended ``VERIFIED``, or ``SKIPPED`` because the
            listings proved it equal.
        UNVERIFIABLE: Its item ended ``UNVERIFIABLE``.
        PENDING: Planned, not finished (or rolled back).
        FAILED: Its item failed (the reason says why; a transient failure is
            retried by the next round).
        CONFLICT: The destination holds something else.
        MISSING: The recipe found it in no source (the reason says where it
            looked).
    """

    VERIFIED = "verified"
    UNVERIFIABLE = "unverifiable"
    PENDING = "pending"
    FAILED = "failed"
    CONFLICT = "conflict"
    MISSING = "missing"


_FROM_ITEM: Final[Mapping[ItemState, MemberState]] = {
    ItemState.VERIFIED: MemberState.VERIFIED,
    ItemState.UNVERIFIABLE: MemberState.UNVERIFIABLE,
    ItemState.FAILED: MemberState.FAILED,
    ItemState.CONFLICT: MemberState.CONFLICT,
}


def _names(value: Iterable[str]) -> tuple[str, ...]:
    out = tuple(value)
    if len(set(out)) != len(out):
        raise PlanError(f"a unit lists a member twice: {sorted(out)}")
    return out


@attrs.frozen(kw_only=True)
class Unit:
    """A named group of items, complete only when every one is verified.

    Attributes:
        name: Unique in the work ledger (``"upload:<root>"``, ``"bag:<id>"``).
        kind: What it is (``"upload"``, ``"bag"``, ``"user"``, ``"project"``).
        owner: Its tenant (user, account, space), if any: reports group by it.
        members: The destination keys of its items, in the unit's order.
        data: The recipe's own plain data about the unit (JSON-able): the
            listing record it came from, names to keep.
    """

    name: str
    kind: str
    owner: str | None = None
    members: tuple[str, ...] = attrs.field(default=(), converter=_names)
    data: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class UnitRecord:
    """A unit as the work ledger knows it, with its verdict.

    Attributes:
        unit: The unit.
        verdict: Where it stands.
        reasons: Why it is not complete (one line a member or check).
        updated: When the verdict was last set (Unix time).
    """

    unit: Unit
    verdict: Verdict
    reasons: tuple[str, ...] = ()
    updated: float | None = None

    @property
    def name(self) -> str:
        """The unit's name."""
        return self.unit.name


@attrs.frozen(kw_only=True)
class MemberRecord:
    """A member's latest outcome.

    Attributes:
        key: The member (its item's destination key).
        state: Its state.
        reason: Why it failed, conflicts or is missing; or a note.
        round: The round whose ledger last had it.
        record: That ledger's record of its item (``None`` for
            ``MISSING``).
    """

    key: str
    state: MemberState
    reason: str | None = None
    round: int | None = None
    record: ItemRecord | None = None


@attrs.frozen(kw_only=True)
class RoundPlan:
    """One plan of a round: its source URL, plan file and ledger file.

    Attributes:
        n: The round.
        k: The plan's position in the round (0-based).
        source: The plan's source URL (redacted).
        plan: The plan file.
        ledger: Its ledger file.
    """

    n: int
    k: int
    source: str
    plan: str
    ledger: str


@attrs.frozen(kw_only=True)
class RoundRecord:
    """One round of a recipe.

    Attributes:
        n: Its number (1, 2, ...).
        open: Not finished: the next run resumes it.
        started: When it was planned (Unix time).
        finished: When its last plan finished, if it did.
        plans: Its plans, in order.
    """

    n: int
    open: bool
    started: float
    finished: float | None
    plans: tuple[RoundPlan, ...]


def member_of(rec: ItemRecord) -> tuple[MemberState, str | None]:
    """The member state an item record gives, and its reason."""
    state = _FROM_ITEM.get(rec.state)
    if state is not None:
        return state, rec.reason
    if rec.state is ItemState.SKIPPED and rec.item.action is Action.SKIP:
        return MemberState.VERIFIED, rec.item.reason
    return MemberState.PENDING, rec.reason


def judge(
    members: Sequence[str], known: Mapping[str, tuple[MemberState, str | None]]
) -> tuple[Verdict, tuple[str, ...]]:
    """The verdict of a unit from its members' states (see [Verdict][carmigrate.migrate.Verdict])."""
    reasons: list[str] = []
    open_ = False
    broken = False
    for m in members:
        state, why = known.get(m, (None, None))
        if state is MemberState.VERIFIED:
            continue
        if state is None:
            open_ = True
            reasons.append(f"{m}: not planned yet")
        elif state in (MemberState.PENDING, MemberState.UNVERIFIABLE):
            open_ = True
            what = (
                "unverifiable: nothing independent was compared"
                if state is MemberState.UNVERIFIABLE
                else "pending"
            )
            reasons.append(f"{m}: {what}")
        else:
            broken = True
            reasons.append(f"{m}: {state.value}" + (f": {why}" if why else ""))
    if not reasons:
        return Verdict.COMPLETE, ()
    return (Verdict.FAILED if broken and not open_ else Verdict.INCOMPLETE), tuple(
        reasons
    )


class UnitsMixin:
    """The units, members and rounds of a work ledger (mixed into [Ledger][carmigrate.migrate.Ledger]).

    State: none of its own; it uses the ledger's connection.
    """

    _db: sqlite3.Connection

    def _writable(self) -> None:  # pragma: no cover - provided by Ledger
        raise NotImplementedError

    def _tx(self) -> Any:  # pragma: no cover - provided by Ledger
        raise NotImplementedError

    # -- units ----------------------------------------------------------

    def add_units(self, units: Iterable[Unit]) -> int:
        """Record units (a unit of the same name is replaced, members and all).

        New and replaced units are ``INCOMPLETE`` until
        [judge_units][carmigrate.migrate.Ledger.judge_units] runs. One
        transaction.

        Returns:
            The units recorded.
        """
        self._writable()
        now = time.time()
        n = 0
        with self._tx() as db:
            for u in units:
                db.execute("DELETE FROM unit_members WHERE unit = ?", (u.name,))
                db.execute(
                    "INSERT INTO units (name, kind, owner, data, verdict, reasons, updated) "
                    "VALUES (?, ?, ?, ?, 'incomplete', NULL, ?) ON CONFLICT (name) DO UPDATE "
                    "SET kind = excluded.kind, owner = excluded.owner, data = excluded.data, "
                    "verdict = 'incomplete', reasons = NULL, updated = excluded.updated",
                    (u.name, u.kind, u.owner, _json(u.data), now),
                )
                db.executemany(
                    "INSERT INTO unit_members (unit, member, position) VALUES (?, ?, ?)",
                    [(u.name, m, i) for i, m in enumerate(u.members)],
                )
                n += 1
        return n

    def _put_unit(
        self,
        unit: Unit,
        verdict: Verdict,
        reasons: Sequence[str] = (),
        data_json: str | None = None,
    ) -> None:
        """Record one unit with its verdict at once (``add_units`` then ``set_verdict`` in one write).

        ``data_json`` is the unit's data already as JSON (of an object), to
        store instead of encoding ``unit.data`` again.
        """
        self._writable()
        with self._tx() as db:
            db.execute("DELETE FROM unit_members WHERE unit = ?", (unit.name,))
            db.execute(
                "INSERT INTO units (name, kind, owner, data, verdict, reasons, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE "
                "SET kind = excluded.kind, owner = excluded.owner, data = excluded.data, "
                "verdict = excluded.verdict, reasons = excluded.reasons, "
                "updated = excluded.updated",
                (
                    unit.name,
                    unit.kind,
                    unit.owner,
                    _json(unit.data) if data_json is None else data_json,
                    verdict.value,
                    json.dumps(list(reasons)) if reasons else None,
                    time.time(),
                ),
            )
            db.executemany(
                "INSERT INTO unit_members (unit, member, position) VALUES (?, ?, ?)",
                [(unit.name, m, i) for i, m in enumerate(unit.members)],
            )

    def _unit_record(
        self, row: Sequence[Any], members: Sequence[str] | None = None
    ) -> UnitRecord:
        name, kind, owner, data, verdict, reasons, updated = row
        if members is None:
            members = [
                r[0]
                for r in self._db.execute(
                    "SELECT member FROM unit_members WHERE unit = ? ORDER BY position",
                    (name,),
                )
            ]
        return UnitRecord(
            unit=Unit(
                name=name,
                kind=kind,
                owner=owner,
                members=tuple(members),
                data=json.loads(data) if data else {},
            ),
            verdict=Verdict(verdict),
            reasons=tuple(json.loads(reasons)) if reasons else (),
            updated=updated,
        )

    def units(
        self,
        *,
        verdict: Verdict | None = None,
        kind: str | None = None,
        owner: str | None = None,
    ) -> Iterator[UnitRecord]:
        """Units matching every given filter, by name."""
        clauses, params = [], []
        for column, value in (
            ("verdict", None if verdict is None else verdict.value),
            ("kind", kind),
            ("owner", owner),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        # pages of units (keyset on the name), each read whole with its
        # members in one query: memory stays bounded, and a caller may change
        # verdicts while it iterates
        where = "".join(f" AND {c}" for c in clauses)
        last = ""
        first = True
        while True:
            page = self._db.execute(
                "SELECT name, kind, owner, data, verdict, reasons, updated FROM units "  # noqa: S608 - constant columns
                f"WHERE (name > ? OR ?){where} ORDER BY name LIMIT ?",
                [last, first, *params, _PAGE],
            ).fetchall()
            if not page:
                return
            members: dict[str, list[str]] = {}
            for unit, member in self._db.execute(
                "SELECT unit, member FROM unit_members WHERE unit >= ? AND unit <= ? "
                "ORDER BY unit, position",
                (page[0][0], page[-1][0]),
            ):
                members.setdefault(unit, []).append(member)
            for row in page:
                yield self._unit_record(row, members.get(row[0], []))
            last, first = page[-1][0], False
            if len(page) < _PAGE:
                return

    def unit(self, name: str) -> UnitRecord | None:
        """The unit called ``name``, if recorded."""
        row = self._db.execute(
            "SELECT name, kind, owner, data, verdict, reasons, updated FROM units "
            "WHERE name = ?",
            (name,),
        ).fetchone()
        return None if row is None else self._unit_record(row)

    def unit_counts(self) -> dict[Verdict, int]:
        """Units per verdict (verdicts with none are left out)."""
        return {
            Verdict(v): n
            for v, n in self._db.execute(
                "SELECT verdict, COUNT(*) FROM units GROUP BY verdict"
            )
        }

    def set_verdict(
        self, name: str, verdict: Verdict, reasons: Sequence[str] = ()
    ) -> None:
        """Set a unit's verdict (a recipe's own check of the unit, after judging).

        Raises:
            PlanError: No unit of that name.
        """
        self._writable()
        cur = self._db.execute(
            "UPDATE units SET verdict = ?, reasons = ?, updated = ? WHERE name = ?",
            (
                verdict.value,
                json.dumps(list(reasons)) if reasons else None,
                time.time(),
                name,
            ),
        )
        if cur.rowcount != 1:
            raise PlanError(f"the work ledger has no unit {name!r}")

    def set_unit_data(self, data: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the data of units, by name (verdicts and members are kept; one transaction).

        Raises:
            PlanError: No unit of one of the names (nothing is changed).
        """
        self._writable()
        with self._tx() as db:
            for name, value in data.items():
                cur = db.execute(
                    "UPDATE units SET data = ? WHERE name = ?", (_json(value), name)
                )
                if cur.rowcount != 1:
                    raise PlanError(f"the work ledger has no unit {name!r}")

    def judge_units(self) -> dict[Verdict, int]:
        """Set every unit's verdict from its members' latest states (one transaction).

        A unit is ``COMPLETE`` when every member is verified, ``FAILED`` when
        nothing is pending and some member failed, is missing or conflicts,
        and ``INCOMPLETE`` otherwise; the reasons name each member that is
        not verified.

        Returns:
            Units per verdict afterwards.
        """
        self._writable()
        known = {
            k: (MemberState(s), r)
            for k, s, r in self._db.execute("SELECT key, state, reason FROM members")
        }
        now = time.time()

        def verdicts() -> Iterator[tuple[str, str | None, float, str]]:
            # one pass over every unit's members, in unit and member order
            cur = self._db.execute(
                "SELECT u.name, m.member FROM units u LEFT JOIN unit_members m "
                "ON m.unit = u.name ORDER BY u.name, m.position"
            )
            for name, rows in itertools.groupby(cur, key=lambda r: r[0]):
                members = [m for _, m in rows if m is not None]
                verdict, reasons = judge(members, known)
                text = json.dumps(list(reasons)) if reasons else None
                yield verdict.value, text, now, name

        with self._tx() as db:
            # the rows are read in full first: SQLite gives no stable cursor
            # over a table being updated
            db.executemany(
                "UPDATE units SET verdict = ?, reasons = ?, updated = ? WHERE name = ?",
                list(verdicts()),
            )
        return self.unit_counts()

    # -- members --------------------------------------------------------

    def record_members(self, n: int, round_ledger: Ledger) -> int:
        """Copy the outcome of every item of a round's ledger to its member.

        The member is the item's destination key; ``EXTRA`` items are not
        members. A later round overrides what an earlier one recorded. One
        transaction.

        Returns:
            Members recorded.
        """
        return self.record_items(n, round_ledger.items())

    def record_items(self, n: int | None, records: Iterable[ItemRecord]) -> int:
        """Copy the outcome of item records (of any ledger) to their members.

        As [record_members][carmigrate.migrate.Ledger.record_members], for
        records a recipe took from elsewhere (a migration ledger's verified
        items: nothing is read again); ``n`` is ``None`` when they come from
        no round. One transaction.

        Returns:
            Members recorded.
        """
        self._writable()
        now = time.time()
        rows = []
        for rec in records:
            if rec.item.action is Action.EXTRA:
                continue
            state, reason = member_of(rec)
            rows.append(
                (
                    rec.item.destination_key,
                    state.value,
                    reason,
                    n,
                    serde.canonical_json(serde.unstructure(rec)),
                    now,
                )
            )
        with self._tx() as db:
            db.executemany(
                "INSERT INTO members (key, state, reason, round, record, updated) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET "
                "state = excluded.state, reason = excluded.reason, round = excluded.round, "
                "record = excluded.record, updated = excluded.updated",
                rows,
            )
        return len(rows)

    def mark_missing(self, missing: Mapping[str, str], n: int | None = None) -> None:
        """Record members found in no source, with where the recipe looked.

        A member already verified is left as it is.
        """
        self._writable()
        now = time.time()
        with self._tx() as db:
            db.executemany(
                "INSERT INTO members (key, state, reason, round, record, updated) "
                "VALUES (?, 'missing', ?, ?, NULL, ?) ON CONFLICT (key) DO UPDATE SET "
                "state = 'missing', reason = excluded.reason, round = excluded.round, "
                "record = NULL, updated = excluded.updated WHERE state != 'verified'",
                [(k, why, n, now) for k, why in sorted(missing.items())],
            )

    def member(self, key: str) -> MemberRecord | None:
        """The latest outcome of member ``key``, if any was recorded."""
        row = self._db.execute(
            "SELECT key, state, reason, round, record FROM members WHERE key = ?",
            (key,),
        ).fetchone()
        return None if row is None else _member(row)

    def members(self, *, state: MemberState | None = None) -> Iterator[MemberRecord]:
        """Recorded members (of one state, or all), by key."""
        sql = "SELECT key, state, reason, round, record FROM members"
        params: tuple[Any, ...] = ()
        if state is not None:
            sql += " WHERE state = ?"
            params = (state.value,)
        for row in self._db.execute(sql + " ORDER BY key", params).fetchall():
            yield _member(row)

    def member_states(self) -> dict[str, MemberState]:
        """Every recorded member's state, by key."""
        return {
            k: MemberState(s)
            for k, s in self._db.execute("SELECT key, state FROM members")
        }

    def unit_members(self) -> Iterator[str]:
        """Every member of any unit (once each), by key."""
        for (key,) in self._db.execute(
            "SELECT DISTINCT member FROM unit_members ORDER BY member"
        ):
            yield key

    # -- rounds ---------------------------------------------------------

    def open_round(self) -> RoundRecord | None:
        """The round that has not finished, if any (the next run resumes it)."""
        row = self._db.execute(
            "SELECT n FROM rounds WHERE state = 'open' ORDER BY n DESC LIMIT 1"
        ).fetchone()
        return None if row is None else self.round(int(row[0]))

    def round(self, n: int) -> RoundRecord:
        """Round ``n``.

        Raises:
            PlanError: No such round.
        """
        row = self._db.execute(
            "SELECT n, state, started, finished FROM rounds WHERE n = ?", (n,)
        ).fetchone()
        if row is None:
            raise PlanError(f"the work ledger has no round {n}")
        plans = tuple(
            RoundPlan(n=r[0], k=r[1], source=r[2], plan=r[3], ledger=r[4])
            for r in self._db.execute(
                "SELECT n, k, source, plan, ledger FROM round_plans WHERE n = ? ORDER BY k",
                (n,),
            )
        )
        return RoundRecord(
            n=row[0],
            open=row[1] == "open",
            started=row[2],
            finished=row[3],
            plans=plans,
        )

    def rounds(self) -> list[RoundRecord]:
        """Every round, oldest first."""
        return [
            self.round(int(r[0]))
            for r in self._db.execute("SELECT n FROM rounds ORDER BY n")
        ]

    def add_round(self, plans: Sequence[tuple[str, str, str]]) -> RoundRecord:
        """Record a new open round of ``(source URL, plan file, ledger file)`` plans.

        Raises:
            PlanError: A round is still open.
        """
        self._writable()
        if self.open_round() is not None:
            raise PlanError("a round is still open: resume it before planning another")
        with self._tx() as db:
            row = db.execute("SELECT COALESCE(MAX(n), 0) + 1 FROM rounds").fetchone()
            n = int(row[0])
            db.execute(
                "INSERT INTO rounds (n, state, started) VALUES (?, 'open', ?)",
                (n, time.time()),
            )
            db.executemany(
                "INSERT INTO round_plans (n, k, source, plan, ledger) VALUES (?, ?, ?, ?, ?)",
                [(n, k, *p) for k, p in enumerate(plans)],
            )
        return self.round(n)

    def finish_round(self, n: int) -> None:
        """Mark round ``n`` finished: it is never run again."""
        self._writable()
        self._db.execute(
            "UPDATE rounds SET state = 'done', finished = ? WHERE n = ?",
            (time.time(), n),
        )


def _json(value: Mapping[str, Any]) -> str | None:
    return (
        json.dumps(dict(value), sort_keys=True, ensure_ascii=False) if value else None
    )


def _member(row: Sequence[Any]) -> MemberRecord:
    from carmigrate.migrate._ledger import ItemRecord

    key, state, reason, n, record = row
    return MemberRecord(
        key=key,
        state=MemberState(state),
        reason=reason,
        round=n,
        record=None
        if record is None
        else serde.structure(json.loads(record), ItemRecord),
    )
