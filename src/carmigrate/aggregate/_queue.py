"""The aggregate lifecycle, persisted in SQLite.

Mirrors the w3filecoin design's ``car`` and ``aggregate`` tables: offered
pieces wait in ``car`` until a packing policy assigns them to an aggregate,
and each aggregate moves INGESTING → READY → DEAL_PENDING → DEAL_PROCESSED,
or to REJECTED, in which case its pieces are re-buffered with priority (and
the offending ones dropped, or the rest bisected until the culprit is
isolated).

Every state change is one ``BEGIN IMMEDIATE`` transaction. A piece row has
exactly one ``aggregate_id`` column, set only when it is NULL inside that
transaction, so no piece can sit in two live aggregates, whatever threads or
processes offer and build at the same time.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs

from carmigrate.aggregate._builder import Aggregate, Placement
from carmigrate.aggregate._index import index_start
from carmigrate.aggregate._packing import (
    PackingConstraints,
    PackItem,
    PlannedAggregate,
    Policy,
    pack,
)
from carmigrate.commp import PieceInfo
from carmigrate.errors import AggregateError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from carmigrate.aggregate._builder import Piece
    from carmigrate.aggregate._proof import InclusionProof

__all__ = [
    "AggregateQueue",
    "AggregateRecord",
    "AggregateState",
    "Offer",
    "OfferResult",
    "PieceRecord",
]


class AggregateState(enum.Enum):
    """Where an aggregate is in its lifecycle."""

    INGESTING = "INGESTING"
    READY = "READY"
    DEAL_PENDING = "DEAL_PENDING"
    DEAL_PROCESSED = "DEAL_PROCESSED"
    REJECTED = "REJECTED"


_LIVE: Final = ("INGESTING", "READY", "DEAL_PENDING", "DEAL_PROCESSED")
_NEXT: Final = {
    AggregateState.INGESTING: {AggregateState.REJECTED},
    AggregateState.READY: {AggregateState.DEAL_PENDING, AggregateState.REJECTED},
    AggregateState.DEAL_PENDING: {
        AggregateState.DEAL_PROCESSED,
        AggregateState.REJECTED,
    },
}

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS car (
    id            INTEGER PRIMARY KEY,
    root          BLOB NOT NULL,
    padded_size   INTEGER NOT NULL,
    payload_size  INTEGER,
    link          TEXT,
    url           TEXT,
    md5           TEXT,
    sha256        TEXT,
    grp           TEXT,
    tenant        TEXT,
    priority      INTEGER NOT NULL DEFAULT 0,
    quarantine    TEXT,
    status        TEXT NOT NULL DEFAULT 'BUFFERED',
    drop_reason   TEXT,
    aggregate_id  TEXT REFERENCES aggregate(aggregate_id),
    inserted_at   REAL NOT NULL,
    UNIQUE (root, padded_size)
);
CREATE INDEX IF NOT EXISTS car_buffered ON car(status, aggregate_id);
CREATE TABLE IF NOT EXISTS aggregate (
    aggregate_id  TEXT PRIMARY KEY,
    deal_size     INTEGER NOT NULL,
    state         TEXT NOT NULL,
    reason        TEXT NOT NULL,
    root          BLOB,
    piece_cid     TEXT,
    piece_cid_v2  TEXT,
    used          INTEGER NOT NULL,
    payload       INTEGER NOT NULL,
    pieces        INTEGER NOT NULL,
    prepend       TEXT NOT NULL,
    deal_ref      TEXT,
    reject_reason TEXT,
    inserted_at   REAL NOT NULL,
    updated_at    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS aggregate_state ON aggregate(state);
CREATE TABLE IF NOT EXISTS member (
    aggregate_id  TEXT NOT NULL REFERENCES aggregate(aggregate_id),
    car_id        INTEGER NOT NULL REFERENCES car(id),
    position      INTEGER NOT NULL,
    offset        INTEGER NOT NULL,
    PRIMARY KEY (aggregate_id, position)
);
CREATE INDEX IF NOT EXISTS member_car ON member(car_id);
CREATE TABLE IF NOT EXISTS transition (
    aggregate_id  TEXT NOT NULL,
    from_state    TEXT,
    to_state      TEXT NOT NULL,
    at            REAL NOT NULL,
    note          TEXT
);
"""


@attrs.frozen
class Offer:
    """A piece offered to the queue, with what the manifest needs about it.

    Attributes:
        piece: The piece (root and padded size), e.g. a ``PieceInfo``.
        payload_size: The payload's size in bytes, if known.
        link: The CAR's CID, if the piece is a CAR.
        url: Where a storage provider can fetch the payload.
        md5: Hex MD5 of the payload, if known.
        sha256: Hex SHA-256 of the payload, if known.
        group: Pieces sharing a group land in the same aggregate.
        tenant: Tenant, for tenant isolation.
    """

    piece: Piece
    payload_size: int | None = None
    link: str | None = None
    url: str | None = None
    md5: str | None = None
    sha256: str | None = None
    group: str | None = None
    tenant: str | None = None


@attrs.frozen
class OfferResult:
    """What ``offer`` did.

    Attributes:
        accepted: Pieces newly buffered.
        duplicates: Keys of pieces already known to the queue (buffered, in a
            live aggregate, or dealt), left untouched.
    """

    accepted: int
    duplicates: tuple[str, ...]


@attrs.frozen
class PieceRecord:
    """A piece as the queue knows it.

    Attributes:
        key: ``<v1 PieceCID>/<padded size>``, the queue's identity of a piece.
        piece_cid: PieceCID v1.
        piece_cid_v2: PieceCID v2 (padding from the payload size if known).
        padded_size: Padded piece size.
        payload_size: Payload bytes, if known.
        link: The CAR CID, if given.
        url: Fetch URL, if given.
        md5: Hex MD5, if given.
        sha256: Hex SHA-256, if given.
        status: ``BUFFERED``, ``AGGREGATED`` or ``DROPPED``.
        aggregate_id: The live aggregate holding it, if any.
        drop_reason: Why it was dropped, if it was.
        priority: Packing priority (raised each time it is re-buffered).
    """

    key: str
    piece_cid: str
    piece_cid_v2: str
    padded_size: int
    payload_size: int | None
    link: str | None
    url: str | None
    md5: str | None
    sha256: str | None
    status: str
    aggregate_id: str | None
    drop_reason: str | None
    priority: int


@attrs.frozen
class AggregateRecord:
    """An aggregate as the queue knows it.

    Attributes:
        aggregate_id: The queue's identifier (stable from INGESTING on).
        state: Lifecycle state.
        deal_size: Padded deal size.
        reason: Why it was built: ``full``, ``deadline`` or ``bisect``.
        piece_cid: Aggregate PieceCID v1, once READY.
        piece_cid_v2: Aggregate PieceCID v2, once READY.
        pieces: Number of pieces (prepended ones included).
        used: Padded bytes covered by pieces.
        payload: Payload bytes of the pieces.
        deal_ref: The dealer's reference, once DEAL_PENDING.
        reject_reason: Why it was rejected, if it was.
        inserted_at: Creation time (seconds since the epoch).
        updated_at: Time of the last transition.
    """

    aggregate_id: str
    state: AggregateState
    deal_size: int
    reason: str
    piece_cid: str | None
    piece_cid_v2: str | None
    pieces: int
    used: int
    payload: int
    deal_ref: str | None
    reject_reason: str | None
    inserted_at: float
    updated_at: float


def _key(root: bytes, size: int) -> str:
    return f"{PieceInfo(root, size).cid_v1}/{size}"


class AggregateQueue:
    """Offer pieces, build aggregates, and track them to a deal, in SQLite.

    State: a SQLite database (WAL mode) at ``path``; the object itself keeps
    only a connection per thread. Any number of ``AggregateQueue`` objects,
    in any threads or processes, may use the same file at once.

    Args:
        path: The database file (created with its schema if missing).
        constraints: Packing constraints for ``build``.
        policy: Packing policy name or function.
        clock: Source of "now" in seconds (injectable for tests).
        timeout: Seconds to wait for the database lock.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        constraints: PackingConstraints | None = None,
        policy: str | Policy = "largest_first",
        clock: Callable[[], float] = time.time,
        timeout: float = 60.0,
    ) -> None:
        self.path = Path(path)
        self.constraints = constraints or PackingConstraints()
        self.policy = policy
        self._clock = clock
        self._timeout = timeout
        self._local = threading.local()
        with self._tx() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)

    # -- plumbing ---------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None and getattr(self._local, "pid", None) != os.getpid():
            # Inherited across fork(): never reuse a parent's SQLite connection.
            db = None
        if db is None:
            self._local.pid = os.getpid()
            db = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
        return db

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def __enter__(self) -> AggregateQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- offering ---------------------------------------------------------

    def offer(self, offers: Iterable[Offer]) -> OfferResult:
        """Buffer pieces for aggregation, deduplicated across the whole queue.

        A piece (same root and padded size) already buffered, in any live
        aggregate or already dealt is not offered again; one whose previous
        aggregate was rejected is already re-buffered by ``reject``. All
        offers in one call are one transaction.

        Every offer is checked before anything is written: a malformed piece
        or payload size, a piece that could never fit an aggregate under the
        queue's constraints, or a prepended piece offered again is refused,
        and nothing of the call is buffered.

        Raises:
            AggregateError: If an offer is refused; the message names it.
        """
        now = self._clock()
        accepted = 0
        dups: list[str] = []
        rows = []
        prepended = {
            (bytes(p.root), int(p.padded_size)) for p in self.constraints.prepend
        }
        for n, o in enumerate(offers):
            root, size = bytes(o.piece.root), int(o.piece.padded_size)
            try:
                PieceInfo(root, size, o.payload_size)
            except ValueError as exc:
                msg = f"offer {n}: malformed piece: {exc}"
                raise AggregateError(msg) from exc
            if (root, size) in prepended:
                msg = f"offer {n}: piece {_key(root, size)} is prepended to every aggregate"
                raise AggregateError(msg)
            if not self._fits_empty([size]):
                msg = (
                    f"offer {n}: a piece of {size} padded bytes cannot fit any "
                    f"{self.constraints.deal_size}-byte aggregate under these constraints"
                )
                raise AggregateError(msg)
            rows.append((root, size, o))
        with self._tx() as db:
            for root, size, o in rows:
                cur = db.execute(
                    "INSERT OR IGNORE INTO car (root, padded_size, payload_size, link, url,"
                    " md5, sha256, grp, tenant, inserted_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        root,
                        size,
                        o.payload_size,
                        o.link,
                        o.url,
                        o.md5,
                        o.sha256,
                        o.group,
                        o.tenant,
                        now,
                    ),
                )
                if cur.rowcount:
                    accepted += 1
                else:
                    dups.append(_key(root, size))
        return OfferResult(accepted, tuple(dups))

    def _fits_empty(self, sizes: Sequence[int]) -> bool:
        """Whether pieces of these sizes fit one empty aggregate together."""
        c = self.constraints
        if len(c.prepend) + len(sizes) > c.piece_limit:
            return False
        end = 0
        for s in [p.padded_size for p in c.prepend] + sorted(sizes, reverse=True):
            end = -(-end // s) * s + s
        return end <= index_start(c.deal_size)

    # -- building ---------------------------------------------------------

    def build(self, *, now: float | None = None) -> list[AggregateRecord]:
        """Run the packing policy over the buffer and build what it decides.

        Aggregates are created INGESTING with their pieces claimed in one
        transaction, then hashed, then moved to READY in another. Aggregates
        left INGESTING by a crash are finished too.

        Returns:
            The aggregates that became READY in this call.

        An INGESTING aggregate that cannot be built (a policy produced an
        impossible layout) is REJECTED with the reason and its pieces are
        re-buffered, so it never blocks later builds.

        Raises:
            AggregateError: If the policy itself fails.
        """
        now = self._clock() if now is None else now
        with self._tx() as db:
            self._plan_into(db, now)
        ready = []
        for agg_id in self._ids_in_state(AggregateState.INGESTING):
            try:
                rec = self._finish(agg_id)
            except AggregateError as exc:
                self.reject(agg_id, f"could not be built: {exc}", offending=())
                continue
            if rec is not None:
                ready.append(rec)
        return ready

    def _plan_into(self, db: sqlite3.Connection, now: float) -> None:
        rows = db.execute(
            "SELECT id, root, padded_size, payload_size, grp, tenant, priority,"
            " quarantine, inserted_at FROM car"
            " WHERE status = 'BUFFERED' AND aggregate_id IS NULL ORDER BY id"
        ).fetchall()
        normal: list[PackItem] = []
        quarantined: dict[str, list[PackItem]] = {}
        for cid, root, size, payload, grp, tenant, prio, quar, ins in rows:
            item = PackItem(
                PieceInfo(root, size), str(cid), payload, grp, tenant, ins, prio
            )
            if quar is None:
                normal.append(item)
            else:
                quarantined.setdefault(quar, []).append(item)
        normal = self._drop_impossible_groups(db, normal)
        plans: list[PlannedAggregate] = []
        if normal:
            plans.extend(
                pack(normal, self.constraints, policy=self.policy, now=now).aggregates
            )
        # A bisected half is built on its own, at once, whatever its fill.
        flush = attrs.evolve(self.constraints, max_age=0.0)
        for _, items in sorted(quarantined.items()):
            planned = pack(items, flush, policy="largest_first", now=now).aggregates
            plans.extend(attrs.evolve(p, reason="bisect") for p in planned)
        for plan in plans:
            self._claim(db, plan, now)

    def _drop_impossible_groups(
        self, db: sqlite3.Connection, items: list[PackItem]
    ) -> list[PackItem]:
        """Drop (with the reason) groups no aggregate can take; return the rest.

        A group may grow across several ``offer`` calls, past what one
        aggregate can hold, or gain a second tenant while tenants must stay
        apart; packing it would fail for every later build.
        """
        groups: dict[str, list[PackItem]] = {}
        for it in items:
            if it.group is not None:
                groups.setdefault(it.group, []).append(it)
        bad: dict[str, str] = {}
        for g, members in groups.items():
            if not self._fits_empty([m.size for m in members]):
                bad[g] = f"group {g!r} ({len(members)} pieces) cannot fit one aggregate"
            elif (
                self.constraints.isolate_tenants
                and len({m.tenant for m in members}) > 1
            ):
                bad[g] = f"group {g!r} spans several tenants, which must stay apart"
        for g, reason in bad.items():
            for m in groups[g]:
                db.execute(
                    "UPDATE car SET status = 'DROPPED', drop_reason = ? WHERE id = ?",
                    (reason, int(m.key)),
                )
        return [it for it in items if it.group not in bad]

    def _claim(
        self, db: sqlite3.Connection, plan: PlannedAggregate, now: float
    ) -> None:
        plan.check()  # a policy's plan is checked before any piece is claimed
        agg_id = uuid.uuid4().hex
        prepend = json.dumps([[p.root.hex(), p.padded_size] for p in plan.prepend])
        db.execute(
            "INSERT INTO aggregate (aggregate_id, deal_size, state, reason, used, payload,"
            " pieces, prepend, inserted_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                agg_id,
                plan.deal_size,
                "INGESTING",
                plan.reason,
                plan.used,
                plan.payload,
                len(plan.pieces),
                prepend,
                now,
                now,
            ),
        )
        first = len(plan.prepend)
        for j, (item, offset) in enumerate(
            zip(plan.items, plan.offsets[first:], strict=True)
        ):
            cur = db.execute(
                "UPDATE car SET aggregate_id = ?, status = 'AGGREGATED'"
                " WHERE id = ? AND aggregate_id IS NULL AND status = 'BUFFERED'",
                (agg_id, int(item.key)),
            )
            if cur.rowcount != 1:
                msg = f"piece row {item.key} was claimed by another aggregate"
                raise AggregateError(msg)
            db.execute(
                "INSERT INTO member (aggregate_id, car_id, position, offset) VALUES (?, ?, ?, ?)",
                (agg_id, int(item.key), first + j, offset),
            )
        self._log(db, agg_id, None, AggregateState.INGESTING, now, plan.reason)

    def _finish(self, agg_id: str) -> AggregateRecord | None:
        agg = self._rebuild(agg_id)
        # An aggregate is a full piece: padding 0 (commp-spec §6).
        info = PieceInfo(agg.root, agg.deal_size, agg.deal_size // 128 * 127)
        now = self._clock()
        with self._tx() as db:
            cur = db.execute(
                "UPDATE aggregate SET state = 'READY', root = ?, piece_cid = ?,"
                " piece_cid_v2 = ?, updated_at = ? WHERE aggregate_id = ? AND state = 'INGESTING'",
                (agg.root, str(info.cid_v1), str(info.cid_v2), now, agg_id),
            )
            if cur.rowcount != 1:
                return None  # another worker finished it first
            self._log(
                db, agg_id, AggregateState.INGESTING, AggregateState.READY, now, None
            )
        return self.get(agg_id)

    def _rebuild(self, agg_id: str) -> Aggregate:
        db = self._db()
        row = db.execute(
            "SELECT deal_size, prepend, root FROM aggregate WHERE aggregate_id = ?",
            (agg_id,),
        ).fetchone()
        if row is None:
            msg = f"no aggregate {agg_id!r} in {self.path}"
            raise AggregateError(msg)
        deal_size, prepend, root = row
        placements: list[Placement] = []
        off = 0
        for j, (hexroot, size) in enumerate(json.loads(prepend)):
            r = bytes.fromhex(hexroot)
            off = -(-off // size) * size
            placements.append(Placement(PieceInfo(r, size), r, size, off, j))
            off += size
        for pos, offset, r, size in db.execute(
            "SELECT m.position, m.offset, c.root, c.padded_size FROM member m"
            " JOIN car c ON c.id = m.car_id WHERE m.aggregate_id = ? ORDER BY m.position",
            (agg_id,),
        ):
            placements.append(Placement(PieceInfo(r, size), r, size, offset, pos))
        agg = Aggregate(deal_size, placements)
        if root is not None and agg.root != root:
            msg = f"aggregate {agg_id} no longer hashes to its recorded commitment"
            raise AggregateError(msg)
        return agg

    # -- transitions --------------------------------------------------------

    def _transition(
        self,
        agg_id: str,
        to: AggregateState,
        *,
        note: str | None = None,
        deal_ref: str | None = None,
        extra: Callable[[sqlite3.Connection], None] | None = None,
    ) -> AggregateRecord:
        now = self._clock()
        with self._tx() as db:
            row = db.execute(
                "SELECT state FROM aggregate WHERE aggregate_id = ?", (agg_id,)
            ).fetchone()
            if row is None:
                msg = f"no aggregate {agg_id!r} in {self.path}"
                raise AggregateError(msg)
            frm = AggregateState(row[0])
            if to not in _NEXT.get(frm, set()):
                msg = f"aggregate {agg_id} is {frm.value}; it cannot become {to.value}"
                raise AggregateError(msg)
            db.execute(
                "UPDATE aggregate SET state = ?, updated_at = ?,"
                " deal_ref = COALESCE(?, deal_ref), reject_reason = ?"
                " WHERE aggregate_id = ?",
                (
                    to.value,
                    now,
                    deal_ref,
                    note if to is AggregateState.REJECTED else None,
                    agg_id,
                ),
            )
            if extra is not None:
                extra(db)
            self._log(db, agg_id, frm, to, now, note)
        return self.get(agg_id)

    def mark_deal_pending(
        self, aggregate_id: str, *, deal_ref: str | None = None
    ) -> AggregateRecord:
        """READY → DEAL_PENDING: the aggregate was handed to the dealer.

        Raises:
            AggregateError: If the aggregate is unknown or not READY.
        """
        return self._transition(
            aggregate_id, AggregateState.DEAL_PENDING, deal_ref=deal_ref
        )

    def mark_deal_processed(
        self, aggregate_id: str, *, deal_ref: str | None = None
    ) -> AggregateRecord:
        """DEAL_PENDING → DEAL_PROCESSED: the dealer reports the deal made.

        Raises:
            AggregateError: If the aggregate is unknown or not DEAL_PENDING.
        """
        return self._transition(
            aggregate_id, AggregateState.DEAL_PROCESSED, deal_ref=deal_ref
        )

    def reject(
        self,
        aggregate_id: str,
        reason: str,
        *,
        offending: Iterable[str] | None = None,
    ) -> AggregateRecord:
        """INGESTING, READY or DEAL_PENDING → REJECTED; rebuild from its pieces.

        With ``offending`` (piece keys, possibly empty), those pieces are
        dropped (status DROPPED, with the reason) and the others re-buffered
        with a higher priority. Without it, the pieces are bisected: each
        half is packed into its own aggregate by the next ``build``, halves
        split between groups, never inside one; a single piece or group that
        is rejected this way is dropped. Everything happens in one
        transaction. Groups bind only pieces that are buffered together.

        Raises:
            AggregateError: If the aggregate is unknown, not READY or
                DEAL_PENDING, or an offending key is not one of its pieces.
        """
        bad = set(offending) if offending is not None else None

        def requeue(db: sqlite3.Connection) -> None:
            members = db.execute(
                "SELECT c.id, c.root, c.padded_size, c.grp FROM member m"
                " JOIN car c ON c.id = m.car_id WHERE m.aggregate_id = ? ORDER BY m.position",
                (aggregate_id,),
            ).fetchall()
            keys = {_key(r, s): i for i, r, s, _ in members}
            if bad is not None:
                unknown = sorted(bad - keys.keys())
                if unknown:
                    msg = f"pieces {unknown} are not in aggregate {aggregate_id}"
                    raise AggregateError(msg)
            # Units: one group's pieces together, or a lone piece.
            units: dict[object, list[int]] = {}
            for i, _, _, grp in members:
                units.setdefault(grp if grp is not None else ("piece", i), []).append(i)
            drop = {keys[k] for k in bad} if bad is not None else set()
            if bad is None and len(units) == 1:
                drop = {i for i, _, _, _ in members}
            for i in drop:
                db.execute(
                    "UPDATE car SET status = 'DROPPED', aggregate_id = NULL, drop_reason = ?"
                    " WHERE id = ?",
                    (reason, i),
                )
            keep = [[i for i in u if i not in drop] for u in units.values()]
            keep = [u for u in keep if u]
            total = sum(len(u) for u in keep)
            seen = 0
            for u in keep:
                # Bisect at unit boundaries, so a group is never split.
                half = int(2 * seen >= total)
                quarantine = None if bad is not None else f"{aggregate_id}/{half}"
                seen += len(u)
                for i in u:
                    db.execute(
                        "UPDATE car SET status = 'BUFFERED', aggregate_id = NULL,"
                        " priority = priority + 1, quarantine = ? WHERE id = ?",
                        (quarantine, i),
                    )

        return self._transition(
            aggregate_id, AggregateState.REJECTED, note=reason, extra=requeue
        )

    def _log(
        self,
        db: sqlite3.Connection,
        agg_id: str,
        frm: AggregateState | None,
        to: AggregateState,
        at: float,
        note: str | None,
    ) -> None:
        db.execute(
            "INSERT INTO transition (aggregate_id, from_state, to_state, at, note)"
            " VALUES (?, ?, ?, ?, ?)",
            (agg_id, frm.value if frm else None, to.value, at, note),
        )

    # -- queries ------------------------------------------------------------

    _AGG_COLS: Final = (
        "aggregate_id, state, deal_size, reason, piece_cid, piece_cid_v2, pieces, used,"
        " payload, deal_ref, reject_reason, inserted_at, updated_at"
    )
    _CAR_COLS: Final = (
        "root, padded_size, payload_size, link, url, md5, sha256, status, aggregate_id,"
        " drop_reason, priority"
    )

    @staticmethod
    def _agg(row: Sequence[object]) -> AggregateRecord:
        vals = list(row)
        vals[1] = AggregateState(vals[1])
        return AggregateRecord(*vals)  # type: ignore[arg-type]

    @staticmethod
    def _car(row: Sequence[object]) -> PieceRecord:
        root, size = bytes(row[0]), int(row[1])  # type: ignore[call-overload]
        payload = row[2]
        # Without the payload size the v2 CID says padding 0 (commp-spec §6).
        full = size // 128 * 127
        info = PieceInfo(root, size, full if payload is None else int(payload))  # type: ignore[call-overload]
        return PieceRecord(
            f"{info.cid_v1}/{size}",
            str(info.cid_v1),
            str(info.cid_v2),
            size,
            *row[2:],  # type: ignore[arg-type]
        )

    def get(self, aggregate_id: str) -> AggregateRecord:
        """One aggregate's record.

        Raises:
            AggregateError: If there is no such aggregate.
        """
        row = (
            self._db()
            .execute(
                f"SELECT {self._AGG_COLS} FROM aggregate WHERE aggregate_id = ?",  # noqa: S608
                (aggregate_id,),
            )
            .fetchone()
        )
        if row is None:
            msg = f"no aggregate {aggregate_id!r} in {self.path}"
            raise AggregateError(msg)
        return self._agg(row)

    def _ids_in_state(self, state: AggregateState) -> list[str]:
        return [
            r[0]
            for r in self._db().execute(
                "SELECT aggregate_id FROM aggregate WHERE state = ? ORDER BY inserted_at",
                (state.value,),
            )
        ]

    def aggregates(self, state: AggregateState | None = None) -> list[AggregateRecord]:
        """All aggregates (or those in one state), oldest first."""
        sql = f"SELECT {self._AGG_COLS} FROM aggregate"  # noqa: S608
        args: tuple[object, ...] = ()
        if state is not None:
            sql += " WHERE state = ?"
            args = (state.value,)
        return [
            self._agg(r)
            for r in self._db().execute(sql + " ORDER BY inserted_at", args)
        ]

    def members(self, aggregate_id: str) -> list[tuple[int, int, PieceRecord]]:
        """``(position, padded offset, piece)`` for each non-prepended piece, in order."""
        cols = ", ".join(f"c.{c.strip()}" for c in self._CAR_COLS.split(","))
        rows = self._db().execute(
            f"SELECT m.position, m.offset, {cols} FROM member m"  # noqa: S608
            " JOIN car c ON c.id = m.car_id WHERE m.aggregate_id = ? ORDER BY m.position",
            (aggregate_id,),
        )
        return [(r[0], r[1], self._car(r[2:])) for r in rows]

    def buffered(self) -> list[PieceRecord]:
        """Pieces waiting for an aggregate, in offer order."""
        rows = self._db().execute(
            f"SELECT {self._CAR_COLS} FROM car"  # noqa: S608
            " WHERE status = 'BUFFERED' ORDER BY id"
        )
        return [self._car(r) for r in rows]

    def find(self, piece: Piece) -> PieceRecord | None:
        """The queue's record of a piece (by root and padded size), if any."""
        row = (
            self._db()
            .execute(
                f"SELECT {self._CAR_COLS} FROM car WHERE root = ? AND padded_size = ?",  # noqa: S608
                (bytes(piece.root), int(piece.padded_size)),
            )
            .fetchone()
        )
        return None if row is None else self._car(row)

    def history(
        self, aggregate_id: str
    ) -> list[tuple[str | None, str, float, str | None]]:
        """The aggregate's transitions: ``(from, to, at, note)``, oldest first."""
        return list(
            self._db().execute(
                "SELECT from_state, to_state, at, note FROM transition"
                " WHERE aggregate_id = ? ORDER BY rowid",
                (aggregate_id,),
            )
        )

    def aggregate(self, aggregate_id: str) -> Aggregate:
        """Rebuild an aggregate's tree from the stored layout.

        Raises:
            AggregateError: If it is unknown, or it no longer hashes to the
                commitment recorded when it became READY.
        """
        return self._rebuild(aggregate_id)

    def proof(self, piece: Piece) -> tuple[AggregateRecord, InclusionProof]:
        """The live aggregate holding ``piece`` and the piece's inclusion proof.

        Raises:
            AggregateError: If the piece is not in a built (READY or later)
                aggregate.
        """
        db = self._db()
        row = db.execute(
            "SELECT m.aggregate_id, m.position FROM member m JOIN car c ON c.id = m.car_id"
            " JOIN aggregate a ON a.aggregate_id = m.aggregate_id"
            " WHERE c.root = ? AND c.padded_size = ? AND a.state IN (?, ?, ?)",
            (bytes(piece.root), int(piece.padded_size), *_LIVE[1:]),
        ).fetchone()
        if row is None:
            msg = "the piece is not in a built, live aggregate"
            raise AggregateError(msg)
        agg_id, position = row
        return self.get(agg_id), self._rebuild(agg_id).proof(position)

    def manifest(
        self, aggregate_id: str, *, url_template: str | None = None
    ) -> dict[str, object]:
        """The deal manifest of a READY (or later) aggregate, as JSON-ready data.

        Args:
            aggregate_id: The aggregate.
            url_template: Optional ``str.format`` template for each piece's
                URL, with fields ``link``, ``piece_cid``, ``piece_cid_v2``,
                ``key``; a piece's own ``url`` is used when no template is
                given.

        Returns:
            ``{"aggregate_cid", "aggregate_cid_v2", "deal_size", "pieces": [
            {"piece_cid", "piece_cid_v2", "padded_size", "offset", "link",
            "url", "payload_size", "md5", "sha256", "proof"}, ...]}``.

        Raises:
            AggregateError: If the aggregate is not built yet, or does not
                rebuild to its recorded commitment.
        """
        rec = self.get(aggregate_id)
        if rec.state in (AggregateState.INGESTING, AggregateState.REJECTED):
            msg = f"aggregate {aggregate_id} is {rec.state.value}; no manifest"
            raise AggregateError(msg)
        agg = self._rebuild(aggregate_id)
        pieces = []
        for position, offset, p in self.members(aggregate_id):
            url = p.url
            if url_template is not None:
                url = url_template.format(
                    link=p.link,
                    piece_cid=p.piece_cid,
                    piece_cid_v2=p.piece_cid_v2,
                    key=p.key,
                )
            pieces.append(
                {
                    "piece_cid": p.piece_cid,
                    "piece_cid_v2": p.piece_cid_v2,
                    "padded_size": p.padded_size,
                    "offset": offset,
                    "link": p.link,
                    "url": url,
                    "payload_size": p.payload_size,
                    "md5": p.md5,
                    "sha256": p.sha256,
                    "proof": agg.proof(position).to_json(),
                }
            )
        return {
            "aggregate_cid": rec.piece_cid,
            "aggregate_cid_v2": rec.piece_cid_v2,
            "deal_size": rec.deal_size,
            "pieces": pieces,
        }
